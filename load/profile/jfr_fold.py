"""JFR execution samples (`jfr print --json --stack-depth 64 --events jdk.ExecutionSample FILE`
on stdin) as folded stacks ("thread;outer;...;inner count"), the shape
fold.py writes for perf, so top.py and any flame graph renderer read both."""
import collections
import json
import sys

stacks = collections.Counter()
for event in json.load(sys.stdin)["recording"]["events"]:
    values = event["values"]
    thread = (values.get("sampledThread") or {}).get("javaName") or "?"
    frames = [
        f"{f['method']['type']['name'].replace('/', '.')}.{f['method']['name']}"
        for f in reversed((values.get("stackTrace") or {}).get("frames") or [])
    ]
    # Thread names end in a counter (neo4j.BoltWorker-3): one root per pool.
    stacks[";".join([thread.rstrip("0123456789").rstrip("-[]"), *frames])] += 1
for stack, n in stacks.items():
    print(f"{stack} {n}")
