#!/usr/bin/env bash
# One trained setting judged as docs/results.md judges the recipe: first on the held-out selection sets (random
# and on-topic distractors, and the deep set that chooses the rerank default with `r2r tune-fusion`), then on
# DL19 and DL20 once: the student alone over BM25's top 100 and the stored default.
#   bash benchmarks/setting_eval.sh RUN TAG [OUT]    e.g. runs/recipe/direct_spread100_b1 spread100
# RUN is a training run folder; OUT (default runs/recipe) holds the recipe's data in OUT/data and gets the runs
# as OUT/TAG_*.trec. Each stage is timed into OUT/times.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=$1 TAG=$2 OUT=${3:-runs/recipe}
R2R=.venv/bin/r2r
export JAX_PLATFORMS=cpu XLA_FLAGS=--xla_force_host_platform_device_count=1
timed() { local name=$1; shift; local t0; t0=$(date +%s); "$@"; echo "[$TAG $name] $(( $(date +%s) - t0 )) s" | tee -a "$OUT/times.txt"; }

for set in heldout heldout_hard heldout_deep; do
  timed "$set" $R2R rerank --checkpoint "$RUN" --student-only --candidates "$OUT/data/${set}_candidates.jsonl" \
    --output "$OUT/${TAG}_student_$set.trec" --tag "$TAG"
  $R2R evaluate --run "$OUT/${TAG}_student_$set.trec" --qrels "$OUT/data/${set}_qrels.txt" --metrics ndcg@10
done
$R2R tune-fusion --checkpoint "$RUN" --student-run "$OUT/${TAG}_student_heldout_deep.trec" --overwrite \
  --candidates "$OUT/data/heldout_deep_candidates.jsonl" --qrels "$OUT/data/heldout_deep_qrels.txt"

for set in dl19 dl20; do
  timed "$set top-100 student alone" $R2R rerank --checkpoint "$RUN" --student-only \
    --candidates "$OUT/data/${set}_top100.jsonl" --output "$OUT/${TAG}_student_${set}_top100.trec" --tag "${TAG}_student"
  timed "$set top-100 default" $R2R rerank --checkpoint "$RUN" \
    --candidates "$OUT/data/${set}_top100.jsonl" --output "$OUT/${TAG}_default_${set}_top100.trec" --tag "${TAG}_default"
  for run in student default; do
    $R2R evaluate --dataset "$set" --run "$OUT/data/bm25_${set}_top100.trec" \
      --compare "$OUT/${TAG}_${run}_${set}_top100.trec" --metrics ndcg@1,ndcg@5,ndcg@10,judged@10
  done
done
