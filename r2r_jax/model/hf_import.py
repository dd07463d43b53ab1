"""Hugging Face folder -> Flax params, tensor by tensor, each placed directly with its target sharding.

`jax.make_array_from_callback` asks for each device's shard; the callback slices it out of the
memory-mapped safetensors file, so no host ever holds more than about one tensor of the model.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, SingleDeviceSharding
from safetensors import safe_open

from r2r_jax.config import ModelConfig
from r2r_jax.model.hf_mapping import ConversionError, TensorMap, model_config_from_hf, tensor_maps
from r2r_jax.model.layout import unstack_layers
from r2r_jax.model.llama import LlamaForRanking, abstract_variables
from r2r_jax.parallel.rules import tree_shardings


def load_hf_model_config(folder: str | Path, **overrides) -> ModelConfig:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise ConversionError(f"{folder}: no config.json")
    try:
        hf = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConversionError(f"{path}: invalid JSON ({e.msg}, line {e.lineno})") from None
    return model_config_from_hf(hf, str(path), **overrides)


def weight_files(folder: str | Path) -> dict[str, Path]:
    """Tensor name -> safetensors file, from the index for sharded checkpoints or the single file."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as e:
            raise ConversionError(f"{index}: not a safetensors index ({e})") from None
        files = {name: folder / fname for name, fname in weight_map.items()}
        for f in sorted(set(files.values())):
            if not f.is_file():
                raise ConversionError(f"{index}: names shard {f.name}, which is missing")
        return files
    single = folder / "model.safetensors"
    if not single.is_file():
        raise ConversionError(f"{folder}: neither model.safetensors nor model.safetensors.index.json")
    with _open(single) as f:
        return dict.fromkeys(f.keys(), single)


@contextlib.contextmanager
def _open_error(path: Path):
    try:
        yield
    except ConversionError:
        raise
    except Exception as e:  # safetensors raises its own error types for truncated or corrupt files
        raise ConversionError(f"{path}: cannot read safetensors ({e})") from None


def _open(path: Path, framework: str = "numpy"):
    with _open_error(path):
        return safe_open(str(path), framework=framework)


class _Reader:
    """Open safetensors handles, reading slices of named tensors as numpy arrays."""

    def __init__(self, files: dict[str, Path]):
        self.files = files
        self.handles: dict[tuple[Path, str], Any] = {}

    def _handle(self, name: str, framework: str = "numpy"):
        key = (self.files[name], framework)
        if key not in self.handles:
            self.handles[key] = _open(*key).__enter__()
        return self.handles[key]

    def shape(self, name: str) -> tuple[int, ...]:
        with _open_error(self.files[name]):
            return tuple(self._handle(name).get_slice(name).get_shape())

    def read(self, name: str, index: tuple[slice, ...]) -> np.ndarray:
        """numpy reads straight from the memory map; numpy has no bfloat16, so those go through jax."""
        with _open_error(self.files[name]):
            sl = self._handle(name).get_slice(name)
            if sl.get_dtype() == "BF16":
                return np.asarray(self._handle(name, "flax").get_slice(name)[index])
            return sl[index]


def _check_shapes(reader: _Reader, m: TensorMap, shape: tuple[int, ...], num_layers: int) -> None:
    names = [m.hf_name.format(i=i) for i in range(num_layers)] if m.per_layer else [m.hf_name]
    expected = shape[1:] if m.per_layer else shape
    if m.transpose:
        expected = tuple(reversed(expected))
    for name in names:
        if name not in reader.files:
            raise ConversionError(f"missing tensor {name!r}")
        got = reader.shape(name)
        if got != tuple(expected):
            raise ConversionError(f"tensor {name!r} has shape {got}, expected {tuple(expected)}")


def _callback(reader: _Reader, m: TensorMap, shape: tuple[int, ...], dtype):
    def read_2d(name: str, index: tuple[slice, ...]) -> np.ndarray:
        hf_index = tuple(reversed(index)) if m.transpose else index
        block = reader.read(name, hf_index)
        return (block.T if m.transpose else block).astype(dtype, copy=False)

    def cb(index: tuple[slice, ...]) -> np.ndarray:
        if not m.per_layer:
            return read_2d(m.hf_name, index)
        layers = range(*index[0].indices(shape[0]))
        return np.stack([read_2d(m.hf_name.format(i=i), index[1:]) for i in layers])

    return cb


def _nested_set(tree: dict, path: tuple[str, ...], value) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def _nested_get(tree: dict, path: tuple[str, ...]):
    for key in path:
        tree = tree[key]
    return tree


def import_hf_params(
    folder: str | Path, cfg: ModelConfig, mesh: Mesh | None = None,
    with_score: bool | None = None, with_lm_head: bool = True,
) -> dict:
    """Read the base weights (and `score.weight` when present or asked for) as a sharded params tree
    in `cfg.param_dtype` (the score head in float32). Layers come out stacked (scanned layout), or per layer
    (`layers_{i}`) for a model with `scan_layers=false`.
    `with_lm_head=False` reads a scoring-only folder (a seq-cls export has no `lm_head.weight`)."""
    if not cfg.scan_layers:
        return _unrolled(folder, cfg, mesh, with_score, with_lm_head)
    files = weight_files(folder)
    reader = _Reader(files)
    if with_score is None:
        with_score = "score.weight" in files
    abstract = abstract_variables(LlamaForRanking(cfg))["params"]
    shardings = (tree_shardings(abstract, mesh) if mesh is not None else None)
    params: dict = {}
    try:
        for m in tensor_maps(cfg, with_lm_head=with_lm_head, with_score=with_score):
            leaf = _nested_get(abstract, m.path)
            shape = tuple(leaf.value.shape)
            dtype = np.float32 if m.path[0] == "score" else jnp.dtype(cfg.param_dtype)
            _check_shapes(reader, m, shape, cfg.num_hidden_layers)
            if shardings is not None:
                sharding = _nested_get(shardings, m.path)
            else:
                sharding = SingleDeviceSharding(jax.devices()[0])
            arr = jax.make_array_from_callback(shape, sharding, _callback(reader, m, shape, dtype))
            _nested_set(params, m.path, arr)
    finally:
        for h in reader.handles.values():
            h.__exit__(None, None, None)
    return params


def _unrolled(folder, cfg: ModelConfig, mesh: Mesh | None, with_score, with_lm_head) -> dict:
    """Import stacked, then slice per layer onto the unrolled model's shardings, freeing each stacked tensor
    as soon as it is sliced (peak: the model plus one stacked tensor)."""
    import dataclasses

    stacked = import_hf_params(folder, dataclasses.replace(cfg, scan_layers=True), mesh, with_score,
                               with_lm_head)
    params = unstack_layers(stacked, cfg.num_hidden_layers, consume=True)
    del stacked
    if mesh is None:
        return params
    abstract = abstract_variables(LlamaForRanking(cfg))["params"]
    shardings = tree_shardings(abstract, mesh)
    return jax.tree_util.tree_map_with_path(
        lambda path, x: jax.device_put(x, _nested_get(shardings, tuple(p.key for p in path))), params)
