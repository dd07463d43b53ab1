"""A student ready to rerank: model, variables, tokenizer and the prompt settings it was trained with.

Two sources: a training checkpoint (LoRA + head on top of the base it names; templates and lengths from the
checkpoint's config) or a merged Hugging Face folder (a `seq-cls` export holding `score.weight`; templates
and lengths from its `r2r_student.json` when the export wrote one). Explicit overrides win over both.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from jax.sharding import Mesh

from r2r_jax.checkpoint import read_meta
from r2r_jax.config import DataConfig, template_problem
from r2r_jax.data.templates import check_template, load_tokenizer, template_fit_problem
from r2r_jax.inference.prefix import make_prefix_steps
from r2r_jax.inference.score_step import make_score_step
from r2r_jax.model.generate import make_generate
from r2r_jax.model.hf_import import import_hf_params, load_hf_model_config, weight_files
from r2r_jax.model.hf_mapping import ConversionError
from r2r_jax.model.llama import LlamaForRanking
from r2r_jax.trained.restore import config_from_meta, load_trained

STUDENT_FILE = "r2r_student.json"  # what an export writes beside the weights: prompt settings, provenance


@dataclass(frozen=True)
class PromptSettings:
    """The exact prompts the student was trained on; a different template means a different model."""

    prompt_template: str = DataConfig.prompt_template
    comparison_template: str = DataConfig.comparison_template
    max_prompt_len: int = DataConfig.max_prompt_len
    max_target_len: int = DataConfig.max_target_len
    max_comparison_prompt_len: int = DataConfig.max_comparison_prompt_len

    @classmethod
    def from_data_config(cls, data: DataConfig) -> PromptSettings:
        return cls(data.prompt_template, data.comparison_template, data.max_prompt_len, data.max_target_len,
                   data.max_comparison_prompt_len)

    def with_overrides(self, **overrides: Any) -> PromptSettings:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class RerankStudent:
    model: LlamaForRanking
    variables: dict
    tokenizer: Any
    prompts: PromptSettings
    has_lm_head: bool  # False for a seq-cls folder: scores only, no explanations
    source: str  # what was loaded, for messages
    mesh: Mesh | None = field(default=None, repr=False)
    _jitted: dict = field(default_factory=dict, repr=False)  # repeated reranks compile once

    def score_fn(self) -> Callable:
        """`scores(variables, ids, mask)`, jitted once per student."""
        if "score" not in self._jitted:
            self._jitted["score"] = make_score_step(self.model, mesh=self.mesh)
        return self._jitted["score"]

    def prefix_steps(self) -> tuple[Callable, Callable]:
        """The shared-prefix scoring steps (`inference.prefix`), jitted once per student."""
        if "prefix" not in self._jitted:
            self._jitted["prefix"] = make_prefix_steps(self.model, self.mesh)
        return self._jitted["prefix"]

    def generate_fn(self, max_new_tokens: int, stop_ids: Sequence[int], pad_id: int) -> Callable:
        """The KV-cache decoder for these settings, jitted once per student. A reason has at least one token
        (`min_new_tokens=1`): a student that would end at once still says something to judge."""
        key = ("generate", max_new_tokens, tuple(sorted(stop_ids)), pad_id)
        if key not in self._jitted:
            self._jitted[key] = make_generate(self.model, max_new_tokens, sorted(stop_ids), pad_id, self.mesh,
                                              min_new_tokens=1)
        return self._jitted[key]


def read_student_json(folder: str | Path) -> dict[str, Any]:
    """The prompt settings an export wrote into `folder`, validated; {} when the file is absent."""
    path = Path(folder) / STUDENT_FILE
    if not path.is_file():
        return {}
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a JSON object")
    kinds = {f.name: {"str": str, "int": int}[f.type] for f in fields(PromptSettings)}
    out = {}
    for key, kind in kinds.items():
        if key in obj:
            if not isinstance(obj[key], kind) or isinstance(obj[key], bool):
                raise ValueError(f"{path}: field {key!r}: expected {kind.__name__}, got {type(obj[key]).__name__}")
            out[key] = obj[key]
    return out


@functools.lru_cache(maxsize=2)
def _tokenizer(path: str):
    """The tokenizer folder, loaded once per path: `check_student_prompts` loads it before the model to check
    the prompt limits, and the student built after reuses it."""
    if not str(path) or not Path(path).exists():
        raise FileNotFoundError(f"tokenizer folder {str(path)!r} not found; pass --tokenizer")
    return load_tokenizer(path)


def student_prompts(checkpoint: str | None, model: str | None, tokenizer: str | None,
                    **prompt_overrides: Any) -> tuple[PromptSettings, str]:
    """(the prompt settings, the tokenizer folder) a student from `checkpoint` or the `model` folder will use,
    read without loading any weights: the run's saved config, or the export's `r2r_student.json`."""
    if checkpoint:
        data = config_from_meta(read_meta(checkpoint)[0]).data
        return PromptSettings.from_data_config(data).with_overrides(**prompt_overrides), tokenizer or data.tokenizer
    assert model is not None
    return PromptSettings(**read_student_json(model)).with_overrides(**prompt_overrides), tokenizer or model


def check_student_prompts(prompts: PromptSettings, tokenizer_path: str, comparisons: bool) -> None:
    """ValueError naming the flag when a template cannot render (a missing or unknown field) or takes the whole
    prompt limit: found with the tokenizer alone, before any model loads (the scoring would find it after)."""
    checks = [("--prompt-template", prompts.prompt_template, "--max-prompt-len", prompts.max_prompt_len, False)]
    if comparisons:
        checks.append(("--comparison-template", prompts.comparison_template, "--max-comparison-prompt-len",
                       prompts.max_comparison_prompt_len, True))
    for flag, template, _, _, comparison in checks:
        problem = template_problem(template, ("query", "passages") if comparison else ("query", "passage"))
        if problem:
            raise ValueError(f"{flag}: {problem}")
    tok = _tokenizer(str(tokenizer_path))
    for flag, template, limit_flag, limit, comparison in checks:
        try:
            check_template(template, ("query", "passages") if comparison else ("query", "passage"), tok)
        except ValueError as e:
            raise ValueError(f"{flag}: {e}") from None
        problem = template_fit_problem(tok, template, limit, comparison)
        if problem:
            raise ValueError(f"{limit_flag} {limit}: {problem}")


def load_from_checkpoint(checkpoint: str | Path, mesh: Mesh, base_model: str | None = None,
                         tokenizer: str | None = None, **prompt_overrides: Any) -> RerankStudent:
    """LoRA + score head restored onto `mesh` over the base the checkpoint names (or `base_model`)."""
    prepared, step = load_trained(checkpoint, mesh, base_model=base_model)
    data = prepared.cfg.data
    prompts = PromptSettings.from_data_config(data).with_overrides(**prompt_overrides)
    tok = _tokenizer(str(tokenizer or data.tokenizer))
    return RerankStudent(prepared.student.model, prepared.student.variables(prepared.state.trainable), tok,
                         prompts, True, f"checkpoint {checkpoint} (step {step})", mesh)


def load_from_hf(folder: str | Path, mesh: Mesh, dtype: str = "bfloat16", attention: str = "xla",
                 tokenizer: str | None = None, scan_layers: bool = True, **prompt_overrides: Any) -> RerankStudent:
    """A merged Hugging Face Llama folder with a `score.weight` head (the seq-cls export).

    Scoring never reads the LM head, and a seq-cls export has none: such a folder is imported without it
    and marked unable to explain. `scan_layers=False` unrolls the layers (faster on CPU hosts)."""
    files = weight_files(folder)
    if "score.weight" not in files:
        raise ConversionError(f"{folder}: no score.weight: rerank needs a seq-cls export (or --checkpoint)")
    cfg = load_hf_model_config(folder, dtype=dtype, param_dtype=dtype, scan_layers=scan_layers,
                               remat_policy="none", attention=attention)
    has_lm_head = cfg.tie_word_embeddings or "lm_head.weight" in files
    params = import_hf_params(folder, cfg, mesh=mesh, with_score=True, with_lm_head=has_lm_head)
    prompts = PromptSettings(**read_student_json(folder)).with_overrides(**prompt_overrides)
    tok = _tokenizer(str(tokenizer or folder))
    return RerankStudent(LlamaForRanking(cfg), {"params": params}, tok, prompts, has_lm_head, f"model {folder}", mesh)
