"""A Llama-architecture GGUF as a Hugging Face folder with numpy alone: no torch.

transformers reads GGUF only through torch (its GGUF loader refuses to start without it), which would put
~750 MB of torch into an install that only needs a base for JAX. This module does what that loader does for
the Llama architecture with `gguf`'s own reader and numpy dequantizer, and with transformers' own tables for
the rest, so the folder is the one transformers writes: the config from its GGUF key table
(`GGUF_CONFIG_MAPPING`, defaults, tied embeddings when the file has no `output.weight`), the tensors renamed
to Hugging Face's names with llama.cpp's interleaved q/k rows put back in Hugging Face's order, and the
tokenizer built by transformers' GGUF tokenizer converter. tests/test_gguf_to_hf.py checks the result against
transformers' torch loader: the same config, bit-identical tensors, the same tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

# GGUF name -> Hugging Face name (llama.cpp's standardized tensor names; the layer ones per `blk.N.`)
GLOBAL_TENSORS = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
                  "output.weight": "lm_head.weight"}
LAYER_TENSORS = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
                 "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
                 "ffn_norm": "post_attention_layernorm", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
                 "ffn_down": "mlp.down_proj"}
# transformers' GGUF tokenizer loader: special token -> the metadata key of its id
SPECIAL_TOKENS = {"bos_token": "bos_token_id", "eos_token": "eos_token_id", "unk_token": "unknown_token_id",
                  "pad_token": "padding_token_id"}


def read_metadata(reader) -> dict[str, Any]:
    """Every metadata key of a `gguf.GGUFReader` as plain Python values (str, int, float, lists)."""
    out = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):  # the header's own counts
            continue
        value = field.contents()
        out[key] = [v.item() if isinstance(v, np.generic) else v for v in value] if isinstance(value, list) \
            else value.item() if isinstance(value, np.generic) else value
    return out


def hf_config(metadata: dict[str, Any], tensor_names: set[str]) -> dict[str, Any]:
    """The config dict transformers' GGUF loader builds: its key table applied to every section it names."""
    from transformers.integrations.ggml import GGUF_CONFIG_DEFAULTS_MAPPING, GGUF_CONFIG_MAPPING

    architecture = metadata["general.architecture"]
    config: dict[str, Any] = {"tie_word_embeddings": "output.weight" not in tensor_names}
    for key, value in GGUF_CONFIG_DEFAULTS_MAPPING.get(architecture, {}).items():
        config.setdefault(key, value)
    for key, value in metadata.items():
        prefix, _, rest = key.partition(".")
        name = GGUF_CONFIG_MAPPING.get(prefix, {}).get(rest)
        if name is not None and name != -1:
            config[name] = value
    if "vocab_size" not in config and "tokenizer.ggml.tokens" in metadata:
        config["vocab_size"] = len(metadata["tokenizer.ggml.tokens"])
    return config


def hf_name(gguf_name: str) -> str | None:
    """The Hugging Face name of a GGUF tensor (None: not part of the transformers model, e.g. rope_freqs)."""
    if gguf_name in GLOBAL_TENSORS:
        return GLOBAL_TENSORS[gguf_name]
    parts = gguf_name.split(".")
    if len(parts) == 4 and parts[0] == "blk" and parts[2] in LAYER_TENSORS:
        return f"model.layers.{parts[1]}.{LAYER_TENSORS[parts[2]]}.{parts[3]}"
    return None


def unpermute(weights: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp stores each q/k head's rotary halves interleaved; Hugging Face keeps them as two halves."""
    half = weights.shape[0] // heads // 2
    return weights.reshape(heads, half, 2, *weights.shape[1:]).swapaxes(2, 1).reshape(weights.shape)


def hf_tensors(reader, config: dict[str, Any], dtype: str) -> Iterator[tuple[str, np.ndarray]]:
    """(Hugging Face name, dequantized weights in `dtype`) for every tensor of the transformers model."""
    import ml_dtypes
    from gguf.quants import dequantize

    target = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
    for tensor in reader.tensors:
        name = hf_name(tensor.name)
        if name is None:
            continue
        weights = np.asarray(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)
        if ".attn_q." in tensor.name:
            weights = unpermute(weights, config["num_attention_heads"])
        elif ".attn_k." in tensor.name:
            weights = unpermute(weights, config["num_key_value_heads"])
        yield name, np.ascontiguousarray(weights.astype(target))


def hf_tokenizer(metadata: dict[str, Any]):
    """The tokenizer transformers builds from a GGUF file's vocabulary, merges, special tokens and template."""
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_TOKENIZER_MAPPING, convert_gguf_tokenizer
    from transformers.tokenization_utils_tokenizers import TokenizersBackend

    grouped = {group: {name: metadata[f"tokenizer.{key}"] for key, name in renames.items()
                       if f"tokenizer.{key}" in metadata}
               for group, renames in GGUF_TOKENIZER_MAPPING.items()}
    tokenizer, settings = grouped["tokenizer"], grouped["tokenizer_config"]
    if tokenizer.get("tokenizer_type") == "llama":  # sentencepiece files without the flag add BOS (llama.cpp)
        settings.setdefault("add_bos_token", True)
    for name, key in SPECIAL_TOKENS.items():
        token_id = metadata.get(f"tokenizer.ggml.{key}")
        settings[name] = tokenizer["tokens"][token_id] if token_id is not None else None
    backend, extra = convert_gguf_tokenizer(metadata["general.architecture"], tokenizer)
    return TokenizersBackend(tokenizer_object=backend, **settings, **extra)


def write_hf_folder(path: Path, folder: Path, dtype: str) -> None:
    """config.json, generation_config.json, model.safetensors and the tokenizer files of the GGUF at `path`."""
    from gguf import GGUFReader
    from safetensors.numpy import save_file
    from transformers import AutoConfig, GenerationConfig

    reader = GGUFReader(str(path))
    metadata = read_metadata(reader)
    values = hf_config(metadata, {t.name for t in reader.tensors})
    config = AutoConfig.for_model(**values)
    config.architectures = ["LlamaForCausalLM"]
    config.dtype = dtype
    tensors = dict(hf_tensors(reader, values, dtype))
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    del tensors
    config.save_pretrained(folder)
    GenerationConfig.from_model_config(config).save_pretrained(folder)
    hf_tokenizer(metadata).save_pretrained(folder)
