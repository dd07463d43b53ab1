"""Flax LLaMA 3.x with Hugging Face's names and layout, a LoRA-aware projection set and a score head.

Parameter tree (kernels are HF weights transposed to (in, out)):
    model/embed_tokens/embedding (vocab, embed)
    model/layers/{self_attn/{q,k,v,o}_proj, mlp/{gate,up,down}_proj}/kernel, */weight
        -- stacked on a leading `layers` axis when `scan_layers`, else model/layers_{i}/...
    model/norm/weight, lm_head/kernel (embed, vocab; absent when tied), score/kernel (embed, 1)
The relevance score is `score(final_norm(h))` at the last prompt token, HF's seq-cls convention.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.ad_checkpoint import checkpoint_name

from r2r_jax.config import LoraConfig, ModelConfig
from r2r_jax.config_io import ConfigError
from r2r_jax.model.attention import dot_product_attention
from r2r_jax.model.kv_cache import KVCache
from r2r_jax.model.lora import LoraDense
from r2r_jax.parallel.rules import constrain

# Activations a policy may keep for the backward pass, named with `checkpoint_name` inside each layer:
# q/k after RoPE and v ("query", "key", "value"), the attention output (o_proj's input, which its adapter's
# gradient needs), the MLP's normed input, and gate/up (the largest: 2 x intermediate per token).
ATTENTION_QKV, ATTENTION_OUT, MLP_IN, MLP_GATE_UP = ("query", "key", "value"), ("attention_out",), ("mlp_in",), (
    "mlp_gate", "mlp_up")
_save = jax.checkpoint_policies.save_only_these_names
# Least memory first; `none` keeps everything. The named policies keep only the frozen projections' sums
# (not LoRA's own products, which dots_no_batch keeps too), so they cost about half of dots_no_batch's memory.
REMAT_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,  # only each layer's input (the scan's carry)
    "mlp": _save(*MLP_GATE_UP),  # recomputes the attention block (q, k, v, o and attention)
    # with grouped-query attention k and v are the block's smallest outputs (8B: a quarter of q's size each)
    "mlp_key_value": _save(*MLP_GATE_UP, *ATTENTION_QKV[1:]),  # recomputes q, o and attention
    "mlp_attention_out": _save(*MLP_GATE_UP, *MLP_IN, *ATTENTION_OUT),  # recomputes q, k, v and attention
    "projections": _save(*MLP_GATE_UP, *MLP_IN, *ATTENTION_OUT, *ATTENTION_QKV),  # recomputes attention only
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def rope_inv_freq(cfg: ModelConfig) -> np.ndarray:
    """Inverse frequencies in float32 exactly as transformers computes them, llama3 scaling included."""
    dim = cfg.head_dim
    inv_freq = 1.0 / (np.float32(cfg.rope_theta) ** (np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / dim))
    inv_freq = inv_freq.astype(np.float32)
    rs = cfg.rope_scaling
    if rs is None or rs.rope_type == "default":
        return inv_freq
    low_wavelen = rs.original_max_position_embeddings / rs.low_freq_factor
    high_wavelen = rs.original_max_position_embeddings / rs.high_freq_factor
    wavelen = (2 * np.pi / inv_freq).astype(np.float32)
    scaled = np.where(wavelen > low_wavelen, inv_freq / rs.factor, inv_freq).astype(np.float32)
    smooth = (rs.original_max_position_embeddings / wavelen - rs.low_freq_factor) / (
        rs.high_freq_factor - rs.low_freq_factor
    )
    smoothed = (1 - smooth) * scaled / rs.factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return np.where(medium, smoothed, scaled).astype(np.float32)


def apply_rope(x: jax.Array, positions: jax.Array, inv_freq: np.ndarray) -> jax.Array:
    """Rotate-half RoPE (HF layout). x: (B, T, H, D), positions: (B, T)."""
    freqs = positions[..., None].astype(jnp.float32) * jnp.asarray(inv_freq)[None, None, :]
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    cos = jnp.cos(emb).astype(x.dtype)[:, :, None, :]
    sin = jnp.sin(emb).astype(x.dtype)[:, :, None, :]
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


class RMSNorm(nn.Module):
    eps: float
    dtype: Any
    param_dtype: Any

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        weight = self.param("weight", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
                            (x.shape[-1],), self.param_dtype)
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return weight.astype(self.dtype) * normed.astype(self.dtype)


def _dense(cfg: ModelConfig, lora: LoraConfig | None, name: str, features: int, axes: tuple[str, str]):
    use = lora is not None and lora.train == "lora_and_head" and name in lora.targets
    return LoraDense(
        features, axes, dtype=jnp.dtype(cfg.dtype), param_dtype=jnp.dtype(cfg.param_dtype), name=name,
        lora_rank=lora.rank if use else 0, lora_alpha=lora.alpha if use else 0.0,
        lora_dropout=lora.dropout if use else 0.0, init_std=cfg.initializer_range,
    )


class Attention(nn.Module):
    cfg: ModelConfig
    lora: LoraConfig | None

    @nn.compact
    def __call__(self, x, positions, kv_valid, segment_ids=None, cache: KVCache | None = None, cache_index=None,
                 last_only: bool = False, layer_index: int | jax.Array = 0):
        """`last_only`: queries (and so the output) for the last position only; keys and values for all.

        With a `cache`, this layer (`layer_index`) writes its keys and values into it at `cache_index` and
        attends to everything the cache holds for it (model/kv_cache.py)."""
        cfg, b, t = self.cfg, x.shape[0], x.shape[1]
        h, k, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        tq = 1 if last_only else t
        x_q, q_positions = (x[:, -1:], positions[:, -1:]) if last_only else (x, positions)
        q = _dense(cfg, self.lora, "q_proj", h * d, ("embed", "heads"))(x_q).reshape(b, tq, h, d)
        kk = _dense(cfg, self.lora, "k_proj", k * d, ("embed", "kv_heads"))(x).reshape(b, t, k, d)
        v = _dense(cfg, self.lora, "v_proj", k * d, ("embed", "kv_heads"))(x).reshape(b, t, k, d)
        inv_freq = rope_inv_freq(cfg)
        q = checkpoint_name(apply_rope(q, q_positions, inv_freq), "query")
        kk = checkpoint_name(apply_rope(kk, positions, inv_freq), "key")
        v = checkpoint_name(v, "value")
        q = constrain(q, ("batch", "seq", "act_heads", "head_dim"))
        q_offset = t - 1 if last_only else 0
        if cache is not None:
            cache, kk, v = cache.write(layer_index, cache_index, kk, v)
            q_offset = cache_index + q_offset
        # one query row: the reference's (B, H, 1, S) scores are tiny on every backend
        impl = "xla" if last_only else cfg.attention
        out = dot_product_attention(q, kk, v, kv_valid, q_offset, impl=impl, segment_ids=segment_ids)
        out = checkpoint_name(out.reshape(b, tq, h * d), "attention_out")
        return _dense(cfg, self.lora, "o_proj", cfg.hidden_size, ("heads", "embed"))(out), cache


class MLP(nn.Module):
    cfg: ModelConfig
    lora: LoraConfig | None

    @nn.compact
    def __call__(self, x):
        cfg = self.cfg
        gate = checkpoint_name(_dense(cfg, self.lora, "gate_proj", cfg.intermediate_size, ("embed", "mlp"))(x),
                               "mlp_gate")
        up = checkpoint_name(_dense(cfg, self.lora, "up_proj", cfg.intermediate_size, ("embed", "mlp"))(x), "mlp_up")
        hidden = constrain(nn.silu(gate) * up, ("batch", "seq", "act_mlp"))
        return _dense(cfg, self.lora, "down_proj", cfg.hidden_size, ("mlp", "embed"))(hidden)


class DecoderLayer(nn.Module):
    cfg: ModelConfig
    lora: LoraConfig | None

    @nn.compact
    def __call__(self, x, cache, positions, kv_valid, segment_ids, cache_index, last_only: bool = False,
                 layer_index: int | jax.Array = 0):
        cfg = self.cfg
        dt, pdt = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
        normed = RMSNorm(cfg.rms_norm_eps, dt, pdt, name="input_layernorm")(x)
        attn, cache = Attention(cfg, self.lora, name="self_attn")(normed, positions, kv_valid, segment_ids, cache,
                                                                  cache_index, last_only, layer_index)
        x = (x[:, -1:] if last_only else x) + attn
        normed = checkpoint_name(RMSNorm(cfg.rms_norm_eps, dt, pdt, name="post_attention_layernorm")(x), "mlp_in")
        x = x + MLP(cfg, self.lora, name="mlp")(normed)
        return constrain(x, ("batch", "seq", "act_embed")), cache


class LlamaModel(nn.Module):
    cfg: ModelConfig
    lora: LoraConfig | None = None

    def setup(self):
        cfg = self.cfg
        dt, pdt = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
        init = nn.initializers.normal(cfg.initializer_range)
        self.embed_tokens = nn.Embed(
            cfg.vocab_size, cfg.hidden_size, dtype=dt, param_dtype=pdt,
            embedding_init=nn.with_logical_partitioning(init, ("vocab", "embed")))
        layer_cls = DecoderLayer
        if cfg.remat_policy == "auto":
            raise ConfigError("model.remat_policy=auto is resolved before the model is built (r2r train, r2r "
                              "compile); build the model with the policy it chose")
        if cfg.remat_policy != "none":
            static = () if cfg.scan_layers else (7, 8)  # `last_only`, `layer_index` (self is 0): Python values
            layer_cls = nn.remat(layer_cls, policy=REMAT_POLICIES[cfg.remat_policy], prevent_cse=not cfg.scan_layers,
                                 static_argnums=static)
        if cfg.scan_layers:
            self.layers = nn.scan(
                layer_cls,
                variable_axes={"params": 0, "lora": 0},
                split_rngs={"params": True, "dropout": True},
                in_axes=(0, nn.broadcast, nn.broadcast, nn.broadcast, nn.broadcast),
                length=cfg.num_hidden_layers,
                metadata_params={nn.PARTITION_NAME: "layers"},
            )(cfg, self.lora)
        else:
            self.layer_list = [layer_cls(cfg, self.lora, name=f"layers_{i}") for i in range(cfg.num_hidden_layers)]
        self.norm = RMSNorm(cfg.rms_norm_eps, dt, pdt)

    def __call__(self, input_ids, positions, kv_valid, segment_ids=None, cache: KVCache | None = None,
                 cache_index=None, last_only: bool = False):
        """Final-norm hidden states (B, T, E), or (B, 1, E) for the last position with `last_only`, and the
        updated cache.

        `last_only`: the final layer computes its keys and values for every position (into the cache, if
        one is given) but its queries, attention output and MLP for the last one only, the position a
        score is read at; that saves about 1/L of a scoring forward (scanned layers: `_scan_inference`)."""
        x = constrain(self.embed_tokens(input_ids), ("batch", "seq", "act_embed"))
        if self.cfg.scan_layers and (last_only or cache is not None):
            x, cache = self._scan_inference(x, cache, positions, kv_valid, segment_ids, cache_index, last_only)
        elif self.cfg.scan_layers:
            x, cache = self.layers(x, cache, positions, kv_valid, segment_ids, cache_index)
        else:
            last = len(self.layer_list) - 1
            for i, layer in enumerate(self.layer_list):
                x, cache = layer(x, cache, positions, kv_valid, segment_ids, cache_index, last_only and i == last, i)
        return self.norm(x), cache

    def _scan_inference(self, x, cache, positions, kv_valid, segment_ids, cache_index, last_only):
        """Scanned layers at inference (a KV cache, or `last_only`): a plain scan over the stacked weights that
        carries the whole stacked cache, each layer updating its own slot in place (`nn.scan` would take the
        cache apart as its inputs and stack it again as its outputs: a copy of every layer's cache per decode
        step). With `last_only` the scan stops one layer short and layer L-1 runs alone on its weight slice (one
        scan body cannot change the sequence length). No dropout or remat; the parameter tree is the scan's
        own, so checkpoints and imports are unchanged."""
        stacked = nn.meta.unbox(self.layers.variables)
        layer = DecoderLayer(self.cfg, self.lora, parent=None)  # applied functionally on weight slices
        n = self.cfg.num_hidden_layers
        scanned = n - 1 if last_only else n

        def body(carry, per_layer):
            h, layer_cache = carry
            layer_vars, i = per_layer
            return layer.apply(layer_vars, h, layer_cache, positions, kv_valid, segment_ids, cache_index, False,
                               i), None

        weights = jax.tree.map(lambda a: a[:scanned], stacked)
        (x, cache), _ = jax.lax.scan(body, (x, cache), (weights, jnp.arange(scanned)))
        if last_only:
            x, cache = layer.apply(jax.tree.map(lambda a: a[-1], stacked), x, cache, positions, kv_valid,
                                   segment_ids, cache_index, True, n - 1)
        return x, cache

    def attend(self, hidden):
        """Tied LM head: logits against the embedding matrix."""
        return self.embed_tokens.attend(hidden)


class LlamaForRanking(nn.Module):
    """Decoder + LM head + score head. `__call__` returns final-norm hidden states (and the updated
    KV cache); `lm_logits` and `scores` turn hidden states into next-token logits and relevance scores.

    The cache is a `StackedKV` (any layers) or a `PerLayerKV` (unrolled layers), model/kv_cache.py: its
    `kv_valid` says which positions attention may read, in place of `attention_mask`."""

    cfg: ModelConfig
    lora: LoraConfig | None = None

    def setup(self):
        cfg = self.cfg
        init = nn.initializers.normal(cfg.initializer_range)
        self.model = LlamaModel(cfg, self.lora)
        if not cfg.tie_word_embeddings:
            self.lm_head = nn.DenseGeneral(
                cfg.vocab_size, use_bias=False, dtype=jnp.dtype(cfg.dtype), param_dtype=jnp.dtype(cfg.param_dtype),
                kernel_init=nn.with_logical_partitioning(init, ("embed", "vocab")),
            )
        # the score head is trained: float32 master weights
        self.score = nn.DenseGeneral(
            1, use_bias=False, dtype=jnp.float32, param_dtype=jnp.float32,
            kernel_init=nn.with_logical_partitioning(init, ("embed", "score")),
        )

    def __call__(self, input_ids, attention_mask, positions=None, cache: KVCache | None = None, cache_index=None,
                 last_only: bool = False, segment_ids=None):
        """`segment_ids` (B, T), for packed rows (several sequences per row; 0 = padding): attention stays
        within a sequence, and `positions` must restart at each sequence's start."""
        if positions is None:
            positions = default_positions(attention_mask)
        kv_valid = attention_mask.astype(bool) if cache is None else cache.kv_valid
        return self.model(input_ids, positions, kv_valid, segment_ids, cache, cache_index, last_only)

    def lm_logits(self, hidden):
        if self.cfg.tie_word_embeddings:
            return self.model.attend(hidden)
        return self.lm_head(hidden)

    def scores(self, hidden):
        return self.score(hidden.astype(jnp.float32))[..., 0]

    def init_all(self, input_ids, attention_mask):
        hidden, _ = self(input_ids, attention_mask)
        return self.lm_logits(hidden), self.scores(hidden)


def abstract_variables(model: LlamaForRanking) -> dict:
    """Every variable of `model` (LM head and score head included) as boxed ShapeDtypeStructs carrying their
    logical axis names: what sharded initialisation and weight import derive shardings from."""
    ids = jnp.zeros((1, 1), jnp.int32)
    return jax.eval_shape(lambda: model.init(jax.random.key(0), ids, ids, method=LlamaForRanking.init_all))


def default_positions(attention_mask: jax.Array) -> jax.Array:
    """Positions count real tokens only, so left-padded rows start at 0 (HF generate's convention)."""
    return jnp.maximum(jnp.cumsum(attention_mask.astype(jnp.int32), axis=-1) - 1, 0)


def lm_head_param(params: dict, cfg: ModelConfig) -> tuple[jax.Array, bool]:
    """The LM head's weight as stored, and whether it is the (vocab, embed) embedding table (tied) rather than
    lm_head's own (embed, vocab) kernel: the one place that knows where the head lives."""
    if cfg.tie_word_embeddings:
        return params["model"]["embed_tokens"]["embedding"], True
    return params["lm_head"]["kernel"], False


def lm_head_weight(params: dict, cfg: ModelConfig) -> jax.Array:
    """The (embed, vocab) output projection: lm_head's kernel, or the transposed embedding when tied."""
    head, is_embedding = lm_head_param(params, cfg)
    return head.T if is_embedding else head
