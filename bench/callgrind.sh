#!/usr/bin/env bash
# Instructions per span through a pipeline, counted by callgrind: unlike
# wall time on these noisy machines, the count is the same from run to run
# (within ~0.3%), so changes of 1-2% show. Counts only the span work (parsing
# lines, the engine's batches, the final flush), not start-up or compilation.
#
# usage: bench/callgrind.sh [PLUME] [PIPELINE] [SPANS]
#   PLUME     the binary (default: target/release/plume)
#   PIPELINE  a pipeline.toml that reads span JSONL from standard input
#             ([ingest] jsonl = ["-"]; default: the embedded default pipeline,
#             host/src/config/default_pipeline.toml). It is run on one engine
#             thread (`[engine] shards = 1` is added): valgrind runs threads
#             one at a time, and the counts of several are not comparable.
#   SPANS     how many synthetic spans (default: 20000)
# Needs valgrind. The first run compiles every plugin under valgrind (a few
# minutes); later runs reuse the compiled-code cache (~10 s per run). With
# PLUME_PERFMAP=1 the host writes /tmp/perf-PID.map, which names the plugins'
# functions in the profile (callgrind_annotate shows them as addresses).
set -euo pipefail
cd "$(dirname "$0")/.."
plume=${1:-target/release/plume}
pipeline=${2:-host/src/config/default_pipeline.toml}
spans=${3:-20000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if grep -q '^\[engine\]' "$pipeline"; then
  echo "$pipeline has an [engine] table: set shards = 1 there and remove it from this check" >&2
  exit 1
fi
(cat "$pipeline"; printf '\n[engine]\nshards = 1\n') > "$work/pipeline.toml"
python3 bench/gen_spans.py "$spans" > "$work/spans.jsonl"
valgrind --tool=callgrind --smc-check=all-non-file \
  --toggle-collect='*parse_line*' --toggle-collect='*Engine::process*' \
  --toggle-collect='*Engine::flush*' --callgrind-out-file="$work/callgrind.out" \
  "$plume" run "$work/pipeline.toml" < "$work/spans.jsonl" > /dev/null 2> "$work/log"
total=$(grep -o 'refs: *[0-9,]*' "$work/log" | tr -d ', ' | cut -d: -f2)
echo "$spans spans: $total instructions, $((total / spans)) per span"
cp "$work/callgrind.out" "callgrind.out.plume"
echo "profile: callgrind.out.plume (callgrind_annotate callgrind.out.plume | head -60)"
