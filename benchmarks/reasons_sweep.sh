#!/usr/bin/env bash
# Full R2R on the recipe's setting: which reasons and which loss weights, chosen on held-out release queries.
# A point is the recipe (configs/smollm2_135m_recipe.yaml: 8 mined negatives, single-query steps) with a few
# flags changed, trained its first 150 steps along the recipe's 450-step learning-rate schedule
# (`--optim.schedule-steps 450`), then scored student-alone on the two selection sets (50 held-out queries
# each: random and on-topic distractors). `finish` resumes a point to the full 450 steps — exactly the run a
# 450-step command would have made — and judges it as the recipe was judged (benchmarks/setting_eval.sh),
# then against the recipe on DL19 + DL20 pooled (97 queries, paired tests).
#   bash benchmarks/reasons_sweep.sh NAME FLAG...      e.g. both_gc0.2 --loss.reasons both --loss.gamma-comparison 0.2
#   bash benchmarks/reasons_sweep.sh finish NAME
#   python -m benchmarks.sweep_table runs/recipe/sweep --control direct   the points, best first, vs direct
# OUT (environment; default runs/recipe) holds the recipe's data in OUT/data and its DL19/DL20 runs; each point
# lives in OUT/sweep/NAME (its flags, run folder, selection runs and reports). Stages are timed into
# OUT/times.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/recipe}
R2R=.venv/bin/r2r
export JAX_PLATFORMS=cpu XLA_FLAGS=--xla_force_host_platform_device_count=1
SHORT=150 FULL=450
timed() { local name=$1; shift; local t0; t0=$(date +%s); "$@"; echo "[$name] $(( $(date +%s) - t0 )) s" | tee -a "$OUT/times.txt"; }

train() {  # NAME STEPS: the point's run, to STEPS (a rerun of a finished run says so and does nothing)
  local dir=$OUT/sweep/$1
  # shellcheck disable=SC2046  # flags.txt holds one flag or value per line
  timed "sweep $1 train to $2" $R2R train --config configs/smollm2_135m_recipe.yaml \
    --data.train-path "$OUT/data/train_hn.jsonl" --data.dev-candidates "$OUT/data/heldout_hard_candidates.jsonl" \
    --data.dev-qrels "$OUT/data/heldout_hard_qrels.txt" --optim.schedule-steps $FULL --steps "$2" \
    --output-dir "$dir/run" $(cat "$dir/flags.txt")
}

usage() { echo "usage: bash benchmarks/reasons_sweep.sh NAME FLAG... | finish NAME" >&2; exit 2; }
[ $# -ge 1 ] || usage
if [ "$1" = finish ]; then
  [ $# -eq 2 ] || usage
  NAME=$2 DIR=$OUT/sweep/$2
  [ -e "$DIR/flags.txt" ] || { echo "reasons_sweep.sh: error: no point $NAME in $OUT/sweep" >&2; exit 2; }
  train "$NAME" $FULL
  bash benchmarks/setting_eval.sh "$DIR/run" "sweep_$NAME" "$OUT"
  # DL19 + DL20 pooled: their qids are distinct
  cat "$($R2R data path dl19 qrels)" "$($R2R data path dl20 qrels)" > "$DIR/pooled_qrels.txt"
  for run in student default; do
    cat "$OUT/${run}_dl19_top100.trec" "$OUT/${run}_dl20_top100.trec" > "$DIR/recipe_${run}_pooled.trec"
    cat "$OUT/sweep_${NAME}_${run}_dl19_top100.trec" "$OUT/sweep_${NAME}_${run}_dl20_top100.trec" > "$DIR/${run}_pooled.trec"
    $R2R evaluate --qrels "$DIR/pooled_qrels.txt" --run "$DIR/recipe_${run}_pooled.trec" \
      --compare "$DIR/${run}_pooled.trec" --metrics ndcg@1,ndcg@5,ndcg@10 --report "$DIR/${run}_pooled_vs_recipe.json"
  done
  exit 0
fi

NAME=$1; shift
DIR=$OUT/sweep/$NAME
mkdir -p "$DIR"
if [ -e "$DIR/flags.txt" ] && [ "$(cat "$DIR/flags.txt")" != "$(printf '%s\n' "$@")" ]; then
  echo "reasons_sweep.sh: error: $DIR/flags.txt holds other flags; name this point differently" >&2; exit 2
fi
printf '%s\n' "$@" > "$DIR/flags.txt"
train "$NAME" $SHORT
for set in heldout heldout_hard; do
  timed "sweep $NAME $set" $R2R rerank --checkpoint "$DIR/run" --student-only \
    --candidates "$OUT/data/${set}_candidates.jsonl" --output "$DIR/$set.trec" --tag "sweep_$NAME"
  $R2R evaluate --run "$DIR/$set.trec" --qrels "$OUT/data/${set}_qrels.txt" --metrics ndcg@5,ndcg@10 \
    --report "$DIR/$set.json"
done
