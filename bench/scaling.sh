#!/usr/bin/env bash
# Throughput on two cores against one, as pairs of rounds run one after the
# other (these machines' speed drifts by tens of percent within minutes, so
# only a pair's ratio means something): `plume bench --shards 1` on core 0,
# then `--shards 2` on cores 0 and 1, PAIRS times; prints each pair and the
# median ratio.
#
# usage: bench/scaling.sh [PLUME] [PIPELINE] [SPANS] [PAIRS]
#   PLUME     the binary (default: target/release/plume)
#   PIPELINE  a pipeline.toml (default: the embedded default pipeline)
#   SPANS     synthetic spans per round (default: 1000000)
#   PAIRS     pairs of rounds (default: 5)
set -euo pipefail
cd "$(dirname "$0")/.."
plume=${1:-target/release/plume}
pipeline=${2:-}
spans=${3:-1000000}
pairs=${4:-5}
rate() {
  "$@" --no-boundary --rounds 1 --spans "$spans" --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["pipeline_spans_per_s"])'
}
ratios=()
for i in $(seq "$pairs"); do
  one=$(rate taskset -c 0 "$plume" bench ${pipeline:+"$pipeline"} --shards 1)
  two=$(rate taskset -c 0,1 "$plume" bench ${pipeline:+"$pipeline"} --shards 2)
  ratio=$(python3 -c "print(f'{$two / $one:.2f}')")
  ratios+=("$ratio")
  echo "pair $i: one core $one spans/s, two cores $two spans/s, ${ratio}x"
done
python3 -c "import statistics,sys; print(f'median {statistics.median(map(float, sys.argv[1:])):.2f}x')" "${ratios[@]}"
