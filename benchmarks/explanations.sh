#!/usr/bin/env bash
# The explanations `r2r rerank` serves, measured (docs/results.md, "Explanations"), for the recipe's student:
# 1. the 50 held-out release queries: each query's five teacher passages, in the order the teacher saw them,
#    reranked with --explain-top 5 (one listwise window, as in training); ROUGE-L / BLEU of the served reasons
#    against GPT-4's for the same passages (`r2r evaluate-reasons --explanations ... --teacher ...`);
# 2. DL19 and DL20: the student alone over BM25's top 100, direct reasons for ranks 1-10 and 91-100, and
#    whether they agree with the ranking (the agreement table of `r2r evaluate-reasons --explanations`).
#   bash benchmarks/explanations.sh [OUT] [MAX_QUERIES] [SETS]
# OUT defaults to runs/explanations; MAX_QUERIES (a number, or "" for all) takes only the first N queries of
# each set, for a timing run; SETS (default "heldout dl19 dl20") picks the parts to run. RUN and DATA override the student and the recipe's data folder (benchmarks/recipe.sh makes both).
# Each stage is timed into OUT/times.txt; the figures go to docs/results.md by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/explanations}
MAX=${2:-}
SETS=" ${3:-heldout dl19 dl20} "
RUN=${RUN:-runs/recipe/direct_hn8_b1}
DATA=${DATA:-runs/recipe/data}
R2R=.venv/bin/r2r
export JAX_PLATFORMS=cpu XLA_FLAGS=--xla_force_host_platform_device_count=1
LIMIT=()
if [ -n "$MAX" ]; then LIMIT=(--max-queries "$MAX"); fi
timed() { local name=$1; shift; local t0; t0=$(date +%s); "$@"; echo "[$name] $(( $(date +%s) - t0 )) s" | tee -a "$OUT/times.txt"; }

mkdir -p "$OUT"
if [[ $SETS == *" heldout "* ]]; then
# the held-out records' own passages as rank_llm candidates, in record order (the order the teacher saw them)
.venv/bin/python - "$DATA/heldout.jsonl" "$OUT/heldout_teacher_candidates.jsonl" <<'EOF'
import sys

from r2r_jax.data.candidates import QueryCandidates, ScoredPassage, write_candidates
from r2r_jax.data.records import read_records

write_candidates(sys.argv[2], [QueryCandidates(r.qid, r.query, [ScoredPassage(c.docid, c.text) for c in r.candidates])
                               for r in read_records(sys.argv[1])])
EOF
timed "heldout rerank + explain top 5" $R2R rerank --checkpoint "$RUN" --student-only \
  --candidates "$OUT/heldout_teacher_candidates.jsonl" --output "$OUT/heldout.trec" --explain-top 5 "${LIMIT[@]}"
$R2R evaluate-reasons --explanations "$OUT/heldout.explanations.jsonl" --teacher "$DATA/heldout.jsonl" \
  --output "$OUT/heldout_reasons.json" | tee "$OUT/heldout_reasons.txt"
fi

for set in dl19 dl20; do
  [[ $SETS == *" $set "* ]] || continue
  timed "$set top-100 student alone + explain 1-10,91-100" $R2R rerank --checkpoint "$RUN" --student-only \
    --candidates "$DATA/${set}_top100.jsonl" --output "$OUT/${set}_student.trec" \
    --explain-ranks 1-10,91-100 --explain-comparisons none "${LIMIT[@]}"
  $R2R evaluate-reasons --explanations "$OUT/${set}_student.explanations.jsonl" \
    --output "$OUT/${set}_agreement.json" | tee "$OUT/${set}_agreement.txt"
done
