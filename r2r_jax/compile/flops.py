"""Analytic FLOPs of the R2R train step and the scoring step: what the step really computes, term by term.

Per token and layer the frozen projections cost 2·N_layer forward (N_layer = q, k, v, o, gate, up, down
weights). LoRA training needs no weight gradient for the frozen base, only the activation gradient
(another 2·N_layer), so the base costs 4·N_layer per token, plus what the remat policy recomputes in the
backward pass: under "full" about 2·0.73·N_layer, because JAX recomputes only what the backward needs and
nothing needs down_proj's output (`_recomputed`). Adapters cost 2·r·(in+out) forward and twice
that backward (input and both adapter gradients). Attention over a length-L sequence costs 4·L²·H·D forward
and 8·L²·H·D backward when done densely by XLA (the CPU kernel `loop` from two blocks of 256 positions on
goes by causal query blocks: `blocked_share` of that); splash attention visits only the causal blocks and its fused
backward kernel recomputes the logits (10 tile products instead of 8). The LM head (E×V) runs on the T
target positions of every sequence: the logits, and (when the layers learn) the activation gradient, which
the fused loss (`train/token_ce.py`) takes in the same pass over each chunk instead of recomputing it.
With `loss.gen_capacity` below 1 the head runs on that fraction of the target positions (the compacted
path, `train/target_compaction.py`); model FLOPs still count every target position of the batch shape.

"model" FLOPs (for MFU) leave out every recomputation: forward + the backward the maths needs.
All figures are global (the whole batch, every chip), per optimizer step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from r2r_jax.config import ATTENTION_PROJECTIONS, MLP_PROJECTIONS, LoraConfig, ModelConfig, TrainConfig
from r2r_jax.data.features import BatchShapes
from r2r_jax.model.attention import blocked_share, causal_share

# A frozen linear map's backward needs its input, never its output. down_proj's output only joins the residual
# stream that leaves the layer (the next layer restarts from its saved input), so "full" remat never
# recomputes its frozen product, nor its LoRA B product. (o_proj's output is needed: the MLP's norm reads it.)
RESIDUAL_OUTPUTS = ("down_proj",)


@dataclass(frozen=True)
class Sequences:
    """`count` sequences of `length` tokens whose last `targets` positions are predicted by the LM head."""

    count: int
    length: int
    targets: int = 0


@dataclass
class FlopCount:
    """Executed and model FLOPs by term; `kernel` marks work done inside Pallas kernels (XLA cannot see it)."""

    executed: dict[str, float] = field(default_factory=dict)
    model: dict[str, float] = field(default_factory=dict)
    kernel: set[str] = field(default_factory=set)

    def add(self, name: str, executed: float, model: float, kernel: bool = False) -> None:
        self.executed[name] = self.executed.get(name, 0.0) + executed
        self.model[name] = self.model.get(name, 0.0) + model
        if kernel:
            self.kernel.add(name)

    @property
    def total(self) -> float:
        return sum(self.executed.values())

    @property
    def model_total(self) -> float:
        return sum(self.model.values())

    @property
    def in_kernels(self) -> float:
        return sum(v for k, v in self.executed.items() if k in self.kernel)

    @property
    def visible_to_xla(self) -> float:
        """What XLA's cost analysis can count: everything outside Pallas kernels."""
        return self.total - self.in_kernels


def projections(cfg: ModelConfig) -> dict[str, tuple[int, int]]:
    """(in, out) features of each projection of a decoder layer."""
    e, i = cfg.hidden_size, cfg.intermediate_size
    q, kv = cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim
    return {"q_proj": (e, q), "k_proj": (e, kv), "v_proj": (e, kv), "o_proj": (q, e),
            "gate_proj": (e, i), "up_proj": (e, i), "down_proj": (i, e)}


def layer_weights(cfg: ModelConfig, skip: tuple[str, ...] = ()) -> int:
    """Frozen projection weights of one decoder layer (leaving out `skip`)."""
    return sum(a * b for name, (a, b) in projections(cfg).items() if name not in skip)


def _adapted(lora: LoraConfig | None) -> list[str]:
    return [] if lora is None or lora.train != "lora_and_head" else list(lora.targets)


def lora_forward_per_token(cfg: ModelConfig, lora: LoraConfig | None, skip_up: tuple[str, ...] = (),
                           skip: tuple[str, ...] = ()) -> int:
    """Forward FLOPs of one layer's adapters for one token: 2·r·in (A) + 2·r·out (B, unless in `skip_up`),
    leaving out the adapters of `skip`."""
    shapes, out = projections(cfg), 0
    for name in _adapted(lora):
        if name in skip:
            continue
        a, b = shapes[name]
        out += 2 * lora.rank * (a + (0 if name in skip_up else b))
    return out


def _attention(cfg: ModelConfig, seqs: Sequences) -> tuple[float, bool]:
    """(forward FLOPs of the attention products over all layers, whether a Pallas kernel does them)."""
    dense = 4.0 * seqs.count * seqs.length**2 * cfg.num_attention_heads * cfg.head_dim * cfg.num_hidden_layers
    if cfg.attention == "loop":  # long sequences go by causal query blocks (model/attention.py)
        return dense * blocked_share(seqs.length), False
    if cfg.attention != "splash":
        return dense, False
    from r2r_jax.model.splash import block_size  # imports Pallas' TPU kernels: only for splash configs

    block = block_size(seqs.length)
    if block is None:  # splash falls back to the XLA reference for this length
        return dense, False
    return dense * causal_share(seqs.length, block), True


def _forward(cfg: ModelConfig, lora: LoraConfig | None, seqs: Sequences) -> dict[str, float]:
    layers_tokens = cfg.num_hidden_layers * seqs.count * seqs.length
    return {
        "base": 2.0 * layer_weights(cfg) * layers_tokens,
        "lora": float(lora_forward_per_token(cfg, lora) * layers_tokens),
        "lm_head": 2.0 * cfg.hidden_size * cfg.vocab_size * seqs.count * seqs.targets,
    }


# what each named remat policy recomputes in the backward pass (model/llama.py names what it keeps)
_RECOMPUTED_PROJECTIONS = {
    "full": tuple(p for p in (*ATTENTION_PROJECTIONS, *MLP_PROJECTIONS) if p not in RESIDUAL_OUTPUTS),
    "mlp": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "mlp_key_value": ("q_proj", "o_proj"),
    "mlp_attention_out": ("q_proj", "k_proj", "v_proj"),
    "projections": (),
}


def _recomputed(cfg: ModelConfig, lora: LoraConfig | None, seqs: Sequences, attn: float, kernel: bool) -> dict:
    """Forward FLOPs the remat policy recomputes in the backward pass: only what the backward needs.

    full: every product but down_proj's, attention included. mlp keeps gate/up: the attention block reruns
    (q, k, v, o and attention); mlp_key_value also keeps k and v: q, o and the attention rerun.
    mlp_attention_out keeps gate/up, the MLP input and attention output: q, k, v and the attention rerun.
    projections also keeps q, k, v: the attention alone (XLA's count shows its whole forward rerun, P·V
    included, under both). dots / dots_no_batch keep the projections' outputs; dots_no_batch recomputes the
    (batched) attention logits and, when o_proj is adapted, P·V (its adapter's A gradient needs the
    attention output). A Pallas kernel is no dot and reruns its whole forward under every policy."""
    policy = cfg.remat_policy
    layers_tokens = cfg.num_hidden_layers * seqs.count * seqs.length
    # the CPU loop checkpoints each sequence's attention block: its forward reruns once more under any policy
    out = {"base": 0.0, "lora": 0.0, "attention": attn if cfg.attention == "loop" else 0.0}
    if policy == "none":
        return out
    if policy in _RECOMPUTED_PROJECTIONS:
        # a kept projection's adapter still reruns its A product (B's gradient needs it), not its B product
        kept = tuple(p for p in projections(cfg) if p not in _RECOMPUTED_PROJECTIONS[policy])
        out["base"] = 2.0 * layer_weights(cfg, kept) * layers_tokens
        out["lora"] = float(lora_forward_per_token(cfg, lora, skip_up=kept) * layers_tokens)
    if kernel or policy in _RECOMPUTED_PROJECTIONS:
        out["attention"] += attn
    elif policy == "dots_no_batch":
        out["attention"] += attn * (1.0 if "o_proj" in _adapted(lora) else 0.5)
    return out


def train_step_flops(cfg: TrainConfig) -> FlopCount:
    """FLOPs of one optimizer step of `make_train_step` with the config's batch and sequence shapes."""
    m, d = cfg.model, cfg.data
    learns_layers = bool(_adapted(cfg.lora))
    learns_text = cfg.loss.gamma > 0
    seqs = [Sequences(cfg.batch_size * d.group_size, d.max_prompt_len + d.max_target_len, d.max_target_len)]
    rows = BatchShapes.from_config(d).rows
    if rows > d.group_size:  # the negatives run their prompts only (`reason_rows` of the step)
        seqs.append(Sequences(cfg.batch_size * (rows - d.group_size), d.max_prompt_len))
    if learns_text and d.comparisons_per_query > 0:
        seqs.append(Sequences(cfg.batch_size * d.comparisons_per_query,
                              d.max_comparison_prompt_len + d.max_target_len, d.max_target_len))
    bwd = 1.0 if learns_layers else 0.0  # activation gradients reach the adapters; the base has no weight gradient
    count = FlopCount()
    for s in seqs:
        fwd = _forward(m, cfg.lora, s)
        attn, kernel = _attention(m, s)
        redo = _recomputed(m, cfg.lora, s, attn, kernel) if learns_layers else {"base": 0, "lora": 0, "attention": 0}
        count.add("base", fwd["base"] * (1 + bwd) + redo["base"], fwd["base"] * (1 + bwd))
        count.add("lora", fwd["lora"] * 3 + redo["lora"], fwd["lora"] * 3)  # backward: input, A and B gradients
        # backward attention: 8 products per 4 of the forward in XLA; the fused splash kernel recomputes the
        # logits as well (10 tile products)
        count.add("attention", attn * (1 + (2.5 if kernel else 2.0) * bwd) + redo["attention"],
                  attn * (1 + 2 * bwd), kernel)
        if learns_text:  # the logits; with learning layers the activation gradient in the same chunk pass
            head = fwd["lm_head"] * (1 + bwd)
            count.add("lm_head", head * min(cfg.loss.gen_capacity, 1.0), head)
    n_groups = cfg.batch_size * rows
    count.add("score_head", 2.0 * m.hidden_size * n_groups * 3, 2.0 * m.hidden_size * n_groups * 3)
    return count


def score_step_flops(cfg: ModelConfig, lora: LoraConfig | None, sequences: int, length: int,
                     last_only: bool = True) -> FlopCount:
    """FLOPs of the prompt-only scoring forward (`make_score_step`) over `sequences` prompts.

    With `last_only` (what scoring runs, scanned or unrolled) the final layer runs its queries, attention
    output and MLP at the last position only."""
    s = Sequences(sequences, length)
    fwd = _forward(cfg, lora, s)
    attn, kernel = _attention(cfg, s)
    if last_only:  # the final layer: keys and values everywhere, the rest at one position
        n, kv = cfg.num_hidden_layers, ("k_proj", "v_proj")
        skipped = sequences * (length - 1)
        fwd["base"] -= 2.0 * layer_weights(cfg, kv) * skipped
        fwd["lora"] -= float(lora_forward_per_token(cfg, lora, skip=kv) * skipped)
        attn *= (n - 1) / n
        last_row = 4.0 * sequences * length * cfg.num_attention_heads * cfg.head_dim
    count = FlopCount()
    count.add("base", fwd["base"], fwd["base"])
    count.add("lora", fwd["lora"], fwd["lora"])
    count.add("attention", attn, attn, kernel)
    if last_only:
        count.add("attention_last_position", last_row, last_row)
    count.add("score_head", 2.0 * cfg.hidden_size * sequences, 2.0 * cfg.hidden_size * sequences)
    return count


def logits_bytes(sequences: int, positions: int, vocab: int) -> int:
    """Bytes of float32 logits for `positions` target positions of `sequences` sequences."""
    return 4 * sequences * positions * vocab
