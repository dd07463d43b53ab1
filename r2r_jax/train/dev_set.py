"""The dev set a run evaluates on: its queries and candidates, its qrels, and nDCG of the current student."""

from __future__ import annotations

from pathlib import Path

import jax

from r2r_jax.config import DataConfig, TrainConfig
from r2r_jax.data.candidates import read_candidates
from r2r_jax.eval.metrics import evaluate
from r2r_jax.inference.scoring import rank_query, score_candidates
from r2r_jax.parallel.batch import data_parallel_size
from r2r_jax.retrieval.trec import read_qrels, write_run
from r2r_jax.train.setup import Prepared

DEV_METRICS = ["ndcg@1", "ndcg@5", "ndcg@10"]


def dev_candidates(data: DataConfig) -> list:
    """The dev queries and candidates the trainer evaluates on: `dev_max_queries` first queries, each cut to
    its first `dev_max_candidates` candidates."""
    items = read_candidates(data.dev_candidates)
    if data.dev_max_queries:
        items = items[: data.dev_max_queries]
    if data.dev_max_candidates:
        for qc in items:
            qc.candidates = qc.candidates[: data.dev_max_candidates]
    return items


class DevSet:
    """Dev candidates + qrels, scored with the student's current adapters."""

    def __init__(self, cfg: TrainConfig, tokenizer, mesh):
        self.items = dev_candidates(cfg.data)
        self.qrels = read_qrels(cfg.data.dev_qrels)
        self.cfg, self.tokenizer, self.mesh = cfg, tokenizer, mesh
        data_devices = data_parallel_size(mesh)
        self.batch_size = max(data_devices, 32 // data_devices * data_devices)

    def evaluate(self, prepared: Prepared, score_fn, run_path: Path | None = None) -> dict[str, float]:
        """nDCG of the student's ranking of the dev candidates; with `run_path` (process 0) also its TREC run,
        so the first and last evaluations can be re-evaluated or compared without scoring again."""
        scores = score_candidates(score_fn, prepared.student.variables(prepared.state.trainable), self.tokenizer,
                                  self.items, self.cfg.data.prompt_template, self.cfg.data.max_prompt_len,
                                  self.batch_size, self.mesh)
        if run_path is not None and jax.process_index() == 0:
            write_run(run_path, {qc.qid: rank_query(qc, scores[qc.qid]) for qc in self.items}, tag="r2r-dev")
        result = evaluate(scores, self.qrels, DEV_METRICS)
        return {k: float(v) for k, v in result.means.items()}
