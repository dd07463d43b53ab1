"""The sentence-transformers module of a seq-cls export: `CrossEncoder(DIR, trust_remote_code=True)` builds the
student's own prompts, so its scores are `r2r rerank`'s (docs/export.md, "sentence-transformers").

`r2r export --format seq-cls` copies this file into the export as `r2r_crossencoder.py` and, beside it,
`r2r_jax/data/templates.py` as `r2r_templates.py`, so the folder needs neither r2r-jax nor JAX. A stock
CrossEncoder tokenizes a (query, passage) pair as two texts with the tokenizer's own pair format and cuts tokens
off the end; the student was trained on one rendered prompt (`prompt_template`) whose *passage* is shortened at
one of its token boundaries until the prompt fits `max_prompt_len`, so the template's end ("Answer:") survives.
This module renders and cuts exactly so — the same function `r2r rerank` calls — and pads on the right with the
config's pad id, where transformers' sequence-classification head reads the last real token.

`backend="onnx"` runs the same prompts through onnxruntime: `onnx/model.onnx` in the folder (written by
`export_onnx` on first use, through torch.onnx), or `model_kwargs={"file_name": "onnx/model_qint8.onnx"}` for
an int8 file made with onnxruntime's `quantize_dynamic`. optimum, which sentence-transformers uses for ONNX,
does not support transformers 5.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from sentence_transformers.base.modules import Transformer
from transformers.modeling_outputs import SequenceClassifierOutput

try:  # in an export folder, where `r2r export` copies r2r_jax/data/templates.py beside this file
    from .r2r_templates import fit_prompts, render_prompt
except ImportError:  # imported from the r2r-jax package
    from r2r_jax.data.templates import fit_prompts, render_prompt

logger = logging.getLogger(__name__)

ONNX_FILE = "onnx/model.onnx"
ONNX_OPSET = 17


class R2RPromptTransformer(Transformer):
    """A sequence-classification Transformer whose inputs are (query, passage) pairs rendered with the student's
    prompt template and cut to its prompt length; `prompt_template` and `max_prompt_len` live in
    `sentence_bert_config.json` beside the usual keys."""

    config_keys = [*Transformer.config_keys, "prompt_template", "max_prompt_len"]

    def __init__(self, model_name_or_path: str, *, prompt_template: str, max_prompt_len: int, **kwargs: Any):
        super().__init__(model_name_or_path, **kwargs)
        self.prompt_template = prompt_template
        self.max_prompt_len = int(max_prompt_len)

    def _render(self, query: str, passages: Sequence[str]) -> str:
        return render_prompt(self.prompt_template, query, passages[0])

    def preprocess(self, inputs: Sequence[Any], prompt: str | None = None, processing_kwargs: Any = None,
                   **kwargs: Any) -> dict[str, Any]:
        """Right-padded `input_ids` / `attention_mask` of the students' prompts for (query, passage) pairs."""
        if not inputs:
            return {}
        if prompt:
            raise ValueError("this model renders its own prompt template; do not pass a prompt")
        pairs = []
        for i, item in enumerate(inputs):
            if not (isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(t, str) for t in item)):
                raise ValueError(f"input {i}: expected a (query, passage) pair of strings, got {item!r:.80}")
            pairs.append((item[0], [item[1]]))
        rows = fit_prompts(self.tokenizer, self._render, pairs, self.max_prompt_len)
        pad = self.config.pad_token_id
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, ids in enumerate(rows):
            input_ids[r, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[r, : len(ids)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "modality": "text"}

    def save(self, output_path: str, *args: Any, **kwargs: Any) -> None:
        """`CrossEncoder.save` copies this module's file into the new folder; the prompt fitting goes with it."""
        super().save(output_path, *args, **kwargs)
        target = Path(output_path) / "r2r_templates.py"
        if not target.exists():
            shutil.copyfile(sys.modules[fit_prompts.__module__].__file__, target)

    def _load_model(self, model_name_or_path: str, transformer_task: str, config: Any, backend: str,
                    is_peft_model: bool, **model_kwargs: Any):
        if backend != "onnx":
            return super()._load_model(model_name_or_path, transformer_task, config, backend, is_peft_model,
                                        **model_kwargs)
        folder = Path(model_name_or_path)
        if not folder.is_dir():
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(model_name_or_path, revision=model_kwargs.get("revision"),
                                            token=model_kwargs.get("token")))
        name = model_kwargs.get("file_name") or ONNX_FILE
        path = folder / name
        if not path.is_file():
            if name != ONNX_FILE:
                raise FileNotFoundError(f"{path}: no such ONNX file (the card shows how to make the int8 one)")
            export_onnx(folder)
        return OnnxSequenceClassifier(path, config, model_kwargs.get("provider"))


class OnnxSequenceClassifier(torch.nn.Module):
    """An onnxruntime session in the place of the transformers model: same inputs, `.logits` out."""

    def __init__(self, path: Path, config: Any, provider: str | None = None):
        super().__init__()
        try:
            import onnxruntime
        except ImportError as e:
            raise ImportError("backend='onnx' needs onnxruntime: pip install onnxruntime") from e
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = [provider] if provider else onnxruntime.get_available_providers()
        self.session = onnxruntime.InferenceSession(str(path), options, providers=providers)
        self.config = config
        self.path = path
        self.device = torch.device("cpu")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any) -> SequenceClassifierOutput:
        feeds = {"input_ids": input_ids.cpu().numpy(), "attention_mask": attention_mask.cpu().numpy()}
        return SequenceClassifierOutput(logits=torch.from_numpy(self.session.run(["logits"], feeds)[0]))


class _LogitsOnly(torch.nn.Module):
    """The exported graph: ids and mask in, logits out, no KV cache (scoring never decodes)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


def export_onnx(folder: str | os.PathLike) -> Path:
    """Write `folder/onnx/model.onnx` (float32, batch and length dynamic) from the folder's weights with
    torch.onnx's TorchScript exporter (it needs the `onnx` package); written under a temporary name, then renamed."""
    from transformers import AutoModelForSequenceClassification

    try:
        import onnx  # noqa: F401  (torch.onnx needs it to serialize)
    except ImportError as e:
        raise ImportError("exporting to ONNX needs the onnx package: pip install onnx") from e
    folder = Path(folder)
    out = folder / ONNX_FILE
    out.parent.mkdir(exist_ok=True)
    logger.warning("exporting %s to ONNX (once; later loads read %s)", folder, out)
    model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32).eval()
    pad = model.config.pad_token_id
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])  # any shape: both axes stay dynamic
    ids = torch.where(mask.bool(), torch.tensor(pad + 1), torch.tensor(pad))
    tmp = str(out.with_name(f".{out.name}.{os.getpid()}.partial"))
    try:
        with torch.no_grad():
            torch.onnx.export(_LogitsOnly(model), (ids, mask), tmp, input_names=["input_ids", "attention_mask"],
                              output_names=["logits"], opset_version=ONNX_OPSET, dynamo=False,
                              dynamic_axes={"input_ids": {0: "batch", 1: "length"},
                                            "attention_mask": {0: "batch", 1: "length"}, "logits": {0: "batch"}})
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out
