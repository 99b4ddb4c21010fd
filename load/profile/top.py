"""A folded profile's summary: our functions by inclusive share (each counted
once per stack), then the innermost functions (self time), where the CPU is."""
import collections
import re
import sys

GENERICS = re.compile(r"<[^<>]*>")


def plain(frame):
    for _ in range(4):
        frame = GENERICS.sub("", frame)
    return frame


inclusive, leaf, total = collections.Counter(), collections.Counter(), 0
for line in open(sys.argv[1]):
    stack, n = line.rsplit(" ", 1)
    n = int(n)
    total += n
    frames = [plain(f) for f in stack.split(";")[1:]]
    if frames:
        leaf[frames[-1]] += n
    for frame in set(f for f in frames if "apex_ingest::" in f):
        inclusive[frame] += n
print(f"{total} samples of the load process")
print("\nour functions, inclusive:")
for frame, n in inclusive.most_common(30):
    print(f"{100 * n / max(total, 1):5.1f}%  {frame[:150]}")
print("\ninnermost functions (self):")
for frame, n in leaf.most_common(25):
    print(f"{100 * n / max(total, 1):5.1f}%  {frame[:150]}")
