#!/usr/bin/env bash
# Replays the example and fixture span files, and synthetic spans, through a
# pipeline with two builds, and says whether the output spans and the
# reports are the same. For performance work: a faster build must give the
# same answers. Report fields that measure the run itself (times, memory)
# are left out of the comparison.
#
# usage: bench/same_outputs.sh BEFORE [AFTER] [PIPELINE]
#   BEFORE    a plume binary built before the change
#   AFTER     the one after (default: target/release/plume)
#   PIPELINE  a pipeline.toml (default: the embedded default pipeline's file)
set -euo pipefail
cd "$(dirname "$0")/.."
before=$1
after=${2:-target/release/plume}
pipeline=${3:-host/src/config/default_pipeline.toml}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 bench/gen_spans.py 20000 > "$work/synthetic.jsonl"
inputs=(examples/spans.jsonl host/tests/data/mixed.jsonl host/tests/data/genai/*.jsonl
        host/tests/data/genai/vercel/*.jsonl "$work/synthetic.jsonl")
# The report without what measures the run: nanoseconds, memory, bytes/s.
strip='
import json, sys
def clean(v):
    if isinstance(v, dict):
        return {k: clean(x) for k, x in v.items()
                if not (k.endswith("nanos") or k.startswith("memory") or k.endswith("_ns"))}
    if isinstance(v, list):
        return [clean(x) for x in v]
    return v
print(json.dumps(clean(json.load(open(sys.argv[1]))), indent=1, sort_keys=True))
'
differ=0
for input in "${inputs[@]}"; do
  for build in before after; do
    bin=$before; [ "$build" = after ] && bin=$after
    "$bin" replay "$pipeline" --input "$input" --output "$work/$build.jsonl" \
      --report "$work/$build.report.json" 2> /dev/null
    python3 -c "$strip" "$work/$build.report.json" > "$work/$build.report"
  done
  if cmp -s "$work/before.jsonl" "$work/after.jsonl" && cmp -s "$work/before.report" "$work/after.report"; then
    echo "same       $input ($(wc -l < "$work/after.jsonl") spans)"
  else
    echo "DIFFERENT  $input"
    diff <(head -c 3000 "$work/before.report") <(head -c 3000 "$work/after.report") | head -20 || true
    differ=1
  fi
done
exit $differ
