#!/usr/bin/env bash
# The one-hour recipe of docs/results.md, end to end from a clone: SmolLM2-135M-Instruct trained on the R2R
# release (configs/smollm2_135m_recipe.yaml), its rerank default chosen on held-out release queries, then DL19
# and DL20 (BM25 top 20 and top 100) once each, and its reasons on the held-out queries.
#   r2r data fetch dl19; r2r data fetch dl20; r2r data fetch r2r-release    (or `r2r data add`, docs/datasets.md)
#   bash benchmarks/recipe.sh [OUT]      (OUT defaults to runs/recipe; the config's paths assume runs/recipe)
# Each stage is timed into OUT/times.txt; the figures go to docs/results.md by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/recipe}
R2R=.venv/bin/r2r
export JAX_PLATFORMS=cpu XLA_FLAGS=--xla_force_host_platform_device_count=1
RUN=$OUT/direct_hn8_b1
timed() { local name=$1; shift; local t0; t0=$(date +%s); "$@"; echo "[$name] $(( $(date +%s) - t0 )) s" | tee -a "$OUT/times.txt"; }

mkdir -p "$OUT"
timed base $R2R base smollm2-135m --output runs/bases/smollm2-135m
timed data .venv/bin/python -m benchmarks.recipe_data --out "$OUT/data"
timed mine $R2R mine-negatives --teacher "$OUT/data/train.jsonl" --output "$OUT/data/train_hn.jsonl" --count 8
timed train $R2R train --config configs/smollm2_135m_recipe.yaml --data.train-path "$OUT/data/train_hn.jsonl" \
  --data.dev-candidates "$OUT/data/heldout_hard_candidates.jsonl" --data.dev-qrels "$OUT/data/heldout_hard_qrels.txt" \
  --output-dir "$RUN"

# the rerank default, chosen on the deep selection set (held-out queries, BM25 top 100 over every release passage)
timed "deep selection" $R2R rerank --checkpoint "$RUN" --student-only \
  --candidates "$OUT/data/heldout_deep_candidates.jsonl" --output "$OUT/student_heldout_deep.trec" --tag student
$R2R tune-fusion --checkpoint "$RUN" --student-run "$OUT/student_heldout_deep.trec" --overwrite \
  --candidates "$OUT/data/heldout_deep_candidates.jsonl" --qrels "$OUT/data/heldout_deep_qrels.txt"

# DL19 and DL20, once each: the student alone at depth 20 and 100, and the stored default over the top 100
for set in dl19 dl20; do
  for depth in 20 100; do
    timed "$set top-$depth student alone" $R2R rerank --checkpoint "$RUN" --student-only \
      --candidates "$OUT/data/${set}_top$depth.jsonl" --output "$OUT/student_${set}_top$depth.trec" --tag smollm2_student
  done
  timed "$set top-100 default" $R2R rerank --checkpoint "$RUN" \
    --candidates "$OUT/data/${set}_top100.jsonl" --output "$OUT/default_${set}_top100.trec" --tag smollm2_default
  for run in student_${set}_top20 student_${set}_top100 default_${set}_top100; do
    $R2R evaluate --dataset "$set" --run "$OUT/data/bm25_${set}_top100.trec" --compare "$OUT/$run.trec" \
      --metrics ndcg@1,ndcg@5,ndcg@10,judged@10
  done
done
.venv/bin/python -m benchmarks.depth_curve --default "$RUN/rerank_default.json" --out "$OUT" \
  --set dl19 "$OUT/data/dl19_top100.jsonl" "$OUT/student_dl19_top100.trec" "$($R2R data path dl19 qrels)" \
  --set dl20 "$OUT/data/dl20_top100.jsonl" "$OUT/student_dl20_top100.trec" "$($R2R data path dl20 qrels)"
timed reasons $R2R evaluate-reasons --checkpoint "$RUN" --teacher "$OUT/data/heldout.jsonl" \
  --output "$OUT/heldout_reasons.json"
