"""Orbax checkpoints of what training changes: LoRA, score head, optimizer state, step, loader state.

Plus metadata naming the base model (path and content fingerprint) and the full config, so a resumed
run or an export can rebuild the student. Restores go onto whatever mesh the caller has now.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

BEST_METRIC = "ndcg@10"
# A train state: a flax struct with `step`, `trainable` and `opt_state` (train.step.TrainState). Saving needs
# nothing else of it, so this module sits below train in the layering.
State = TypeVar("State")
ITEMS = ("state", "loader", "meta")  # a checkpoint's parts: train state, loader position, run metadata


class CheckpointError(ValueError):
    pass


# Silence what a failed restore leaves running, so a torn checkpoint is reported in one line. When one array
# cannot be read, orbax raises at once, but the other reads it started are still in flight: their tensorstore
# callbacks land on the event loop orbax has already closed and print "Event loop is closed" tracebacks from
# tensorstore's threads (through sys.excepthook), asyncio logs "Task exception was never retrieved", orbax logs
# through absl: from none to hundreds of lines around the one line that says what is wrong, at random, for as
# long as the process lives.
NOISY_LOGGERS = ("asyncio", "absl", "orbax")
_failed = False


def restore_failed() -> bool:
    """Whether a restore in this process failed (its abandoned work is silenced from then on)."""
    return _failed


@contextlib.contextmanager
def quiet_abandoned_work() -> Iterator[None]:
    """Around a restore: exceptions outside the main thread, unraisable exceptions and the asyncio, absl and
    orbax loggers are silenced while the block runs. When it succeeds everything is put back; when it raises, the
    silence stays for the rest of the process (the abandoned reads may report at any time) and `restore_failed()`
    turns true, so `r2r` leaves right after its one line (`os._exit`: no interpreter teardown that waits for those
    reads). The main thread's own uncaught exceptions, and Ctrl-C, still show."""
    global _failed
    previous_excepthook, previous_thread_hook, previous_unraisable = (sys.excepthook, threading.excepthook,
                                                                      sys.unraisablehook)
    levels = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}

    def excepthook(exc_type, exc, tb) -> None:  # tensorstore's threads print their callbacks' errors here
        if threading.current_thread() is threading.main_thread():
            previous_excepthook(exc_type, exc, tb)

    def unraisablehook(unraisable) -> None:
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
            previous_unraisable(unraisable)  # a lost Ctrl-C is still redelivered (cli.redeliver_lost_interrupts)

    sys.excepthook, threading.excepthook, sys.unraisablehook = excepthook, lambda _args: None, unraisablehook
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    try:
        yield
    except BaseException:
        _failed = True
        raise
    sys.excepthook, threading.excepthook, sys.unraisablehook = (previous_excepthook, previous_thread_hook,
                                                                previous_unraisable)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def base_fingerprint(folder: str | Path | None, seed: int = 0, model_config: dict | None = None) -> str:
    """A content fingerprint of a base model folder: config.json, every safetensors header, and 64
    evenly spaced 64 KiB blocks of every weight file (different weights with equal shapes differ
    everywhere, so sampling catches them without reading 16 GB). Random-init bases hash their recipe."""
    h = hashlib.sha256()
    if not folder:
        h.update(json.dumps({"random_init_seed": seed, "model": model_config}, sort_keys=True).encode())
        return "random:" + h.hexdigest()[:32]
    folder = Path(folder)
    h.update((folder / "config.json").read_bytes())
    for f in sorted(folder.glob("*.safetensors")):
        size = f.stat().st_size
        h.update(f.name.encode() + size.to_bytes(8, "little"))
        with open(f, "rb") as fh:
            header_len = int.from_bytes(fh.read(8), "little")
            h.update(fh.read(min(header_len, 100_000_000)))
            for k in range(64):
                fh.seek(size * k // 64)
                h.update(fh.read(65536))
    return "sha256:" + h.hexdigest()[:32]


def check_same_base(meta: dict, base_model: str, fingerprint: str, where: str | Path) -> None:
    """Adapters only mean something on the base they were trained on: raise CheckpointError when the base
    about to be used (`base_model`, its `fingerprint`) is not the one the checkpoint's metadata records."""
    if meta.get("base_hash") != fingerprint:
        was = meta.get("base_model") or "(random init)"
        raise CheckpointError(f"{where}: checkpoint was trained on base {was} ({meta.get('base_hash')}), "
                              f"not on {base_model or '(random init)'} ({fingerprint})")


def _policy(keep: int):
    return policies.AnyPreservationPolicy([
        policies.LatestN(n=keep),
        policies.BestN(get_metric_fn=lambda m: m[BEST_METRIC], n=1, keep_checkpoints_without_metrics=False),
    ])


def _abstract(tree: Any) -> Any:
    """Shapes, dtypes and shardings of a tree of arrays: what orbax restores onto."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


def _state_tree(state: Any) -> dict:
    return {"step": state.step, "trainable": state.trainable, "opt_state": state.opt_state}


class Checkpointer:
    """Async saves, keep the latest N plus the best by dev nDCG@10."""

    def __init__(self, directory: str | Path, keep: int = 2, async_save: bool = True):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            preservation_policy=_policy(keep), enable_async_checkpointing=async_save, create=True,
            cleanup_tmp_directories=True,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             item_names=ITEMS)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, state: Any, loader_state: dict, meta: dict, metrics: dict | None = None,
             force: bool = False) -> bool:
        step = int(jax.device_get(state.step))
        args = ocp.args.Composite(state=ocp.args.StandardSave(_state_tree(state)),
                                  loader=ocp.args.JsonSave(loader_state), meta=ocp.args.JsonSave(meta))
        return self.manager.save(step, args=args, metrics=metrics, force=force)

    def restore(self, like: State, step: int | None = None) -> tuple[State, dict, dict]:
        """Everything a resumed run needs, onto the shardings of `like` (the current mesh, whatever the saving
        mesh was): the train state, the loader's position and the metadata."""
        step = self._step(step)
        out = self._restore(step, self.manager, state=ocp.args.StandardRestore(_abstract(_state_tree(like))),
                            loader=ocp.args.JsonRestore(), meta=ocp.args.JsonRestore())
        tree = out["state"]
        state = like.replace(step=tree["step"], trainable=tree["trainable"], opt_state=tree["opt_state"])
        return state, out["loader"], out["meta"]

    def restore_trainable(self, like: dict, step: int | None = None) -> tuple[dict, int]:
        """Only the adapters and the score head, onto the shardings of `like`: what rerank, export and parity
        checks use. The optimizer state (twice the trainable size) is never read."""
        step = self._step(step)
        wanted = {"trainable": _abstract(like)}
        restore_args = jax.tree.map(lambda x: ocp.ArrayRestoreArgs(sharding=x.sharding), wanted)
        # a manager of its own: one that saved or fully restored "state" holds it to the standard handler
        manager = ocp.CheckpointManager(self.directory, item_names=ITEMS)
        try:
            out = self._restore(step, manager, state=ocp.args.PyTreeRestore(item=wanted, restore_args=restore_args,
                                                                            partial_restore=True))
        finally:
            manager.close()
        return out["state"]["trainable"], step

    def _step(self, step: int | None) -> int:
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"{self.directory}: no checkpoint to restore")
        return step

    def _restore(self, step: int, manager: ocp.CheckpointManager, **items: Any) -> dict:
        try:
            with quiet_abandoned_work():  # a failed restore leaves reads in flight that print tracebacks
                return manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as e:  # a truncated or missing piece: name the checkpoint, not orbax's internals
            first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
            raise CheckpointError(f"{self.directory / str(step)}: cannot restore the checkpoint of step {step} "
                                  f"({type(e).__name__}: {first})") from None

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def resolve_checkpoint(path: str | Path) -> tuple[Path, int | None]:
    """`runs/x/checkpoints` (latest step), `runs/x` (its checkpoints/), or `runs/x/checkpoints/<step>`."""
    path = Path(path).absolute()
    if path.name.isdigit() and (path / "state").is_dir():
        return path.parent, int(path.name)
    if (path / "checkpoints").is_dir():
        path = path / "checkpoints"
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint directory")
    steps = sorted(int(p.name) for p in path.iterdir() if p.name.isdigit() and (p / "state").is_dir())
    if not steps:
        raise CheckpointError(f"{path}: holds no finished checkpoint")
    return path, None


def run_folder(path: str | Path) -> Path | None:
    """The training run a checkpoint path belongs to (RUN, RUN/checkpoints or RUN/checkpoints/STEP), or None."""
    path = Path(path).resolve()
    for folder in (path, *path.parents[:2]):
        if (folder / "checkpoints").is_dir():
            return folder
    return None


def read_meta(path: str | Path) -> tuple[dict[str, Any], Path, int]:
    """The metadata of a checkpoint (latest step unless the path names one) without restoring arrays."""
    directory, step = resolve_checkpoint(path)
    # quiet: orbax warns that a read-only manager does not save on every read, and a torn folder's reads stray
    with quiet_abandoned_work():
        manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(read_only=True),
                                        item_names=ITEMS)
        try:
            step = manager.latest_step() if step is None else step
            if step is None:
                raise CheckpointError(f"{directory}: holds no finished checkpoint")
            meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        except CheckpointError:
            raise
        except Exception as e:  # a torn or foreign folder
            raise CheckpointError(f"{directory / str(step)}: cannot read checkpoint metadata ({e})") from None
        finally:
            manager.close()
    return meta, directory, step
