"""Typed dataclass configs and their validation: what `r2r train` takes, section by section.

Each section's `validate()` turns an impossible combination into a `ConfigError` before any data, device or
model is touched. Reading them from YAML files and command-line flags is `config_io.py`; `load_config` is
importable from here too.
"""

from __future__ import annotations

import dataclasses
import math
import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from r2r_jax.config_io import ConfigError
from r2r_jax.config_io import load_config as load_config  # the public spelling: r2r_jax.config.load_config


@dataclass
class RopeScalingConfig:
    """Llama-3.1 RoPE frequency scaling (`rope_type: llama3` in Hugging Face configs)."""

    rope_type: str = "llama3"  # llama3 or default (no scaling)
    factor: float = 8.0  # how much the low frequencies are stretched
    low_freq_factor: float = 1.0  # wavelengths above original/low_freq_factor are fully scaled
    high_freq_factor: float = 4.0  # wavelengths below original/high_freq_factor are kept
    original_max_position_embeddings: int = 8192  # the context the base was pre-trained with


DTYPES = ("float32", "bfloat16", "float16", "float64")  # the floating dtypes model.dtype/param_dtype may name


@dataclass
class ModelConfig:
    """Shape and numerics of a LLaMA-3.x decoder. Field names follow Hugging Face's LlamaConfig.

    The class defaults are the `tiny` preset (a model that trains in seconds on a CPU, float32 so tests
    compare tightly); `llama3_1_8b()` and the YAML files in configs/ give the real shape. Overriding
    one field on the command line keeps the others of the file or preset it came from."""

    vocab_size: int = 1024  # token embeddings (must cover the tokenizer)
    hidden_size: int = 64  # model width
    intermediate_size: int = 128  # SwiGLU MLP width
    num_hidden_layers: int = 2  # decoder layers
    num_attention_heads: int = 4  # query heads
    num_key_value_heads: int = 2  # K/V heads (GQA); divides num_attention_heads
    head_dim: int = 16  # per-head width
    rms_norm_eps: float = 1e-5  # RMSNorm epsilon
    rope_theta: float = 500000.0  # RoPE base frequency (500000 for Llama 3)
    rope_scaling: RopeScalingConfig | None = field(default_factory=RopeScalingConfig)  # llama3 RoPE scaling
    max_position_embeddings: int = 131072  # longest supported context
    tie_word_embeddings: bool = False  # LM head shares the embedding matrix
    initializer_range: float = 0.02  # std of random-init weights (bases without an HF folder)
    # numerics and compilation
    dtype: str = "float32"  # compute dtype
    param_dtype: str = "float32"  # frozen base weights
    scan_layers: bool = True  # nn.scan over layers (one compiled layer); false: unrolled
    # what the backward recomputes (docs/scaling.md): full < mlp < mlp_key_value < mlp_attention_out <
    # projections < none in memory, the reverse in recomputation; auto: the least recomputation that fits the
    # accelerator's memory
    remat_policy: Literal["none", "full", "mlp", "mlp_key_value", "mlp_attention_out", "projections", "dots",
                          "dots_no_batch", "auto"] = "none"
    # xla (reference), loop (CPU hosts: one sequence at a time, cache-sized), cudnn (GPU), splash (TPU)
    attention: Literal["xla", "loop", "cudnn", "splash"] = "xla"

    def validate(self) -> None:
        for name in ("dtype", "param_dtype"):
            if getattr(self, name) not in DTYPES:
                raise ConfigError(f"model.{name}={getattr(self, name)!r} is not a dtype; choose from {list(DTYPES)}")
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                     "num_key_value_heads", "head_dim", "max_position_embeddings"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(
                f"model.num_attention_heads={self.num_attention_heads} is not a multiple of "
                f"model.num_key_value_heads={self.num_key_value_heads}"
            )
        if self.rope_scaling is not None and self.rope_scaling.rope_type not in ("llama3", "default"):
            raise ConfigError(f"model.rope_scaling.rope_type={self.rope_scaling.rope_type!r} is not supported")
        # values the model divides by or takes the root of: out of range, the first step's loss is nan (or the
        # run trains a model that is not the one named) instead of a refusal naming the field
        for name, value in (("rms_norm_eps", self.rms_norm_eps), ("rope_theta", self.rope_theta)):
            if not value > 0:
                raise ConfigError(f"model.{name} must be > 0, got {value}")
        if self.rope_scaling is not None and self.rope_scaling.rope_type == "llama3":
            scaling = self.rope_scaling
            for name in ("factor", "low_freq_factor", "original_max_position_embeddings"):
                if not getattr(scaling, name) > 0:
                    raise ConfigError(f"model.rope_scaling.{name} must be > 0, got {getattr(scaling, name)}")
            if not scaling.high_freq_factor > scaling.low_freq_factor:
                raise ConfigError(f"model.rope_scaling.high_freq_factor={scaling.high_freq_factor} must be above "
                                  f"low_freq_factor={scaling.low_freq_factor} (llama3 scaling divides by their "
                                  "difference)")


def tiny_model() -> ModelConfig:
    """The class defaults: CPU-sized, float32."""
    return ModelConfig()


# The decoder layer's linear projections, by the Hugging Face module that holds them: the LoRA targets a
# config may name, and the weights import and export map one to one.
ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_PROJECTIONS = ("gate_proj", "up_proj", "down_proj")
LORA_TARGETS = ATTENTION_PROJECTIONS + MLP_PROJECTIONS


@dataclass
class LoraConfig:
    """LoRA adapters: `x·W + (alpha/rank)·(x·Aᵀ)·Bᵀ`, B zero-initialised."""

    rank: int = 16  # adapter rank r
    alpha: float = 32.0  # scale alpha/r
    dropout: float = 0.0  # dropout on the adapter input during training
    # projections that get adapters
    targets: list[str] = field(
        default_factory=lambda: list(LORA_TARGETS)
    )
    train: Literal["lora_and_head", "head_only"] = "lora_and_head"  # what gets gradients

    def validate(self) -> None:
        known = set(LORA_TARGETS)
        unknown = set(self.targets) - known
        if unknown:
            raise ConfigError(f"lora.targets has unknown modules {sorted(unknown)}; known: {sorted(known)}")
        if self.rank < 1:
            raise ConfigError(f"lora.rank must be >= 1, got {self.rank}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"lora.dropout must be in [0, 1), got {self.dropout}")


@dataclass
class MeshConfig:
    """Device mesh axes (data, fsdp, tensor); -1 means 'all remaining devices' (at most one axis)."""

    data: int = -1  # data-parallel replicas
    fsdp: int = 1  # parameter sharding (ZeRO-3 style); the batch is split over data and fsdp
    tensor: int = 1  # tensor parallelism over heads / MLP / vocab

    def validate(self) -> None:
        """What no device count can make work, found with the config (before any device or model is touched)."""
        sizes = {"data": self.data, "fsdp": self.fsdp, "tensor": self.tensor}
        for name, size in sizes.items():
            if size == 0 or size < -1:
                raise ConfigError(f"mesh.{name} must be a positive size or -1 (all remaining devices), got {size}")
        if list(sizes.values()).count(-1) > 1:
            raise ConfigError(f"mesh: at most one axis may be -1, got {list(sizes.values())}")

    def shape(self, num_devices: int) -> tuple[int, int, int]:
        self.validate()
        sizes = [self.data, self.fsdp, self.tensor]
        known = 1
        for s in sizes:
            if s != -1:
                known *= s
        if num_devices % known:
            raise ConfigError(f"mesh {sizes} does not divide the {num_devices} available devices")
        sizes = [num_devices // known if s == -1 else s for s in sizes]
        if sizes[0] * sizes[1] * sizes[2] != num_devices:
            raise ConfigError(f"mesh {sizes} needs {sizes[0] * sizes[1] * sizes[2]} devices, have {num_devices}")
        return tuple(sizes)  # type: ignore[return-value]


@dataclass
class LossConfig:
    """L = alpha·L_pair + beta·L_list + gamma·L_gen (docs/design.md, "The student")."""

    alpha: float = 0.4  # weight of the pairwise RankNet loss
    beta: float = 0.4  # weight of the listwise loss
    gamma: float = 0.2  # weight of the reason-generation loss
    listwise: Literal["listnet", "listmle"] = "listnet"  # ListNet-KL on teacher gains, or ListMLE
    temperature: float = 1.0  # ListNet teacher softmax temperature
    gen_chunk: int = 128  # target tokens per LM-head chunk, bounds the float32 logits held at once
    # below 1: the LM head runs on this fraction of each data shard's target positions, real tokens gathered
    # first (padding skipped); a step whose real tokens do not fit runs padded; exact either way
    gen_capacity: float = 1.0
    # which teacher reasons the generation loss learns: both, direct, comparison, or none (ranking losses only);
    # the paper's ablation rows
    reasons: Literal["both", "direct", "comparison", "none"] = "both"
    # unset: comparison-reason tokens share one token mean with the direct ones, weighted by gamma; a number:
    # comparison reasons get their own token mean with this weight, and gamma weighs the direct ones alone
    gamma_comparison: float | None = None

    def learns_direct(self) -> bool:
        return self.gamma > 0 and self.reasons in ("both", "direct")

    def learns_comparisons(self) -> bool:
        weight = self.gamma if self.gamma_comparison is None else self.gamma_comparison
        return weight > 0 and self.reasons in ("both", "comparison")

    def validate(self) -> None:
        for name in ("alpha", "beta", "gamma"):
            if getattr(self, name) < 0:
                raise ConfigError(f"loss.{name} must be >= 0, got {getattr(self, name)}")
        if not self.gen_capacity > 0:
            raise ConfigError(f"loss.gen_capacity must be > 0, got {self.gen_capacity}")
        if self.gamma_comparison is not None and self.gamma_comparison < 0:
            raise ConfigError(f"loss.gamma_comparison must be >= 0, got {self.gamma_comparison}")
        if self.temperature <= 0:
            raise ConfigError(f"loss.temperature must be > 0, got {self.temperature}")
        if self.gen_chunk < 1:
            raise ConfigError(f"loss.gen_chunk must be >= 1, got {self.gen_chunk}")


@dataclass
class OptimConfig:
    learning_rate: float = 1e-4  # peak AdamW learning rate
    warmup_steps: int = 10  # linear warm-up
    schedule: Literal["cosine", "linear", "constant"] = "cosine"  # decay after warm-up
    weight_decay: float = 0.0  # AdamW weight decay
    max_grad_norm: float = 1.0  # global-norm gradient clipping
    b1: float = 0.9  # Adam beta1
    b2: float = 0.999  # Adam beta2
    # the score head's step size relative to LoRA's: a head started from the base's yes/no logits has entries
    # ~0.05 that Adam moves by ~learning_rate a step, so at LoRA's rate it barely changes in a short run
    head_lr_multiplier: float = 1.0
    # steps the warm-up + decay schedule spans; 0: the run's `steps`. Longer than `steps`: the run stops part
    # way along a longer schedule, and resuming it with `steps` = this continues it exactly as one run would
    # (a sweep's short runs, the chosen one then finished; MaxText's learning_rate_schedule_steps)
    schedule_steps: int = 0

    def validate(self) -> None:
        if self.learning_rate < 0:
            raise ConfigError(f"optim.learning_rate must be >= 0, got {self.learning_rate}")
        if self.head_lr_multiplier <= 0:
            raise ConfigError(f"optim.head_lr_multiplier must be > 0, got {self.head_lr_multiplier}")
        if self.warmup_steps < 0:
            raise ConfigError(f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")
        for name in ("weight_decay", "max_grad_norm", "schedule_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"optim.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("b1", "b2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"optim.{name} must be in [0, 1), got {getattr(self, name)}")


@dataclass
class DataConfig:
    # teacher records (the project's schema; see r2r import-teacher): JSONL, Parquet or a datasets save_to_disk folder
    train_path: str = ""
    # where tokenized records are cached as memory-mapped Arrow (default: $R2R_CACHE_DIR or ~/.cache/r2r_jax)
    cache_dir: str = ""
    tokenizer: str = ""  # a Hugging Face tokenizer folder
    group_size: int = 8  # G candidates per query
    max_prompt_len: int = 256  # P: scoring prompt tokens (passages are truncated, never the template's end)
    max_target_len: int = 64  # T: reason tokens per sequence, <|eot_id|> included
    # passages of other queries' records added to each group, ranked below every teacher passage and without
    # a reason: teacher windows are BM25's top few, so without them nothing says that an off-topic passage
    # (common deep in a top-100) ranks last
    random_negatives: int = 0
    # passages of the record's own `negatives` field (mined by `r2r mine-negatives`: BM25 hits for the query
    # that are other queries' passages) added to each group, ranked last like the random ones: on-topic
    # passages that are not the answer, the kind that fills a BM25 top-100 below the teacher's window
    hard_negatives: int = 0
    # sequence packing (docs/data.md): each query's scoring sequences go several to a row, `pack_rows` rows of
    # `pack_length` positions instead of G + N + H rows of P + T; a step whose query does not fit runs padded
    pack_length: int = 0  # 0: no packing; else >= max_prompt_len + max_target_len
    pack_rows: int = 0
    comparisons_per_query: int = 1  # comparison-reason sequences per query (0: none)
    # each direct reason target opens with the verdict its text states, "Yes." or "No." (data.verdict's rules;
    # a reason that states none is kept as written): the first token generated after the scoring prompt, at
    # the position the score head reads, then says what the reason will, so served reasons can agree with
    # their scores
    verdict_first: bool = False
    max_comparison_prompt_len: int = 384  # Pc: comparison prompt tokens
    prompt_template: str = "Query: {query}\nPassage: {passage}\nRelevance:"  # the scores depend on it
    # comparison prompt; {passages} lists the compared passages as [1] ..., [2] ...
    comparison_template: str = (
        "Query: {query}\n{passages}\nWhich passage answers the query better, and why?\nComparison:"
    )
    seed: int = 0  # shuffling and group selection
    dev_candidates: str = ""  # rank_llm JSONL or RankGPT hits JSON
    dev_qrels: str = ""  # TREC qrels for the dev candidates
    dev_max_queries: int = 0  # 0: all
    dev_max_candidates: int = 0  # per query; 0: all

    def validate(self) -> None:
        """Counts and templates, checked before anything is read: a wrong one would otherwise surface only once
        the records are tokenized or the model is built. (A template's length against the prompt limit needs
        the tokenizer: `data.templates.check_template_fits`.)"""
        for name in ("group_size", "max_prompt_len", "max_target_len", "max_comparison_prompt_len"):
            if getattr(self, name) < 1:
                raise ConfigError(f"data.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("random_negatives", "hard_negatives", "pack_length", "pack_rows", "comparisons_per_query",
                     "dev_max_queries", "dev_max_candidates"):
            if getattr(self, name) < 0:
                raise ConfigError(f"data.{name} must be >= 0, got {getattr(self, name)}")
        if bool(self.pack_length) != bool(self.pack_rows):
            raise ConfigError(f"data.pack_length and data.pack_rows go together, got {self.pack_length} and "
                              f"{self.pack_rows}")
        if self.pack_length and self.pack_length < self.max_prompt_len + self.max_target_len:
            raise ConfigError(f"data.pack_length={self.pack_length} is shorter than one sequence "
                              f"(max_prompt_len + max_target_len = {self.max_prompt_len + self.max_target_len})")
        for name, fields in (("prompt_template", ("query", "passage")), ("comparison_template", ("query", "passages"))):
            problem = template_problem(getattr(self, name), fields)
            if problem:
                raise ConfigError(f"data.{name}: {problem}")


@dataclass
class TrainConfig:
    """Everything `r2r train` needs."""

    model: ModelConfig = field(default_factory=tiny_model)
    lora: LoraConfig = field(default_factory=LoraConfig)
    mesh: MeshConfig = field(default_factory=MeshConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    base_model: str = ""  # Hugging Face folder; empty: random init (tiny configs)
    output_dir: str = "runs/train"  # the run folder: config.yaml, checkpoints/, metrics.jsonl, report.json
    steps: int = 100  # optimizer steps
    batch_size: int = 8  # queries per step (global)
    micro_batches: int = 1  # gradient accumulation inside the jitted step
    log_every: int = 10  # steps between metrics.jsonl / TensorBoard lines
    eval_every: int = 0  # steps between dev evaluations; 0: only at the end
    save_every: int = 50  # steps between checkpoints
    keep_checkpoints: int = 2  # latest N kept, plus the best by dev nDCG@10
    seed: int = 0  # LoRA / head initialisation and dropout
    # two texts of one token each, [positive, negative] (e.g. [" yes", " no"]): the score head starts as
    # logit(positive) - logit(negative) of the base's LM head, so an instruction-tuned base ranks from step 0
    # (zero-shot) and training refines a relevance judgement instead of learning a random head; empty: random
    score_init_tokens: list[str] = field(default_factory=list)

    def validate(self) -> None:
        non_finite = next(((path, v) for path, v in _floats(self) if not math.isfinite(v)), None)
        if non_finite is not None:  # nan compares false with every bound, so it is refused before any of them
            raise ConfigError(f"{non_finite[0]} must be a finite number, got {non_finite[1]}")
        self.model.validate()
        self.lora.validate()
        self.mesh.validate()
        self.loss.validate()
        self.optim.validate()
        self.data.validate()
        for name in ("steps", "batch_size", "micro_batches", "log_every", "save_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_every < 0:
            raise ConfigError(f"eval_every must be >= 0, got {self.eval_every}")
        if 0 < self.optim.schedule_steps < self.steps:
            raise ConfigError(f"optim.schedule_steps={self.optim.schedule_steps} is shorter than steps={self.steps}: "
                              "the learning rate would reach its end before the run does")
        if self.batch_size % self.micro_batches:
            raise ConfigError(f"batch_size={self.batch_size} is not divisible by micro_batches={self.micro_batches}")
        if self.score_init_tokens and len(self.score_init_tokens) != 2:
            raise ConfigError(f"score_init_tokens takes [positive, negative], got {self.score_init_tokens}")


def _floats(cfg: object, prefix: str = "") -> Iterator[tuple[str, float]]:
    """(dotted field path, value) of every float in a config and its sections."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            yield from _floats(value, f"{prefix}{f.name}.")
        elif isinstance(value, float):
            yield f"{prefix}{f.name}", value


def template_problem(template: str, fields: Sequence[str]) -> str | None:
    """Why `template` cannot render a prompt from exactly `fields` (a missing or unknown {field}, a stray
    brace), or None: found when the config is read, not when the first prompt is rendered."""
    try:
        used = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as e:  # a lone { or }
        return f"{template!r} is not a format string ({e}; write {{{{ and }}}} for literal braces)"
    if used != set(fields):
        missing, unknown = sorted(set(fields) - used), sorted(used - set(fields))
        parts = ([f"lacks {', '.join('{' + n + '}' for n in missing)}"] if missing else []) + \
                ([f"has unknown field(s) {', '.join('{' + n + '}' for n in unknown)}"] if unknown else [])
        return f"{template!r} {' and '.join(parts)}; it takes exactly {', '.join('{' + n + '}' for n in fields)}"
    return None
