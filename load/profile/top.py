"""A folded profile's summary: our functions by inclusive share (each counted
once per stack), then the innermost functions (self time), where the CPU is.

    top.py STACKS.folded [PREFIX]   PREFIX: whose functions count as "ours"
                                    (default apex_ingest::; org.neo4j. for Neo4j)"""
import collections
import re
import sys

GENERICS = re.compile(r"<[^<>]*>")


def plain(frame):
    for _ in range(4):
        frame = GENERICS.sub("", frame)
    return frame


ours = sys.argv[2] if len(sys.argv) > 2 else "apex_ingest::"
inclusive, leaf, total = collections.Counter(), collections.Counter(), 0
for line in open(sys.argv[1]):
    stack, n = line.rsplit(" ", 1)
    n = int(n)
    total += n
    frames = [plain(f) for f in stack.split(";")[1:]]
    if frames:
        leaf[frames[-1]] += n
    for frame in set(f for f in frames if ours in f):
        inclusive[frame] += n
print(f"{total} samples")
print(f"\n{ours} functions, inclusive:")
for frame, n in inclusive.most_common(30):
    print(f"{100 * n / max(total, 1):5.1f}%  {frame[:150]}")
print("\ninnermost functions (self):")
for frame, n in leaf.most_common(25):
    print(f"{100 * n / max(total, 1):5.1f}%  {frame[:150]}")
