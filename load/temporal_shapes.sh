#!/usr/bin/env bash
# Every fan-out shape of the Temporal path against the direct path, one after
# the other in one session (load/results/2026-11-23-to-11-25-temporal.md, "Fan-out granularity"). Needs the
# desk services (`scripts/services up`) and
# `cargo build --release --example temporal_throughput`.
# Usage: load/temporal_shapes.sh ["<events per batch> <batches> <in flight>" ...]
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/services env)"
runs=("$@")
[[ ${#runs[@]} -gt 0 ]] || runs=("100 3 1" "100 12 4")
for per_child in 1 10 100; do
  for steps in stages combined local; do
    for run in "${runs[@]}"; do
      echo "== events_per_child=$per_child child_steps=$steps run=$run"
      # shellcheck disable=SC2086 # the run is three arguments
      APEX_TEMPORAL_EVENTS_PER_CHILD=$per_child APEX_TEMPORAL_CHILD_STEPS=$steps \
        ./target/release/examples/temporal_throughput $run 2>/dev/null
    done
  done
done
