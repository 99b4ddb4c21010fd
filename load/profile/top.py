"""The functions of a folded profile by inclusive share (each counted once per stack)."""
import collections
import re
import sys

GENERICS = re.compile(r"<[^<>]*>")
inclusive, total = collections.Counter(), 0
for line in open(sys.argv[1]):
    stack, n = line.rsplit(" ", 1)
    n = int(n)
    total += n
    seen = set()
    for frame in stack.split(";")[1:]:
        for _ in range(3):
            frame = GENERICS.sub("", frame)
        if frame not in seen:
            seen.add(frame)
            inclusive[frame] += n
print(f"{total} samples")
for frame, n in inclusive.most_common(60):
    print(f"{100 * n / max(total, 1):5.1f}%  {frame[:160]}")
