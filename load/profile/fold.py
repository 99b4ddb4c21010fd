"""Folds `perf script` output into flame graph lines: "thread;outer;...;inner count"."""
import collections
import re
import sys

stacks = collections.Counter()
thread, frames = None, []


def flush():
    if thread is not None and frames:
        stacks[";".join([thread] + frames[::-1])] += 1


for line in sys.stdin:
    line = line.rstrip("\n")
    if not line.strip():
        flush()
        thread, frames = None, []
    elif not line.startswith((" ", "\t")):
        thread = line.split()[0]
    else:
        parts = line.strip().split(" ", 1)
        if len(parts) == 2:
            symbol = re.sub(r"\s*\(.*\)$", "", parts[1])
            frames.append(re.sub(r"\+0x[0-9a-f]+$", "", symbol).replace(";", ","))
flush()
for stack, n in stacks.most_common():
    print(stack, n)
