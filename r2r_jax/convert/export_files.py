"""The small files of an export: config.json, generation_config.json, adapter_config.json, the tokenizer,
`r2r_student.json` (what `r2r rerank --model DIR` needs to score with the right prompt), the
sentence-transformers files of a seq-cls export (crossencoder_files.py) and the model card (model_card.py)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from r2r_jax.config import LoraConfig
from r2r_jax.convert.crossencoder_files import write_crossencoder_files
from r2r_jax.convert.export_info import ExportInfo, write_json
from r2r_jax.convert.model_card import model_card
from r2r_jax.data.templates import SpecialIds, load_tokenizer
from r2r_jax.model.hf_mapping import hf_config_from_model
from r2r_jax.trained.loading import STUDENT_FILE, PromptSettings

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "tokenizer.model", "vocab.json", "vocab.txt", "merges.txt", "chat_template.jinja",
                   "chat_template.json")
ARCHITECTURES = {"seq-cls": "LlamaForSequenceClassification", "causal-lm": "LlamaForCausalLM"}


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
        write_json(path, tok_cfg)


def final_folder(staged: Path) -> Path:
    """Where the export will live: `atomic.staged_folder` writes into a hidden `.NAME.partial-XXXX` folder beside
    it and renames that onto NAME when complete (the card's snippets must name the final path)."""
    name, sep, _ = staged.name.partition(".partial-")
    return staged.parent / name[1:] if sep and name.startswith(".") else staged


def write_side_files(folder: Path, info: ExportInfo, tokenizer_source: str, lora: LoraConfig | None = None,
                     targets: list[str] | None = None) -> None:
    """Everything but the weights; written after them, so a folder with config.json holds every shard."""
    copy_tokenizer(tokenizer_source, folder, info.special)
    if info.fmt == "peft":
        write_json(folder / "adapter_config.json", adapter_config(info, lora or info.train.lora, targets or []))
    else:
        write_json(folder / "config.json", model_config(info))
        if info.fmt == "causal-lm":
            write_json(folder / "generation_config.json", generation_config(info))
    write_json(folder / STUDENT_FILE, student_meta(info))
    if info.fmt == "seq-cls":
        write_crossencoder_files(folder, info.train.data.prompt_template, info.train.data.max_prompt_len)
    (folder / "README.md").write_text(model_card(info, str(final_folder(Path(folder)))))
