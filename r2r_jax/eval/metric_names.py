"""The metrics `r2r evaluate` reports unless told otherwise, in a module of their own: the command's `--help`
names them without importing the metric code (ir_measures, pytrec_eval)."""

DEFAULT_METRICS = "ndcg@1,ndcg@5,ndcg@10,mrr@10,r@100"
