#!/usr/bin/env bash
# Two builds (or one build with and without a flag) interleaved, round by
# round, on one core: these machines' speed drifts by tens of percent within
# minutes, so only figures taken side by side compare. Prints each round and
# the medians.
#
# usage: bench/pairs.sh A B [ROUNDS] [PIPELINE] [-- EXTRA_B_ARGS...]
#   A, B       plume binaries (the same one twice to measure EXTRA_B_ARGS)
#   ROUNDS     interleaved rounds (default: 5)
#   PIPELINE   default: bench/seven-stages.toml
#   EXTRA_B_ARGS  `plume bench` arguments for B only, e.g. -- --no-time-limits
# e.g. bench/pairs.sh /tmp/old/plume target/dist/plume 5
#      bench/pairs.sh target/dist/plume target/dist/plume 5 bench/seven-stages.toml -- --no-time-limits
set -euo pipefail
cd "$(dirname "$0")/.."
a=$1 b=$2
shift 2
rounds=5
pipeline=bench/seven-stages.toml
if [[ $# -gt 0 && $1 != -- ]]; then rounds=$1; shift; fi
if [[ $# -gt 0 && $1 != -- ]]; then pipeline=$1; shift; fi
[[ $# -gt 0 && $1 == -- ]] && shift
extra=("$@")
run() {
  taskset -c 0 "$@" --no-boundary --rounds 3 --json |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(int(d["pipeline_spans_per_s"]), round(d["pipeline_over_passthrough"] * 100, 1))'
}
results=()
for i in $(seq "$rounds"); do
  ra=$(run "$a" bench "$pipeline")
  rb=$(run "$b" bench "$pipeline" "${extra[@]}")
  echo "round $i: A ${ra% *} spans/s (${ra#* }% of passthrough)   B ${rb% *} spans/s (${rb#* }%)"
  results+=("$ra" "$rb")
done
python3 - "${results[@]}" <<'PY'
import statistics, sys
v = sys.argv[1:]
a, b = v[0::2], v[1::2]
med = lambda xs, i: statistics.median(float(x.split()[i]) for x in xs)
print(f"median: A {med(a, 0):.0f} spans/s ({med(a, 1):.1f}%)   B {med(b, 0):.0f} spans/s ({med(b, 1):.1f}%)")
PY
