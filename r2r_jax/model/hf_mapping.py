"""One explicit, reversible table between Hugging Face tensor names and our parameter paths.

Each entry maps a flax path to an HF name template; per-layer tensors carry `{i}` and are stacked on
a leading axis in the scanned layout. Kernels are stored (in, out), HF Linear weights (out, in): the
only transform is a transpose. Import and export both read this table.
"""

from __future__ import annotations

from dataclasses import dataclass

from r2r_jax.config import ATTENTION_PROJECTIONS, MLP_PROJECTIONS, ModelConfig, RopeScalingConfig


class ConversionError(ValueError):
    """A checkpoint folder or config that cannot be converted; the message names what is wrong."""


@dataclass(frozen=True)
class TensorMap:
    path: tuple[str, ...]  # flax path (scanned layout; per-layer tensors stacked on axis 0)
    hf_name: str  # may contain {i}
    transpose: bool  # HF Linear weight (out, in) <-> kernel (in, out)

    @property
    def per_layer(self) -> bool:
        return "{i}" in self.hf_name


LAYER_LINEARS = {
    "self_attn": ATTENTION_PROJECTIONS,
    "mlp": MLP_PROJECTIONS,
}


def tensor_maps(cfg: ModelConfig, with_lm_head: bool = True, with_score: bool = False) -> list[TensorMap]:
    maps = [TensorMap(("model", "embed_tokens", "embedding"), "model.embed_tokens.weight", False)]
    for parent, names in LAYER_LINEARS.items():
        for name in names:
            maps.append(TensorMap(("model", "layers", parent, name, "kernel"),
                                  f"model.layers.{{i}}.{parent}.{name}.weight", True))
    for norm in ("input_layernorm", "post_attention_layernorm"):
        maps.append(TensorMap(("model", "layers", norm, "weight"), f"model.layers.{{i}}.{norm}.weight", False))
    maps.append(TensorMap(("model", "norm", "weight"), "model.norm.weight", False))
    if with_lm_head and not cfg.tie_word_embeddings:
        maps.append(TensorMap(("lm_head", "kernel"), "lm_head.weight", True))
    if with_score:
        maps.append(TensorMap(("score", "kernel"), "score.weight", True))
    return maps


_UNSUPPORTED_IF_TRUE = ("attention_bias", "mlp_bias")


def model_config_from_hf(hf: dict, source: str = "config.json", **overrides) -> ModelConfig:
    """Read an HF LlamaConfig dict; refuse fields we do not implement rather than silently ignore them."""
    if hf.get("model_type") not in (None, "llama"):
        raise ConversionError(f"{source}: model_type {hf.get('model_type')!r} is not 'llama'")
    for key in _UNSUPPORTED_IF_TRUE:
        if hf.get(key):
            raise ConversionError(f"{source}: {key}=true is not supported")
    act = hf.get("hidden_act", "silu")
    if act != "silu":
        raise ConversionError(f"{source}: hidden_act={act!r} is not supported (only 'silu')")
    scaling = None
    rs = hf.get("rope_scaling") or None
    rope_params = hf.get("rope_parameters") or None  # transformers 5 spelling
    if rs is None and rope_params and rope_params.get("rope_type", "default") != "default":
        rs = rope_params
    if rs is not None:
        rope_type = rs.get("rope_type", rs.get("type"))
        if rope_type == "llama3":
            scaling = RopeScalingConfig(
                rope_type="llama3", factor=float(rs["factor"]), low_freq_factor=float(rs["low_freq_factor"]),
                high_freq_factor=float(rs["high_freq_factor"]),
                original_max_position_embeddings=int(rs["original_max_position_embeddings"]),
            )
        elif rope_type != "default":
            raise ConversionError(f"{source}: rope_scaling.rope_type={rope_type!r} is not supported "
                                  "(supported: llama3, default)")
    theta = hf.get("rope_theta", (rope_params or {}).get("rope_theta", 10000.0))
    try:
        heads = int(hf["num_attention_heads"])
        cfg = ModelConfig(
            vocab_size=int(hf["vocab_size"]), hidden_size=int(hf["hidden_size"]),
            intermediate_size=int(hf["intermediate_size"]), num_hidden_layers=int(hf["num_hidden_layers"]),
            num_attention_heads=heads, num_key_value_heads=int(hf.get("num_key_value_heads", heads)),
            head_dim=int(hf.get("head_dim") or hf["hidden_size"] // heads),
            rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)), rope_theta=float(theta), rope_scaling=scaling,
            max_position_embeddings=int(hf.get("max_position_embeddings", 8192)),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
        )
    except KeyError as e:
        raise ConversionError(f"{source}: missing field {e.args[0]!r}") from None
    for key, value in overrides.items():
        setattr(cfg, key, value)
    cfg.validate()
    return cfg


def hf_config_from_model(cfg: ModelConfig, torch_dtype: str = "bfloat16", **extra) -> dict:
    """The config.json written by exports: a LlamaConfig that transformers and vLLM load as is."""
    out = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_scaling": None,
        "max_position_embeddings": cfg.max_position_embeddings,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "attention_bias": False,
        "mlp_bias": False,
        "torch_dtype": torch_dtype,
    }
    if cfg.rope_scaling is not None and cfg.rope_scaling.rope_type == "llama3":
        rs = cfg.rope_scaling
        out["rope_scaling"] = {
            "rope_type": "llama3", "factor": rs.factor, "low_freq_factor": rs.low_freq_factor,
            "high_freq_factor": rs.high_freq_factor,
            "original_max_position_embeddings": rs.original_max_position_embeddings,
        }
    out.update(extra)
    return out
