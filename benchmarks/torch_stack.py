"""The PyTorch side: the same student in transformers + peft, trained with the same R2R losses.

A reasonable, eager PyTorch implementation of the step the JAX student runs: LlamaForCausalLM (SDPA
attention, float32) with peft LoRA adapters on the same modules, a separate `score` Linear (hidden -> 1, no
bias) on the final-norm hidden state at the last prompt token, the LM head applied to the target positions
only, RankNet + ListNet-KL + token cross-entropy with the same masks and weights, AdamW with global-norm
clipping over the trainable parameters only.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from r2r_jax.config import LoraConfig, LossConfig, ModelConfig


def set_threads(n: int) -> None:
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:  # only settable before the first parallel work
        pass


def hf_config(cfg: ModelConfig, seq_cls: bool = False, pad_token_id: int = 0):
    """A transformers LlamaConfig with the same shape and RoPE as `cfg`."""
    from transformers import LlamaConfig

    rope = {"rope_type": "default", "rope_theta": cfg.rope_theta}
    if cfg.rope_scaling is not None and cfg.rope_scaling.rope_type == "llama3":
        rs = cfg.rope_scaling
        rope = {"rope_type": "llama3", "factor": rs.factor, "low_freq_factor": rs.low_freq_factor,
                "high_freq_factor": rs.high_freq_factor,
                "original_max_position_embeddings": rs.original_max_position_embeddings, "rope_theta": cfg.rope_theta}
    extra = {"num_labels": 1} if seq_cls else {}
    return LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads, head_dim=cfg.head_dim, rms_norm_eps=cfg.rms_norm_eps,
        max_position_embeddings=cfg.max_position_embeddings, rope_parameters=rope,
        tie_word_embeddings=cfg.tie_word_embeddings, initializer_range=cfg.initializer_range,
        pad_token_id=pad_token_id, attn_implementation="sdpa", **extra,
    )


def random_causal_lm(cfg: ModelConfig, seed: int = 0):
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(hf_config(cfg)).float().eval()


def load_causal_lm(folder: str):
    """A real base (HF folder) in float32 with SDPA attention, as the JAX side imports it."""
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="sdpa").eval()


def load_seq_cls(folder: str):
    """A seq-cls export (score head, no LM head) in float32 with SDPA attention."""
    from transformers import LlamaForSequenceClassification

    return LlamaForSequenceClassification.from_pretrained(folder, dtype=torch.float32,
                                                          attn_implementation="sdpa").eval()


def random_seq_cls(cfg: ModelConfig, pad_token_id: int, seed: int = 0):
    from transformers import LlamaForSequenceClassification

    torch.manual_seed(seed)
    return LlamaForSequenceClassification(hf_config(cfg, seq_cls=True, pad_token_id=pad_token_id)).float().eval()


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Positions counting real tokens only (left-padded rows start at 0), the JAX student's convention."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


# ---------------------------------------------------------------- losses (same definitions as r2r_jax.train.losses)


def ranknet_sum(scores, ranks, mask):
    pairs = mask[:, :, None] & mask[:, None, :] & (ranks[:, :, None] < ranks[:, None, :])
    per_pair = F.softplus(scores[:, None, :] - scores[:, :, None])
    return torch.where(pairs, per_pair, 0.0).sum(), pairs.sum()


def _masked_log_softmax(x, mask):
    return torch.where(mask, torch.log_softmax(x.masked_fill(~mask, -1e30), dim=-1), 0.0)


def listnet_sum(scores, ranks, mask, temperature: float):
    gain = mask.sum(-1, keepdim=True) - ranks.float()
    log_p = _masked_log_softmax(gain / temperature, mask)
    p = log_p.exp() * mask
    log_q = _masked_log_softmax(scores, mask)
    per_group = torch.where(mask, p * (log_p - log_q), 0.0).sum(-1)
    groups = mask.sum(-1) >= 2
    return torch.where(groups, per_group, 0.0).sum(), groups.sum()


class TorchR2RStep:
    """One optimizer step of the R2R combined loss for a transformers LlamaForCausalLM wrapped by peft."""

    def __init__(self, base, lora: LoraConfig, loss: LossConfig, lr: float = 1e-4, max_grad_norm: float = 1.0,
                 score_init: np.ndarray | None = None):
        from peft import LoraConfig as PeftLoraConfig
        from peft import get_peft_model

        self.loss_cfg, self.max_grad_norm = loss, max_grad_norm
        peft_cfg = PeftLoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                  target_modules=list(lora.targets), bias="none")
        self.peft = get_peft_model(base, peft_cfg)
        self.peft.train()
        causal = self.peft.get_base_model()
        self.decoder, self.lm_head = causal.model, causal.lm_head
        hidden = causal.config.hidden_size
        self.score = torch.nn.Linear(hidden, 1, bias=False)
        if score_init is not None:  # (hidden, 1) kernel layout, as in the JAX student
            with torch.no_grad():
                self.score.weight.copy_(torch.from_numpy(np.asarray(score_init, np.float32)).T)
        self.trainable = [p for p in self.peft.parameters() if p.requires_grad] + list(self.score.parameters())
        self.optimizer = torch.optim.AdamW(self.trainable, lr=lr, betas=(0.9, 0.999), weight_decay=0.0)

    def _sequences(self, ids, mask, target_ids, target_mask):
        """(final-norm hidden at the last prompt token, CE sum over target tokens, their count); like the JAX
        step, no LM head at all when the generation loss has weight 0."""
        t = target_ids.shape[-1]
        p = ids.shape[-1] - t
        hidden = self.decoder(input_ids=ids, attention_mask=mask, position_ids=positions(mask)).last_hidden_state
        if self.loss_cfg.gamma == 0:
            return hidden[:, p - 1], hidden.new_zeros(()), target_mask.new_zeros(())
        logits = self.lm_head(hidden[:, p - 1: p - 1 + t])
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target_ids.reshape(-1).long(), reduction="none")
        tm = target_mask.reshape(-1).bool()
        return hidden[:, p - 1], torch.where(tm, ce, 0.0).sum(), tm.sum()

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.loss_cfg
        b, g, _ = batch["input_ids"].shape
        last, ce_sum, ce_count = self._sequences(*(batch[k].flatten(0, 1) for k in (
            "input_ids", "attention_mask", "target_ids", "target_mask")))
        if cfg.gamma > 0 and batch["cmp_input_ids"].shape[1] > 0:
            _, cs, cc = self._sequences(*(batch[k].flatten(0, 1) for k in (
                "cmp_input_ids", "cmp_attention_mask", "cmp_target_ids", "cmp_target_mask")))
            ce_sum, ce_count = ce_sum + cs, ce_count + cc
        scores = self.score(last).reshape(b, g)
        mask, ranks = batch["candidate_mask"].bool(), batch["teacher_rank"]
        pair_sum, pairs = ranknet_sum(scores, ranks, mask)
        list_sum, groups = listnet_sum(scores, ranks, mask, cfg.temperature)
        terms = {"pair": pair_sum / pairs.clamp(min=1), "list": list_sum / groups.clamp(min=1),
                 "gen": ce_sum / ce_count.clamp(min=1)}
        total = cfg.alpha * terms["pair"] + cfg.beta * terms["list"] + cfg.gamma * terms["gen"]
        return total, {k: float(v.detach()) for k, v in terms.items()}

    def step(self, batch: dict[str, torch.Tensor]) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        total, _ = self.loss(batch)
        total.backward()
        torch.nn.utils.clip_grad_norm_(self.trainable, self.max_grad_norm)
        self.optimizer.step()
        return float(total.detach())


def torch_batch(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)).long() for k, v in batch.items()}


def peak_matmul(n: int, reps: int) -> list[float]:
    """FLOP/s of an n×n float32 matmul, one figure per repetition."""
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    out = torch.empty(n, n)
    torch.matmul(a, b, out=out)
    rates = []
    for _ in range(reps):
        start = time.perf_counter()
        torch.matmul(a, b, out=out)
        rates.append(2.0 * n**3 / (time.perf_counter() - start))
    return rates


# ---------------------------------------------------------------- scoring


class TorchScorer:
    """Scores from a transformers LlamaForSequenceClassification: length-sorted batches, each padded on the
    left to its own longest prompt (what a transformers user does), position ids counting real tokens."""

    def __init__(self, model):
        self.model = model.eval()

    @torch.inference_mode()
    def __call__(self, ids: np.ndarray, mask: np.ndarray, batch_size: int) -> np.ndarray:
        lengths = mask.sum(-1)
        order = np.argsort(lengths, kind="stable")
        out = np.zeros(len(ids), np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start: start + batch_size]
            width = int(lengths[rows].max())
            i = torch.from_numpy(ids[rows, -width:]).long()
            m = torch.from_numpy(mask[rows, -width:]).long()
            logits = self.model(input_ids=i, attention_mask=m, position_ids=positions(m)).logits
            out[rows] = logits[:, 0].float().numpy()
        return out
