"""Building a student: the frozen base, the trainable part (LoRA + score head), created already sharded.

`jax.eval_shape` gives the boxed abstract variables, the rules give their shardings, and
`jax.jit(init, out_shardings=...)` materialises each array directly on its devices. With an imported
base, only LoRA and the score head are initialised (XLA drops the unused base initialisers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from r2r_jax.config import LoraConfig, ModelConfig
from r2r_jax.model.llama import LlamaForRanking, abstract_variables, lm_head_weight
from r2r_jax.parallel.rules import tree_shardings


@dataclass
class Student:
    model: LlamaForRanking
    frozen: dict  # base params without the score head
    frozen_shardings: Any
    trainable_shardings: Any  # of {"score": ..., "lora": ...}; the values live in the train state only

    def variables(self, trainable: dict) -> dict:
        return join_variables(self.frozen, trainable)


def join_variables(frozen: dict, trainable: dict) -> dict:
    variables = {"params": {**frozen, "score": trainable["score"]}}
    if "lora" in trainable:
        variables["lora"] = trainable["lora"]
    return variables


def split_variables(variables: dict) -> tuple[dict, dict]:
    """(frozen base params, trainable {score head, LoRA}) of a model's variables (or their shardings)."""
    params = dict(variables["params"])
    trainable = {"score": params.pop("score")}
    if "lora" in variables:
        trainable["lora"] = variables["lora"]
    return params, trainable


def build_student(
    model_cfg: ModelConfig, lora_cfg: LoraConfig | None, mesh: Mesh, rng: jax.Array,
    base_params: dict | None = None,
) -> tuple[Student, dict]:
    """Initialise (or adopt `base_params` for) the base and initialise LoRA + score head, all sharded.
    Returns the student (model + frozen base) and the initial trainable tree {"score", "lora"}, which from
    then on lives in the train state, so nothing holds a copy that goes stale after a step."""
    model = LlamaForRanking(model_cfg, lora_cfg)
    boxed = abstract_variables(model)
    shardings = tree_shardings(boxed, mesh)
    frozen_sh, trainable_sh = split_variables(shardings)
    ids = jnp.zeros((1, 1), jnp.int32)

    def init(key):
        return nn.meta.unbox(model.init(key, ids, ids, method=LlamaForRanking.init_all))

    if base_params is None:
        variables = jax.jit(init, out_shardings=shardings)(rng)
        frozen, trainable = split_variables(variables)
    else:
        trainable = jax.jit(lambda key: split_variables(init(key))[1], out_shardings=trainable_sh)(rng)
        frozen = {k: v for k, v in base_params.items() if k != "score"}
        if "score" in base_params:
            trainable["score"] = jax.device_put(base_params["score"], trainable_sh["score"])
    return Student(model, frozen, frozen_sh, trainable_sh), trainable


def init_score_from_lm_head(student: Student, trainable: dict, model_cfg: ModelConfig, positive_id: int,
                            negative_id: int) -> dict:
    """Set the score head to the LM head's `logit(positive) - logit(negative)` at the scored position.

    The score is read from the same final-norm hidden state the LM head reads, so with this kernel the
    untrained student scores exactly as the base model's yes/no judgement of the prompt: an instruction-tuned
    base ranks zero-shot from step 0 and training starts from a relevance signal rather than a random head."""
    head = lm_head_weight(student.frozen, model_cfg)  # (embed, vocab)
    kernel = (head[:, positive_id] - head[:, negative_id]).astype(jnp.float32)[:, None]
    sharding = student.trainable_shardings["score"]["kernel"]
    return {**trainable, "score": {**trainable["score"], "kernel": jax.device_put(kernel, sharding)}}
