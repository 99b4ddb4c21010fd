"""JFR execution samples (`jfr print --json --stack-depth 64 --events jdk.ExecutionSample FILE`
on stdin) as folded stacks ("thread;outer;...;inner count"), the shape
fold.py writes for perf, so top.py and any flame graph renderer read both."""
import collections
import json
import re
import sys


def pool(thread):
    """A thread's pool: "neo4j.BoltWorker-4 [bolt-1 - /127.0.0.1:5450]" and
    "MuninnPageCache[1]" become "neo4j.BoltWorker" and "MuninnPageCache"."""
    return re.sub(r"[-\[]?\d+\]?$", "", thread.split(" [")[0])


stacks = collections.Counter()
for event in json.load(sys.stdin)["recording"]["events"]:
    values = event["values"]
    thread = (values.get("sampledThread") or {}).get("javaName") or "?"
    frames = [
        f"{f['method']['type']['name'].replace('/', '.')}.{f['method']['name']}"
        for f in reversed((values.get("stackTrace") or {}).get("frames") or [])
    ]
    stacks[";".join([pool(thread), *frames])] += 1
for stack, n in stacks.most_common():
    print(stack, n)
