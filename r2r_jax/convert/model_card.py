"""The README.md of an export: Hub metadata (base model, license, pipeline tag), usage that runs as written
(tests execute every ```python block of a seq-cls card), a measured section that
`benchmarks/crossencoder_throughput.py` fills in, the prompt templates and the training configuration."""

from __future__ import annotations

import json
import re
from pathlib import Path

from r2r_jax.config_io import to_dict
from r2r_jax.convert.crossencoder_files import TEMPLATES_FILE
from r2r_jax.convert.export_info import ExportInfo
from r2r_jax.convert.gguf_base import KNOWN_BASES, MARKER

# Hub ids of the bases `r2r base` converts by name (the GGUF files carry no such metadata)
BASE_HUB_IDS = {"smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct"}
PROJECT_LICENSE = "mit"  # a random-init student holds nothing but what this project trained
MEASURED_BEGIN, MEASURED_END = "<!-- r2r:measured -->", "<!-- /r2r:measured -->"
NOT_MEASURED = ("Not measured for this export yet. From the r2r-jax repository,\n"
                "`python -m benchmarks.crossencoder_throughput --export DIR ...` measures reranking throughput and\n"
                "nDCG@10 of every backend below on TREC DL19 and writes its table here.")


def base_identity(base_model: str) -> tuple[str | None, str]:
    """(Hub id or None, license) of the base: a base `r2r base` converted by name, a Hub snapshot folder
    (`.../models--ORG--NAME/snapshots/...`) and its README's `license:`; `other` when unknown."""
    if not base_model:
        return None, PROJECT_LICENSE
    folder = Path(base_model)
    hub_id, license_ = None, "other"
    if (folder / MARKER).is_file():
        name = json.loads((folder / MARKER).read_text()).get("name")
        if name in KNOWN_BASES:
            return BASE_HUB_IDS.get(name), KNOWN_BASES[name].license.lower()
    for part in folder.parts:
        if part.startswith("models--") and part.count("--") == 2:
            hub_id = "/".join(part.split("--")[1:])
    readme = folder / "README.md"
    if readme.is_file():
        found = re.search(r"^license:\s*(\S+)\s*$", readme.read_text(errors="replace").split("\n---", 1)[0], re.M)
        if found:
            license_ = found.group(1)
    return hub_id, license_


def _seq_cls_usage(folder: str) -> str:
    return f"""### sentence-transformers

```python
from sentence_transformers import CrossEncoder

model_dir = {folder!r}
model = CrossEncoder(model_dir, trust_remote_code=True)
query = "how do bees make honey"
passages = ["Bees collect nectar, break it down into simple sugars and store it in honeycomb cells, where "
            "fanning wings evaporate the water until it becomes honey.",
            "The honey badger is a mammal of Africa and Asia known for its toughness."]
scores = model.predict([(query, p) for p in passages])  # the student's raw scores, higher is more relevant
ranking = model.rank(query, passages)  # [{{"corpus_id": 0, "score": ...}}, ...], best first
print(scores, ranking)
```

`trust_remote_code=True` runs `r2r_crossencoder.py` from this folder: it renders each (query, passage) pair
with the prompt template below and shortens the passage until the prompt fits, exactly as the student was
trained and as `r2r rerank` scores; a stock CrossEncoder would tokenize the pair without the template.

### ONNX Runtime

```python
from sentence_transformers import CrossEncoder

model_dir = {folder!r}
model = CrossEncoder(model_dir, backend="onnx", trust_remote_code=True)  # writes onnx/model.onnx on first use
print(model.predict([("how do bees make honey", "Bees turn nectar into honey.")]))
```

An int8 copy (onnxruntime's dynamic quantization: int8 weights, activations quantized per call), loaded by
file name. It is a quarter of the size and faster, but it can cost ranking quality: compare it in the
measured section before serving it.

```python
from onnxruntime.quantization import QuantType, quantize_dynamic
from sentence_transformers import CrossEncoder

model_dir = {folder!r}
quantize_dynamic(f"{{model_dir}}/onnx/model.onnx", f"{{model_dir}}/onnx/model_qint8.onnx", weight_type=QuantType.QInt8)
model = CrossEncoder(model_dir, backend="onnx", trust_remote_code=True,
                     model_kwargs={{"file_name": "onnx/model_qint8.onnx"}})
print(model.predict([("how do bees make honey", "Bees turn nectar into honey.")]))
```

ONNX needs `pip install onnx onnxruntime` (the export goes through torch.onnx).

### transformers

```python
import json
import sys

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

model_dir = {folder!r}
sys.path.insert(0, model_dir)
from {Path(TEMPLATES_FILE).stem} import fit_prompts, render_prompt  # the student's prompt fitting, shipped here

settings = json.load(open(f"{{model_dir}}/r2r_student.json"))
tok = AutoTokenizer.from_pretrained(model_dir, padding_side="right")  # the head reads the last real token
model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
query, passages = "how do bees make honey", ["Bees turn nectar into honey.", "Badgers dig burrows."]
ids = fit_prompts(tok, lambda q, ps: render_prompt(settings["prompt_template"], q, ps[0]),
                  [(query, [p]) for p in passages], settings["max_prompt_len"])
batch = tok.pad({{"input_ids": ids}}, return_tensors="pt")
with torch.no_grad():
    print(model(**batch).logits[:, 0])
```"""


_USAGE = {
    "causal-lm": """```python
import json
from transformers import AutoModelForCausalLM, AutoTokenizer

template = json.load(open(f"{DIR}/r2r_student.json"))["prompt_template"]
tok = AutoTokenizer.from_pretrained(DIR, padding_side="left")
model = AutoModelForCausalLM.from_pretrained(DIR).eval()
enc = tok([template.format(query=q, passage=p)], return_tensors="pt")
reason = model.generate(**enc, max_new_tokens=64, do_sample=False)  # the direct relevance reason
```
Serve with vLLM: `vllm serve DIR`. The relevance score head is not part of this format (use seq-cls).""",
    "peft": """```python
from peft import PeftModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer

base = AutoModelForSequenceClassification.from_pretrained(BASE, num_labels=1, pad_token_id=PAD)
model = PeftModel.from_pretrained(base, DIR).eval()  # score head comes from modules_to_save
tok = AutoTokenizer.from_pretrained(DIR)
```
`pad_token_id` must be passed: the base's config does not name the pad token the student was trained with.""",
}


def measured_section(table: str | None) -> str:
    return f"{MEASURED_BEGIN}\n{table.strip() if table else NOT_MEASURED}\n{MEASURED_END}"


def write_measured(folder: str | Path, table: str) -> None:
    """Replace the measured section of `folder`'s card (what the throughput benchmark calls)."""
    path = Path(folder) / "README.md"
    text = path.read_text()
    start, end = text.find(MEASURED_BEGIN), text.find(MEASURED_END)
    if start < 0 or end < start:
        raise ValueError(f"{path}: no measured section ({MEASURED_BEGIN} ... {MEASURED_END})")
    path.write_text(text[:start] + measured_section(table) + text[end + len(MEASURED_END):])


def front_matter(info: ExportInfo) -> str:
    hub_id, license_ = base_identity(info.base_model)
    library = {"seq-cls": "sentence-transformers", "causal-lm": "transformers", "peft": "peft"}[info.fmt]
    pipeline = {"seq-cls": "text-ranking", "causal-lm": "text-generation", "peft": "text-classification"}[info.fmt]
    tags = ["r2r-jax", "reranking", "reason-to-rank"] + (["cross-encoder", "text-ranking"]
                                                        if info.fmt == "seq-cls" else [])
    lines = ["---"] + ([f"base_model: {hub_id}"] if hub_id else []) + [
        f"license: {license_}", f"library_name: {library}", f"pipeline_tag: {pipeline}", f"tags: [{', '.join(tags)}]",
        "---"]
    return "\n".join(lines)


def model_card(info: ExportInfo, folder: str) -> str:
    """The card of an export that will live at `folder` (its snippets name that path)."""
    data = info.train.data
    kind = {"seq-cls": "merged `LlamaForSequenceClassification` (the ranker: one relevance score per prompt)",
            "causal-lm": "merged `LlamaForCausalLM` (explanations; servable by vLLM)",
            "peft": "PEFT LoRA adapter + score head (`modules_to_save`) for the base model"}[info.fmt]
    if info.fmt == "seq-cls":
        usage = _seq_cls_usage(folder)
        measured = f"\n## Measured\n\n{measured_section(None)}\n"
    else:
        usage = (_USAGE[info.fmt].replace("DIR", repr(folder)).replace("BASE", repr(info.base_model))
                 .replace("PAD", str(info.special.pad)))
        measured = ""
    hub_id, license_ = base_identity(info.base_model)
    lora = info.train.lora
    return f"""{front_matter(info)}
# Reason-to-Rank student ({info.fmt})

Exported by `r2r export` from checkpoint `{info.checkpoint}` (step {info.step}) as a {kind}, weights in
{info.dtype}.

- **Base model**: {f"`{hub_id}`, converted to " if hub_id else ""}`{info.base_model or "(random init)"}`,
  fingerprint `{info.base_hash}`; license: {license_}{" (the base model's)" if info.base_model else ""}
- **LoRA**: rank {lora.rank}, alpha {lora.alpha}, targets {", ".join(lora.targets)}
  ({"kept as an adapter" if info.fmt == "peft" else "merged into the weights"})
- **pad_token_id**: {info.special.pad} (sequence scores are read at the last non-pad token),
  reasons end with token id {info.special.eot}

## Usage

{usage}
{measured}
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

## Training configuration

`model` is the architecture as resolved for training (from the base's config.json when there is a base).

```json
{json.dumps({**to_dict(info.train), "model": to_dict(info.model)}, indent=2)}
```
"""
