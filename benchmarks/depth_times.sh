#!/usr/bin/env bash
# Wall time of `r2r rerank` (the stored default's interpolation) by rerank depth, beside the depth curve of
# docs/results.md: one command per depth over a set's BM25 top 100, each from a cold start (start-up and
# compilation included, as a user runs it), and its nDCG@10 (which must equal the depth curve's figure).
#   bash benchmarks/depth_times.sh [OUT] [SET] [DEPTHS...]
# OUT defaults to runs/depth_times, SET to dl19, DEPTHS to 10 20 50 100. RUN and DATA override the student and
# the recipe's data folder (benchmarks/recipe.sh makes both). Wall times go to OUT/times.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/depth_times}
SET=${2:-dl19}
shift $(( $# > 2 ? 2 : $# ))
DEPTHS=("$@")
if [ ${#DEPTHS[@]} -eq 0 ]; then DEPTHS=(10 20 50 100); fi
RUN=${RUN:-runs/recipe/direct_hn8_b1}
DATA=${DATA:-runs/recipe/data}
R2R=.venv/bin/r2r
export JAX_PLATFORMS=cpu
mkdir -p "$OUT"
for depth in "${DEPTHS[@]}"; do
  out="$OUT/default_${SET}_depth${depth}.trec"
  rm -rf "$out" "$out.shards"  # this script's own earlier output: shards of a killed run would be resumed, not timed
  t0=$(date +%s.%N)
  $R2R rerank --checkpoint "$RUN" --candidates "$DATA/${SET}_top100.jsonl" --depth "$depth" --output "$out" \
    2>> "$OUT/rerank.log"
  seconds=$(echo "$(date +%s.%N) - $t0" | bc)
  ndcg=$($R2R evaluate --dataset "$SET" --run "$out" --metrics ndcg@10 | awk '/ndcg@10/ {print $NF; exit}')
  printf '%s depth %s: %.0f s, nDCG@10 %s, load %s\n' "$SET" "$depth" "$seconds" "$ndcg" \
    "$(cut -d' ' -f1 /proc/loadavg)" | tee -a "$OUT/times.txt"
done
