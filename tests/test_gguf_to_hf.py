"""`r2r base` converts GGUF files without torch (convert/gguf_to_hf.py). Ground truth is transformers' own GGUF
loader, which runs on torch: on a small Llama GGUF with quantized tensors (Q8_0, Q4_1, as SmolLM2's file has)
and a byte-level BPE tokenizer, the folder written with numpy alone must hold the same config, bit-identical
tensors (float32 and bfloat16) and the same tokenizer as the folder transformers writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from r2r_jax.convert.gguf_to_hf import hf_name, write_hf_folder  # noqa: E402

LAYERS, HIDDEN, FFN, HEADS, KV_HEADS = 2, 64, 128, 4, 2
TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"


def _vocab() -> tuple[list[str], list[str], list[int]]:
    """A byte-level BPE vocabulary: three control tokens, the 256 byte symbols and a few merges."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a"]
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *symbols, *("".join(m.split()) for m in merges)]
    return tokens, merges, [3, 3, 3] + [1] * (len(tokens) - 3)


def write_small_gguf(path: Path) -> Path:
    tokens, merges, types = _vocab()
    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("small llama")
    writer.add_block_count(LAYERS)
    writer.add_context_length(256)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(HIDDEN // HEADS)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_pad_token_id(2)
    writer.add_add_bos_token(False)
    writer.add_chat_template(TEMPLATE)
    head = HIDDEN // HEADS
    shapes = {"token_embd.weight": (len(tokens), HIDDEN), "output_norm.weight": (HIDDEN,)}
    for i in range(LAYERS):
        layer = {"attn_norm": (HIDDEN,), "ffn_norm": (HIDDEN,), "attn_q": (HEADS * head, HIDDEN),
                 "attn_k": (KV_HEADS * head, HIDDEN), "attn_v": (KV_HEADS * head, HIDDEN),
                 "attn_output": (HIDDEN, HIDDEN), "ffn_gate": (FFN, HIDDEN), "ffn_up": (FFN, HIDDEN),
                 "ffn_down": (HIDDEN, FFN)}
        shapes |= {f"blk.{i}.{part}.weight": shape for part, shape in layer.items()}
    Q = gguf.GGMLQuantizationType
    for name, shape in shapes.items():
        values = rng.standard_normal(shape).astype(np.float32) * 0.1
        if len(shape) == 1:
            writer.add_tensor(name, 1.0 + values)
            continue
        qtype = Q.Q8_0 if name == "token_embd.weight" else Q.Q4_1
        writer.add_tensor(name, gguf.quants.quantize(values, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def transformers_folder(path: Path, out: Path, dtype: str) -> Path:
    """What transformers' torch GGUF loader makes of the file, saved as it saves any model."""
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                 dtype={"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype])
    model.hf_quantizer, model.is_quantized = None, False  # the loader dequantized: plain tensors
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name).save_pretrained(out)
    return out


def _tensors(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_numpy_conversion_writes_what_transformers_writes(tmp_path, dtype):
    (tmp_path / "src").mkdir()
    source = write_small_gguf(tmp_path / "src" / "small.gguf")
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    write_hf_folder(source, ours, dtype)
    transformers_folder(source, theirs, dtype)

    for name in ("config.json", "generation_config.json", "tokenizer.json"):
        assert json.loads((ours / name).read_text()) == json.loads((theirs / name).read_text()), name
    assert (ours / "chat_template.jinja").read_text() == (theirs / "chat_template.jinja").read_text()
    settings = json.loads((ours / "tokenizer_config.json").read_text())
    reference = json.loads((theirs / "tokenizer_config.json").read_text())
    for key in ("is_local", "local_files_only"):  # how transformers found the file, not the tokenizer
        reference.pop(key, None)
    assert settings == reference

    a, b = _tensors(ours), _tensors(theirs)
    assert sorted(a) == sorted(b) and "lm_head.weight" not in a  # no output.weight in the file: tied
    for name in b:
        assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape, name
        assert a[name].tobytes() == b[name].tobytes(), f"{name} differs"


def test_the_converted_folder_loads_and_tokenizes(tmp_path):
    from transformers import AutoConfig, AutoTokenizer

    (tmp_path / "src").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    write_hf_folder(write_small_gguf(tmp_path / "src" / "small.gguf"), out, "float32")
    config = AutoConfig.from_pretrained(out)
    assert (config.num_hidden_layers, config.num_key_value_heads, config.tie_word_embeddings) == (LAYERS, KV_HEADS,
                                                                                                   True)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.decode(tokenizer("in the tea").input_ids) == "in the tea"
    assert tokenizer.convert_ids_to_tokens(tokenizer(" the").input_ids) == ["Ġthe"]
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|im_end|>"


def test_gguf_names_map_to_hugging_face_names():
    assert hf_name("blk.12.attn_k.weight") == "model.layers.12.self_attn.k_proj.weight"
    assert hf_name("blk.0.ffn_norm.weight") == "model.layers.0.post_attention_layernorm.weight"
    assert hf_name("output.weight") == "lm_head.weight"
    assert hf_name("rope_freqs.weight") is None  # llama.cpp's own precomputed table: not a model weight
