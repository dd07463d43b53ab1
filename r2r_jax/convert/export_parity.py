"""An exported folder against the JAX student, on the project's own scoring prompts.

Both sides see the same token ids: the JAX student its usual left-padded batch (score at the last
column), transformers a right-padded batch used as any HF user would (no position ids; the seq-cls head
finds the last real token through `pad_token_id`). The student computes in float32 on its stored weights,
so the differences measure the export (its dtype, the merge), not the training-time compute dtype.

Scores: seq-cls and peft use transformers' own score head; causal-lm has none, so the student's head is
applied to the export's final hidden state. Logits: causal-lm uses its own LM head; seq-cls and peft have
none, so the student's LM head is applied to the export's final hidden states at every real token
(which checks the whole trunk, not only the last position).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from r2r_jax.data.candidates import read_candidates
from r2r_jax.data.features import encode_prompts
from r2r_jax.data.records import RecordError, read_records, read_text
from r2r_jax.model.hf_mapping import ConversionError
from r2r_jax.model.llama import LlamaForRanking


@dataclass
class Prompts:
    ids: np.ndarray  # (N, P) left-padded with the pad id
    mask: np.ndarray
    groups: list[slice]  # rows of each query


def load_queries(path: str | Path) -> list[tuple[str, list[str]]]:
    """(query, passages) from candidates (rank_llm JSONL / RankGPT hits) or teacher records (teacher.jsonl)."""
    text = read_text(path).lstrip()
    try:
        first = json.loads(text.splitlines()[0]) if text and not text.startswith("[") else None
    except json.JSONDecodeError as e:
        raise RecordError(f"not JSON ({e.msg})", path=str(path), line=1) from None
    if first is not None and not isinstance(first, dict):
        raise RecordError("expected a JSON object", path=str(path), line=1)
    if first is None or isinstance(first.get("query"), dict):
        return [(qc.query, [c.text for c in qc.candidates]) for qc in read_candidates(path)]
    return [(r.query, [c.text for c in r.candidates]) for r in read_records(path)]


def scoring_prompts(tokenizer, queries: list[tuple[str, list[str]]], template: str, max_len: int) -> Prompts:
    ids, masks, groups, start = [], [], [], 0
    for query, passages in queries:
        i, m = encode_prompts(tokenizer, query, passages, template, max_len)
        ids.append(i)
        masks.append(m)
        groups.append(slice(start, start + len(passages)))
        start += len(passages)
    ids, mask = np.concatenate(ids), np.concatenate(masks)
    keep = int(mask.sum(axis=1).max())  # drop columns that are padding in every row
    return Prompts(ids[:, -keep:], mask[:, -keep:], groups)


def right_padded(ids: np.ndarray, mask: np.ndarray, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    out_ids, out_mask = np.full_like(ids, pad_id), np.zeros_like(mask)
    for r, n in enumerate(mask.sum(axis=1)):
        out_ids[r, :n], out_mask[r, :n] = ids[r, len(ids[r]) - n:], 1
    return out_ids, out_mask


class StudentRef:
    """The JAX student in float32 compute: scores and LM logits, and its heads applied to given hidden states."""

    def __init__(self, prepared):
        cfg = dataclasses.replace(prepared.model_cfg, dtype="float32", remat_policy="none", attention="xla")
        self.model = LlamaForRanking(cfg, prepared.student.model.lora)
        self.variables = prepared.student.variables(prepared.state.trainable)
        model = self.model

        def forward(v, ids, mask):
            hidden, _ = model.apply(v, ids, mask)
            return model.apply(v, hidden[:, -1], method=LlamaForRanking.scores), model.apply(
                v, hidden, method=LlamaForRanking.lm_logits).astype(jnp.float32)

        self._forward = jax.jit(forward)
        self._logits = jax.jit(lambda v, h: model.apply(v, h, method=LlamaForRanking.lm_logits).astype(jnp.float32))
        self._scores = jax.jit(lambda v, h: model.apply(v, h, method=LlamaForRanking.scores))

    def outputs(self, ids, mask) -> tuple[np.ndarray, np.ndarray]:
        scores, logits = self._forward(self.variables, ids, mask)
        return np.asarray(scores), np.asarray(logits)

    def lm_logits(self, hidden: np.ndarray) -> np.ndarray:
        return np.asarray(self._logits(self.variables, jnp.asarray(hidden, jnp.float32)))

    def scores(self, hidden: np.ndarray) -> np.ndarray:
        return np.asarray(self._scores(self.variables, jnp.asarray(hidden, jnp.float32)))


def folder_format(folder: str | Path) -> str:
    folder = Path(folder)
    meta = folder / "r2r_student.json"
    if meta.is_file():
        return json.loads(meta.read_text())["format"]
    if (folder / "adapter_config.json").is_file():
        return "peft"
    if not (folder / "config.json").is_file():
        raise ConversionError(f"{folder}: neither config.json nor adapter_config.json")
    arch = json.loads((folder / "config.json").read_text()).get("architectures") or [""]
    return "seq-cls" if arch[0].endswith("ForSequenceClassification") else "causal-lm"


def folder_dtype(folder: str | Path) -> str:
    """The dtype an export was written in (r2r_student.json, else config.json)."""
    for name, key in (("r2r_student.json", "dtype"), ("config.json", "torch_dtype")):
        path = Path(folder) / name
        if path.is_file():
            value = json.loads(path.read_text()).get(key)
            if value:
                return str(value)
    return "float32"


def load_export(folder: str | Path, fmt: str, pad_id: int, torch_dtype: str = "float32"):
    """The exported model as a user loads it (PEFT: on the base folder its adapter_config names)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    dtype = getattr(torch, torch_dtype)
    if fmt == "causal-lm":
        return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
    if fmt == "seq-cls":
        return AutoModelForSequenceClassification.from_pretrained(folder, dtype=dtype).eval()
    from peft import PeftModel

    base = json.loads((Path(folder) / "adapter_config.json").read_text())["base_model_name_or_path"]
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, pad_token_id=pad_id, dtype=dtype)
    return PeftModel.from_pretrained(model, folder).eval()


def hf_outputs(model, fmt: str, ids: np.ndarray, mask: np.ndarray, pad_id: int, ref: StudentRef):
    """(scores [N], logits of the real tokens [n_real, V]) of the export on left-padded prompts."""
    import torch

    rids, rmask = right_padded(ids, mask, pad_id)
    t_ids, t_mask = torch.from_numpy(rids).long(), torch.from_numpy(rmask).long()
    trunk = model.get_base_model().model if fmt == "peft" else model.model
    last = rmask.sum(axis=1) - 1
    with torch.no_grad():
        hidden = trunk(input_ids=t_ids, attention_mask=t_mask).last_hidden_state.float().numpy()
        if fmt == "causal-lm":
            logits = model(input_ids=t_ids, attention_mask=t_mask).logits.float().numpy()[rmask == 1]
            scores = ref.scores(hidden[np.arange(len(last)), last])
        else:
            scores = model(input_ids=t_ids, attention_mask=t_mask).logits.float().numpy()[:, 0]
            logits = ref.lm_logits(hidden)[rmask == 1]
    return scores, logits


@dataclass
class ParityReport:
    max_abs_score_diff: float
    max_abs_logit_diff: float
    same_order: int  # queries whose candidates the two rank identically
    queries: int
    score_scale: float  # max |student score|, for relative bounds
    logit_scale: float  # max |student logit| over real tokens

    def relative(self) -> tuple[float, float]:
        return (self.max_abs_score_diff / max(self.score_scale, 1e-12),
                self.max_abs_logit_diff / max(self.logit_scale, 1e-12))


def compare(model, fmt: str, prompts: Prompts, pad_id: int, ref: StudentRef, chunk: int = 8) -> ParityReport:
    """Max |difference| over all prompts, in fixed-size chunks (one compile; bounded logits memory)."""
    n = len(prompts.ids)
    s_ours, s_hf, worst_logit, logit_scale = np.zeros(n, np.float32), np.zeros(n, np.float32), 0.0, 0.0
    for start in range(0, n, chunk):
        rows = np.arange(start, start + chunk) % n  # the last chunk repeats early rows to keep the shape
        ids, mask = prompts.ids[rows], prompts.mask[rows]
        ours, ours_logits = ref.outputs(ids, mask)
        theirs, their_logits = hf_outputs(model, fmt, ids, mask, pad_id, ref)
        real = min(chunk, n - start)
        s_ours[start: start + real], s_hf[start: start + real] = ours[:real], theirs[:real]
        ours_logits = ours_logits[mask == 1]
        worst_logit = max(worst_logit, float(np.max(np.abs(ours_logits - their_logits))))
        logit_scale = max(logit_scale, float(np.max(np.abs(ours_logits))))
    same = sum(np.array_equal(np.argsort(-s_ours[g], kind="stable"), np.argsort(-s_hf[g], kind="stable"))
               for g in prompts.groups)
    return ParityReport(float(np.max(np.abs(s_ours - s_hf))), worst_logit, int(same), len(prompts.groups),
                        float(np.max(np.abs(s_ours))), logit_scale)
