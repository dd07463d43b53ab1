"""A GGUF file's header, read with a few struct reads, and the check that its tensors are the model it claims.

transformers builds the model a GGUF's config describes and then fills it from the file's tensors. A file that
names an architecture but holds none of its tensors (a header-only or cut-off file) still builds — a
default-size model when the config keys are missing too — and the conversion then fails late or is killed for
memory. `check_tensors` refuses such a file first: the config keys a Llama needs, every tensor its layers need
with the shape the config gives, and every tensor's data inside the file.

`gguf.GGUFReader` would parse every tensor and vocabulary entry up front (~7 s for SmolLM2), which a no-op
`r2r base` must not pay; these reads skip what they do not need.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

from r2r_jax.model.hf_mapping import ConversionError

# GGUF value types (gguf.GGUFValueType) -> struct format of the fixed-size ones; 8 = string, 9 = array
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_LIMIT = 1 << 24  # more keys, tensors or array items than this is a corrupt count, not a model


@dataclass
class GGUFHeader:
    architecture: str = ""
    values: dict[str, int | float | bool] = field(default_factory=dict)  # scalar keys
    array_lengths: dict[str, int] = field(default_factory=dict)  # array keys: their length only
    tensors: dict[str, tuple[tuple[int, ...], int, int]] = field(default_factory=dict)  # (ggml dims, type, offset)
    data_start: int = 0


def _read(f, fmt: str):
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise ValueError("the file ends inside its header")
    return struct.unpack(fmt, data)[0]


def _read_string(f, limit: int = 1 << 16) -> bytes:
    """A key or a short string value (the length is checked before reading: a corrupt file must not make
    us allocate exabytes)."""
    n = _read(f, "<Q")
    if n > limit:
        raise ValueError(f"implausible string length {n}")
    return f.read(n)


def _skip_value(f, vtype: int) -> None:
    if vtype in _SCALARS:
        f.seek(struct.calcsize(_SCALARS[vtype]), 1)
    elif vtype == 8:
        f.seek(_read(f, "<Q"), 1)
    elif vtype == 9:
        etype, count = _read(f, "<I"), _read(f, "<Q")
        if etype in _SCALARS:
            f.seek(count * struct.calcsize(_SCALARS[etype]), 1)
        else:
            for _ in range(count):
                _skip_value(f, etype)
    else:
        raise ValueError(f"unknown value type {vtype}")


def _open_header(f) -> tuple[int, int]:
    """(tensor count, key count) after the magic and version."""
    if f.read(4) != b"GGUF" or _read(f, "<I") < 2:
        raise ValueError("no GGUF v2+ magic")
    tensors, keys = _read(f, "<Q"), _read(f, "<Q")
    if tensors > _LIMIT or keys > _LIMIT:
        raise ValueError(f"implausible counts ({tensors} tensors, {keys} keys)")
    return tensors, keys


def gguf_architecture(path: Path) -> str:
    """`general.architecture`, reading no further than that key (usually the first)."""
    try:
        with open(path, "rb") as f:
            _, keys = _open_header(f)
            for _ in range(keys):
                key, vtype = _read_string(f), _read(f, "<I")
                if key == b"general.architecture" and vtype == 8:
                    return _read_string(f).decode("utf-8")
                _skip_value(f, vtype)
    except (ValueError, struct.error, UnicodeDecodeError) as e:
        raise ConversionError(f"{path}: not a readable GGUF file ({e})") from None
    raise ConversionError(f"{path}: GGUF header has no general.architecture")


def read_header(path: Path) -> GGUFHeader:
    """The scalar keys, array lengths and tensor list of a GGUF file (no tensor data is read)."""
    header = GGUFHeader()
    try:
        with open(path, "rb") as f:
            tensors, keys = _open_header(f)
            for _ in range(keys):
                key, vtype = _read_string(f).decode("utf-8"), _read(f, "<I")
                if vtype in _SCALARS:
                    header.values[key] = _read(f, _SCALARS[vtype])
                elif vtype == 8 and key == "general.architecture":
                    header.architecture = _read_string(f).decode("utf-8")
                elif vtype == 9:
                    start = f.tell()
                    f.seek(4, 1)
                    header.array_lengths[key] = _read(f, "<Q")
                    f.seek(start)
                    _skip_value(f, vtype)
                else:
                    _skip_value(f, vtype)
            for _ in range(tensors):
                name, n_dims = _read_string(f).decode("utf-8"), _read(f, "<I")
                if n_dims > 8:
                    raise ValueError(f"tensor {name} has {n_dims} dimensions")
                dims = tuple(_read(f, "<Q") for _ in range(n_dims))
                header.tensors[name] = (dims, _read(f, "<I"), _read(f, "<Q"))
            alignment = int(header.values.get("general.alignment", 32)) or 32
            header.data_start = -(-f.tell() // alignment) * alignment
    except (ValueError, struct.error, UnicodeDecodeError) as e:
        raise ConversionError(f"{path}: not a readable GGUF file ({e})") from None
    return header


def expected_llama_tensors(header: GGUFHeader, path: Path) -> dict[str, tuple[int | None, ...]]:
    """Every tensor a Llama of this header's config needs, with its ggml dims (fastest first; None: any)."""
    arch = header.architecture

    def key(name: str, required: bool = True):
        value = header.values.get(f"{arch}.{name}")
        if value is None and required:
            raise ConversionError(f"{path}: incomplete GGUF: its header has no {arch}.{name}; the file cannot "
                                  "describe a model")
        return None if value is None else int(value)

    layers, hidden, heads = key("block_count"), key("embedding_length"), key("attention.head_count")
    ffn = key("feed_forward_length", required=False)  # an array (per layer) in some files: shapes unchecked
    kv_heads = key("attention.head_count_kv", required=False) or heads
    head_dim = key("attention.key_length", required=False) or hidden // max(heads, 1)
    vocab = key("vocab_size", required=False) or header.array_lengths.get("tokenizer.ggml.tokens")
    q, kv = heads * head_dim, kv_heads * head_dim
    expected: dict[str, tuple[int | None, ...]] = {"token_embd.weight": (hidden, vocab)}
    for n in range(layers):
        expected.update({f"blk.{n}.attn_norm.weight": (hidden,), f"blk.{n}.attn_q.weight": (hidden, q),
                         f"blk.{n}.attn_k.weight": (hidden, kv), f"blk.{n}.attn_v.weight": (hidden, kv),
                         f"blk.{n}.attn_output.weight": (q, hidden), f"blk.{n}.ffn_norm.weight": (hidden,),
                         f"blk.{n}.ffn_gate.weight": (hidden, ffn), f"blk.{n}.ffn_up.weight": (hidden, ffn),
                         f"blk.{n}.ffn_down.weight": (ffn, hidden)})
    expected["output_norm.weight"] = (hidden,)
    return expected


def check_tensors(path: Path, header: GGUFHeader) -> None:
    """Refuse (ConversionError, naming the file and the first missing or wrong tensor) a Llama GGUF whose
    tensors do not make the model its config describes, or whose tensor data runs past the end of the file.
    `output.weight` is optional: without it the output layer is tied to the embeddings."""
    expected = expected_llama_tensors(header, path)
    hidden, vocab = expected["token_embd.weight"]
    optional = {"output.weight": (hidden, vocab)}
    for name, shape in {**expected, **optional}.items():
        if name not in header.tensors:
            if name in optional:
                continue
            raise ConversionError(f"{path}: incomplete GGUF: no tensor {name} (its config describes "
                                  f"{header.values.get(f'{header.architecture}.block_count')} layers of width "
                                  f"{hidden}; the file holds {len(header.tensors)} tensors)")
        dims = header.tensors[name][0]
        if len(dims) != len(shape) or any(w is not None and g != w for g, w in zip(dims, shape, strict=True)):
            raise ConversionError(f"{path}: tensor {name} has dims {list(dims)}, its config needs "
                                  f"{[d if d is not None else '*' for d in shape]}")
    _check_data_in_file(path, header)


def _check_data_in_file(path: Path, header: GGUFHeader) -> None:
    from gguf.constants import GGML_QUANT_SIZES  # the `base` extra, which `r2r base` needs anyway

    size = path.stat().st_size
    for name, (dims, ttype, offset) in header.tensors.items():
        block, type_size = GGML_QUANT_SIZES.get(ttype, (None, None))
        if block is None:  # a type this gguf does not know: transformers will say so
            continue
        end = header.data_start + offset + math.prod(dims) // block * type_size
        if end > size:
            raise ConversionError(f"{path}: truncated GGUF: tensor {name} ends at byte {end}, the file has {size}")
