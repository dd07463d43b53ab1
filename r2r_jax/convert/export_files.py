"""The small files of an export: config.json, generation_config.json, adapter_config.json, the tokenizer,
`r2r_student.json` (what `r2r rerank --model DIR` needs to score with the right prompt) and the model card."""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from r2r_jax.config import LoraConfig, ModelConfig, TrainConfig
from r2r_jax.config_io import to_dict
from r2r_jax.data.templates import SpecialIds, load_tokenizer
from r2r_jax.model.hf_mapping import hf_config_from_model
from r2r_jax.trained.loading import STUDENT_FILE, PromptSettings

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "tokenizer.model", "vocab.json", "vocab.txt", "merges.txt", "chat_template.jinja",
                   "chat_template.json")
ARCHITECTURES = {"seq-cls": "LlamaForSequenceClassification", "causal-lm": "LlamaForCausalLM"}


@dataclass
class ExportInfo:
    """Provenance and prompt facts every side file draws from."""

    fmt: str
    dtype: str
    train: TrainConfig
    model: ModelConfig
    special: SpecialIds
    base_model: str  # absolute path, "" for a random-init base
    base_hash: str
    checkpoint: str
    step: int

    def eos_ids(self) -> list[int]:
        return [self.special.eot]


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def model_config(info: ExportInfo) -> dict:
    """LlamaConfig for transformers 4 and 5 and vLLM: `rope_scaling` + `rope_theta` (older readers) and
    `rope_parameters` (transformers 5), `torch_dtype` and `dtype`, and the pad id seq-cls needs."""
    out = hf_config_from_model(
        info.model, info.dtype, dtype=info.dtype, architectures=[ARCHITECTURES[info.fmt]],
        bos_token_id=info.special.bos, eos_token_id=info.special.eot, pad_token_id=info.special.pad, use_cache=True,
    )
    out["rope_parameters"] = {**(out["rope_scaling"] or {"rope_type": "default"}), "rope_theta": info.model.rope_theta}
    if info.fmt == "seq-cls":
        out.update(num_labels=1, id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0})
    return out


def generation_config(info: ExportInfo) -> dict:
    """Greedy by default (what the JAX decoder and the parity tests use), stopping at <|eot_id|>."""
    eos = info.eos_ids()
    return {"bos_token_id": info.special.bos, "eos_token_id": eos[0] if len(eos) == 1 else eos,
            "pad_token_id": info.special.pad, "do_sample": False}


def adapter_config(info: ExportInfo, lora: LoraConfig, targets: list[str]) -> dict:
    """A PEFT LoraConfig: same rank/alpha (scale alpha/r, no rsLoRA), HF module names, the score head
    under modules_to_save, task SEQ_CLS (PeftModelForSequenceClassification on the base)."""
    return {
        "peft_type": "LORA", "task_type": "SEQ_CLS", "base_model_name_or_path": info.base_model, "revision": None,
        "r": lora.rank, "lora_alpha": lora.alpha, "lora_dropout": lora.dropout, "target_modules": targets,
        "modules_to_save": ["score"], "bias": "none", "fan_in_fan_out": False, "inference_mode": True,
        "use_rslora": False, "use_dora": False, "init_lora_weights": True, "layers_to_transform": None,
        "layers_pattern": None, "rank_pattern": {}, "alpha_pattern": {},
    }


def student_meta(info: ExportInfo) -> dict:
    data = info.train.data
    return {
        "format": info.fmt, "dtype": info.dtype,
        **dataclasses.asdict(PromptSettings.from_data_config(data)),
        "pad_token_id": info.special.pad, "eot_token_id": info.special.eot, "bos_token_id": info.special.bos,
        "base_model": info.base_model, "base_hash": info.base_hash, "checkpoint": info.checkpoint, "step": info.step,
    }


def copy_tokenizer(source: str, folder: Path, special: SpecialIds) -> None:
    """Copy the training tokenizer's files verbatim; if it names no pad token (Llama-3.1 does not), record
    the pad token the student was trained with in tokenizer_config.json, so batched `tokenizer(...,
    padding=True)` pads with the id config.json names."""
    src = Path(source)
    if src.is_dir():
        for name in TOKENIZER_FILES:
            if (src / name).is_file():
                shutil.copyfile(src / name, folder / name)
    else:  # a hub name: let transformers write the files
        load_tokenizer(source).save_pretrained(folder)
    path = folder / "tokenizer_config.json"
    if not path.is_file():
        return
    tok_cfg = json.loads(path.read_text())
    if tok_cfg.get("pad_token") is None:
        tok_cfg["pad_token"] = load_tokenizer(folder).convert_ids_to_tokens(special.pad)
        _write_json(path, tok_cfg)


_USAGE = {
    "seq-cls": """```python
import json, torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

template = json.load(open(f"{DIR}/r2r_student.json"))["prompt_template"]
tok = AutoTokenizer.from_pretrained(DIR)
model = AutoModelForSequenceClassification.from_pretrained(DIR).eval()
prompts = [TEMPLATE.format(query=q, passage=p) for p in passages]
with torch.no_grad():
    scores = model(**tok(prompts, return_tensors="pt", padding=True)).logits[:, 0]
```""",
    "causal-lm": """```python
import dataclasses
import json
from transformers import AutoModelForCausalLM, AutoTokenizer

template = json.load(open(f"{DIR}/r2r_student.json"))["prompt_template"]
tok = AutoTokenizer.from_pretrained(DIR, padding_side="left")
model = AutoModelForCausalLM.from_pretrained(DIR).eval()
enc = tok([TEMPLATE.format(query=q, passage=p)], return_tensors="pt")
reason = model.generate(**enc, max_new_tokens=64, do_sample=False)  # the direct relevance reason
```
Serve with vLLM: `vllm serve DIR`. The relevance score head is not part of this format (use seq-cls).""",
    "peft": """```python
from peft import PeftModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from r2r_jax.data.templates import load_tokenizer

base = AutoModelForSequenceClassification.from_pretrained(BASE, num_labels=1, pad_token_id=PAD)
model = PeftModel.from_pretrained(base, DIR).eval()  # score head comes from modules_to_save
tok = AutoTokenizer.from_pretrained(DIR)
```
`pad_token_id` must be passed: the base's config does not name the pad token the student was trained with.""",
}


def model_card(info: ExportInfo) -> str:
    data = info.train.data
    kind = {"seq-cls": "merged `LlamaForSequenceClassification` (the ranker: one relevance score per prompt)",
            "causal-lm": "merged `LlamaForCausalLM` (explanations; servable by vLLM)",
            "peft": "PEFT LoRA adapter + score head (`modules_to_save`) for the base model"}[info.fmt]
    usage = (_USAGE[info.fmt].replace("TEMPLATE", "template").replace("BASE", repr(info.base_model))
             .replace("PAD", str(info.special.pad)))
    library = "peft" if info.fmt == "peft" else "transformers"
    pipeline = "text-generation" if info.fmt == "causal-lm" else "text-classification"
    lora = info.train.lora
    return f"""---
library_name: {library}
pipeline_tag: {pipeline}
tags: [r2r-jax, reranking, reason-to-rank]
---
# Reason-to-Rank student ({info.fmt})

Exported by `r2r export` from checkpoint `{info.checkpoint}` (step {info.step}) as a {kind}, weights in
{info.dtype}.

- **Base model**: `{info.base_model or "(random init)"}`, fingerprint `{info.base_hash}`
- **LoRA**: rank {lora.rank}, alpha {lora.alpha}, targets {", ".join(lora.targets)}
  ({"kept as an adapter" if info.fmt == "peft" else "merged into the weights"})
- **pad_token_id**: {info.special.pad} (sequence scores are read at the last non-pad token),
  reasons end with token id {info.special.eot}

## Prompt template (scores depend on it)

Scores are only meaningful for prompts rendered exactly like training prompts. The tokenizer adds
the BOS token itself; prompts are cut to {data.max_prompt_len} tokens by shortening the passage.

```
{data.prompt_template}
```

Comparison prompts (for comparison reasons), with passages listed as `[1] text`, `[2] text`:

```
{data.comparison_template}
```

`r2r_student.json` holds these for `r2r rerank --model DIR`.

## Usage

{usage}

## Training configuration

`model` is the architecture as resolved for training (from the base's config.json when there is a base).

```json
{json.dumps({**to_dict(info.train), "model": to_dict(info.model)}, indent=2)}
```
"""


def write_side_files(folder: Path, info: ExportInfo, tokenizer_source: str, lora: LoraConfig | None = None,
                     targets: list[str] | None = None) -> None:
    """Everything but the weights; written after them, so a folder with config.json holds every shard."""
    copy_tokenizer(tokenizer_source, folder, info.special)
    if info.fmt == "peft":
        _write_json(folder / "adapter_config.json", adapter_config(info, lora or info.train.lora, targets or []))
    else:
        _write_json(folder / "config.json", model_config(info))
        if info.fmt == "causal-lm":
            _write_json(folder / "generation_config.json", generation_config(info))
    _write_json(folder / STUDENT_FILE, student_meta(info))
    (folder / "README.md").write_text(model_card(info))
