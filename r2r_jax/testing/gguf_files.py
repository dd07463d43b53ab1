"""Tiny GGUF files and the folders `r2r base` leaves, for the tests and the hostile-input sweep of `r2r base`:
whole, with tensors dropped, header only, or a converted folder with its marker (and its file list, or not)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from gguf import GGUFWriter

from r2r_jax.convert.gguf_base import MARKER, file_sha256
from r2r_jax.convert.gguf_header import GGUFHeader, expected_llama_tensors

TINY_LLAMA = {"block_count": 2, "embedding_length": 8, "feed_forward_length": 16, "head_count": 2,
              "head_count_kv": 1, "vocab_size": 12}


def write_gguf(path: Path, tensors: bool = True, drop: tuple[str, ...] = (), config: bool = True,
               arch: str = "llama") -> Path:
    """A GGUF of TINY_LLAMA's config under `arch`: with all its tensors, some dropped, or none (header only)."""
    writer = GGUFWriter(str(path), arch)
    writer.add_block_count(TINY_LLAMA["block_count"])
    if config:
        writer.add_embedding_length(TINY_LLAMA["embedding_length"])
        writer.add_feed_forward_length(TINY_LLAMA["feed_forward_length"])
        writer.add_head_count(TINY_LLAMA["head_count"])
        writer.add_head_count_kv(TINY_LLAMA["head_count_kv"])
        writer.add_vocab_size(TINY_LLAMA["vocab_size"])
    if tensors:
        values = {f"llama.{k.replace('head_count', 'attention.head_count')}": v for k, v in TINY_LLAMA.items()}
        for name, dims in expected_llama_tensors(GGUFHeader("llama", values), path).items():
            if name not in drop:  # ggml lists the fastest axis first: numpy's shape reversed
                writer.add_tensor(name, np.full(tuple(reversed(dims)), 0.5, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def written_base(folder: Path, source: Path, files: bool = True) -> None:
    """A folder as `r2r base` leaves it after converting `source` (a stand-in model file: nothing loads it);
    `files=False` leaves the marker without its file list."""
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}\n')
    (folder / "model.safetensors").write_bytes(b"\0" * 4096)
    info = {"sha256": file_sha256(source), "dtype": "float32", "architecture": "llama"}
    if files:
        info["files"] = {"config.json": {"bytes": 24, "sha256": file_sha256(folder / "config.json")},
                         "model.safetensors": {"bytes": 4096}}
    (folder / MARKER).write_text(json.dumps(info))
