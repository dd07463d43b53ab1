"""Trained student -> Hugging Face folder: merged seq-cls / causal-lm, or a PEFT adapter (docs/export.md).

Every output tensor comes from one small jitted function on the devices that hold the student (take
one layer, fold its LoRA in float32, transpose to HF's (out, in), cast), is gathered to the host, handed
to the shard writer and dropped: host memory stays near one layer plus one output shard, never 2× the
model. Every process runs the same gathers (they are collectives on multi-host meshes); only process 0
writes, into a hidden folder beside the output that is renamed into place once everything is written.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec

from r2r_jax.atomic import check_output_folder, output_lock, staged_folder
from r2r_jax.checkpoint import read_meta, run_folder
from r2r_jax.config import MeshConfig, ModelConfig
from r2r_jax.convert.export_files import ExportInfo, write_side_files
from r2r_jax.convert.export_formats import DTYPES, FORMATS
from r2r_jax.convert.safetensors_writer import ShardedWriter, TensorEntry, parse_size
from r2r_jax.data.templates import load_tokenizer, special_ids
from r2r_jax.inference.fusion import DEFAULT_FILE as FUSION_DEFAULT_FILE
from r2r_jax.model.hf_mapping import LAYER_LINEARS, ConversionError, tensor_maps
from r2r_jax.model.layout import stack_layers
from r2r_jax.model.lora import lora_delta
from r2r_jax.parallel.batch import to_host
from r2r_jax.parallel.mesh import make_mesh, maybe_initialize_distributed
from r2r_jax.trained.loading import STUDENT_FILE
from r2r_jax.trained.restore import load_trained

ADAPTER_FILE = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."  # PeftModel wraps the transformers model twice


class ExportError(ConversionError):
    """An export that cannot be done as asked; the message says why and what to do instead."""


@dataclass
class ExportSource:
    """What an export reads: the (sharded) frozen base, the score kernel (hidden, 1), LoRA (or None)."""

    cfg: ModelConfig
    frozen: dict
    score: jax.Array
    lora: dict | None
    lora_scale: float

    def array(self, path: tuple[str, ...]) -> jax.Array:
        if path[0] == "score":
            return self.score
        tree = self.frozen
        for key in path:
            tree = tree[key]
        return tree

    def lora_pair(self, path: tuple[str, ...]) -> dict | None:
        """{"lora_a": (L, r, in), "lora_b": (L, out, r)} of a layer linear, or None if it has no adapter."""
        tree = self.lora
        for key in path[:-1]:  # the kernel's module path
            if not isinstance(tree, dict) or key not in tree:
                return None
            tree = tree[key]
        return tree if isinstance(tree, dict) and "lora_a" in tree else None


@dataclass
class _Item:
    entry: TensorEntry
    produce: Callable[[], jax.Array]


def _out_sharding(x: jax.Array, per_layer: bool, transpose: bool):
    """Keep the input's layout for the output (minus the layer axis, transposed): gathering a layer
    never replicates it over the devices first."""
    sh = x.sharding
    if not isinstance(sh, NamedSharding):
        return None
    spec = list(sh.spec) + [None] * (x.ndim - len(sh.spec))
    spec = spec[1:] if per_layer else spec
    return NamedSharding(sh.mesh, PartitionSpec(*(spec[::-1] if transpose else spec)))


def _extractor(x: jax.Array, pair: dict | None, per_layer: bool, transpose: bool, scale: float, dtype) -> Callable:
    """`f(layer) -> jax.Array`: one output tensor (merged, transposed, cast); one compile per kind."""

    def f(w, lo, i):
        if per_layer:
            w, lo = jax.tree.map(lambda t: jax.lax.dynamic_index_in_dim(t, i, keepdims=False), (w, lo))
        w = w.astype(jnp.float32)
        if lo is not None:
            w = w + lora_delta(lo["lora_a"], lo["lora_b"], scale)
        return (w.T if transpose else w).astype(dtype)

    jitted = jax.jit(f, out_shardings=_out_sharding(x, per_layer, transpose))
    return lambda i=0: jitted(x, pair, i)


def _entry(name: str, x: jax.Array, per_layer: bool, transpose: bool, dtype) -> TensorEntry:
    shape = tuple(x.shape[1:] if per_layer else x.shape)
    return TensorEntry(name, shape[::-1] if transpose else shape, np.dtype(dtype))


def _merged_items(source: ExportSource, fmt: str, dtype) -> list[_Item]:
    """seq-cls / causal-lm: the mapping table's tensors with LoRA folded in, embedding first, then layer by
    layer (so consecutive tensors of a shard belong to one layer), then norm and heads."""
    maps = tensor_maps(source.cfg, with_lm_head=fmt == "causal-lm", with_score=fmt == "seq-cls")

    def whole(m) -> _Item:
        x = source.array(m.path)
        return _Item(_entry(m.hf_name, x, False, m.transpose, dtype),
                     _extractor(x, None, False, m.transpose, 1.0, dtype))

    embed = ("model", "embed_tokens")
    items = [whole(m) for m in maps if m.path[:2] == embed]
    layered = []
    for m in (m for m in maps if m.per_layer):
        x = source.array(m.path)
        layered.append((m, x, _extractor(x, source.lora_pair(m.path), True, m.transpose, source.lora_scale, dtype)))
    for i in range(source.cfg.num_hidden_layers):
        for m, x, fn in layered:
            items.append(_Item(_entry(m.hf_name.format(i=i), x, True, m.transpose, dtype), lambda fn=fn, i=i: fn(i)))
    return items + [whole(m) for m in maps if not m.per_layer and m.path[:2] != embed]


def _adapter_items(source: ExportSource, dtype) -> list[_Item]:
    """peft: lora_A / lora_B per layer and target in PEFT's key names, then the score head, saved the way
    PeftModel saves a `modules_to_save` module (without the `modules_to_save.default` infix)."""
    targets = []
    for parent, names in LAYER_LINEARS.items():
        for name in names:
            pair = source.lora_pair(("model", "layers", parent, name, "kernel"))
            if pair is not None:
                targets.append((parent, name, pair))
    fns = {(parent, name, part): (_extractor(pair[part], None, True, False, 1.0, dtype), pair[part])
           for parent, name, pair in targets for part in ("lora_a", "lora_b")}
    items = []
    for i in range(source.cfg.num_hidden_layers):
        for parent, name, _ in targets:
            for part, hf_part in (("lora_a", "lora_A"), ("lora_b", "lora_B")):
                fn, x = fns[(parent, name, part)]
                hf_name = f"{PEFT_PREFIX}model.layers.{i}.{parent}.{name}.{hf_part}.weight"
                items.append(_Item(_entry(hf_name, x, True, False, dtype), lambda fn=fn, i=i: fn(i)))
    score_fn = _extractor(source.score, None, False, True, 1.0, dtype)
    items.append(_Item(_entry(f"{PEFT_PREFIX}score.weight", source.score, False, True, dtype), score_fn))
    return items


def adapter_targets(source: ExportSource) -> list[str]:
    return [name for parent, names in LAYER_LINEARS.items() for name in names
            if source.lora_pair(("model", "layers", parent, name, "kernel")) is not None]


def plan_tensors(source: ExportSource, fmt: str, dtype: str) -> list[_Item]:
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if dtype not in DTYPES:
        raise ExportError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    jdt = jnp.dtype(dtype)
    return _adapter_items(source, jdt) if fmt == "peft" else _merged_items(source, fmt, jdt)


def write_tensors(source: ExportSource, folder: str | Path | None, fmt: str, dtype: str = "bfloat16",
                  max_shard_size: str | int = "5GB", progress: bool = False) -> dict[str, str]:
    """Produce every tensor of `fmt` one at a time and (when `folder` is given) write it; processes other
    than the writer pass `folder=None` and only take part in the gathers. Returns tensor name -> file."""
    items = plan_tensors(source, fmt, dtype)
    writer = None
    if folder is not None:
        single = ADAPTER_FILE if fmt == "peft" else None
        writer = ShardedWriter(folder, [it.entry for it in items], parse_size(max_shard_size), single_file=single)
    bar = None
    if progress and folder is not None:
        from tqdm import tqdm

        bar = tqdm(total=len(items), desc=f"export {fmt}", unit="tensor", dynamic_ncols=True)
    try:
        for it in items:
            host = to_host(it.produce())
            if writer is not None:
                writer.add(it.entry.name, host)
            del host
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return writer.finish() if writer is not None else {}


def source_from_student(model_cfg: ModelConfig, frozen: dict, trainable: dict, lora_alpha: float,
                        lora_rank: int) -> ExportSource:
    """Export streams the stacked layout; an unrolled student (`scan_layers=false`) is stacked first."""
    lora = trainable.get("lora")
    return ExportSource(model_cfg, stack_layers(frozen), trainable["score"]["kernel"],
                        None if lora is None else stack_layers(lora), lora_alpha / lora_rank)


def check_request(fmt: str, dtype: str, base_model: str, lora_train: str) -> None:
    """Refuse what cannot work before any device time is spent, with the alternative in the message."""
    if fmt not in FORMATS or dtype not in DTYPES:
        raise ExportError(f"format must be one of {FORMATS} and dtype one of {DTYPES}, got {fmt!r}, {dtype!r}")
    if fmt == "peft" and not base_model:
        raise ExportError("this checkpoint was trained from a random-init base, so there is no base folder for a "
                          "PEFT adapter to apply to; export seq-cls or causal-lm (merged weights) instead")
    if fmt == "peft" and lora_train == "head_only":
        raise ExportError("this checkpoint trained only the score head (lora.train=head_only), so there are no "
                          "LoRA adapters for PEFT to load; export seq-cls instead")


def export_checkpoint(checkpoint: str | Path, output: str | Path, fmt: str, dtype: str = "bfloat16",
                      max_shard_size: str | int = "5GB", base_model: str | None = None, overwrite: bool = False,
                      progress: bool = False) -> Path:
    """Restore a training checkpoint onto all devices (FSDP over every device, so an 8B student fits where
    it was trained or on one host) and export it as `fmt`. Returns the output folder. Process 0 holds the output
    (`atomic.output_lock`) from its check to its rename, so a second export to it is refused, not mixed in."""
    parse_size(max_shard_size)

    def check() -> None:  # never replace the run being exported, nor a folder an export did not write
        check_output_folder(output, flag="--output-dir", inputs=[checkpoint, run_folder(checkpoint)],
                            marker=STUDENT_FILE, writer="r2r export", overwrite=overwrite)

    check()  # before minutes of restore, and before the lock (its file goes beside the output)
    maybe_initialize_distributed()
    with output_lock(output, "r2r export") if jax.process_index() == 0 else contextlib.nullcontext():
        check()  # again: another export may have written it meanwhile
        meta, _, _ = read_meta(checkpoint)
        if not meta.get("config", {}).get("data", {}).get("tokenizer"):
            raise ExportError(f"{checkpoint}: its config names no data.tokenizer; cannot write tokenizer files")
        check_request(fmt, dtype, base_model or meta.get("base_model", ""),
                      meta.get("config", {}).get("lora", {}).get("train", ""))
        prepared, step = load_trained(checkpoint, make_mesh(MeshConfig(data=1, fsdp=-1, tensor=1)), base_model)
        return export_prepared(prepared, step, checkpoint, output, fmt, dtype, max_shard_size, overwrite, progress)


def export_prepared(prepared, step: int, checkpoint: str | Path, output: str | Path, fmt: str,
                    dtype: str = "bfloat16", max_shard_size: str | int = "5GB", overwrite: bool = False,
                    progress: bool = False) -> Path:
    """Export an already restored student (`train.setup.Prepared`) that came from `checkpoint` at `step`."""
    cfg = prepared.cfg
    base = prepared.meta()["base_model"]
    check_request(fmt, dtype, base, cfg.lora.train)
    max_bytes = parse_size(max_shard_size)
    if not cfg.data.tokenizer:
        raise ExportError("the checkpoint's config names no data.tokenizer; cannot write tokenizer files")
    special = special_ids(load_tokenizer(cfg.data.tokenizer))
    source = source_from_student(prepared.model_cfg, prepared.student.frozen, prepared.state.trainable,
                                 cfg.lora.alpha, cfg.lora.rank)
    info = ExportInfo(fmt, dtype, cfg, prepared.model_cfg, special, base, prepared.base_hash,
                      str(Path(checkpoint).absolute()), step)
    output = Path(output).absolute()
    if jax.process_index() != 0:
        write_tensors(source, None, fmt, dtype, max_bytes)  # take part in the gathers; process 0 writes
        multihost_utils.sync_global_devices("r2r_export_done")
        return output
    with staged_folder(output, overwrite) as tmp:
        write_tensors(source, tmp, fmt, dtype, max_bytes, progress=progress)
        write_side_files(tmp, info, cfg.data.tokenizer, cfg.lora, adapter_targets(source))
        run = run_folder(checkpoint)  # the run's rerank default travels with its export
        if run is not None and (run / FUSION_DEFAULT_FILE).is_file():
            shutil.copyfile(run / FUSION_DEFAULT_FILE, tmp / FUSION_DEFAULT_FILE)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("r2r_export_done")
    return output
