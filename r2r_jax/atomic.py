"""Atomic output files: write to a temporary name beside the target, then rename.

A crash or an exception leaves either the old file or none — never a half-written one that looks
complete. Files get the usual permissions (0666 less the umask), not mkstemp's 0600. Folders (exports, bases,
indexes) are staged beside the target and renamed the same way, and `check_output_folder` refuses outputs
that would replace an input or a folder this project did not write.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any


def current_umask() -> int:
    """The process umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """A temporary path to write (by any library); renamed onto `path` when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~current_umask())
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """An open file (text UTF-8 unless `mode` has 'b'), flushed and fsynced before the rename."""
    with atomic_path(path) as tmp:
        encoding = None if "b" in mode else "utf-8"
        with open(tmp, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


def write_json(path: str | Path, obj: Any, indent: int | None = 1) -> None:
    with atomic_write(path) as f:
        json.dump(obj, f, indent=indent, ensure_ascii=False)
        f.write("\n")


def write_jsonl(path: str | Path, objects: Iterable[Any]) -> int:
    """One JSON object a line, atomically; returns the number of lines."""
    n = 0
    with atomic_write(path) as f:
        for obj in objects:
            f.write(json.dumps(obj, ensure_ascii=False) + "\n")
            n += 1
    return n


class OutputRefused(ValueError):
    """An output path that would overwrite an input or a folder this project did not write (bad input)."""


def overlaps(a: str | Path, b: str | Path) -> bool:
    """Whether two paths are the same or one lies inside the other (after resolving links and `..`)."""
    ra, rb = Path(a).resolve(), Path(b).resolve()
    return ra == rb or ra in rb.parents or rb in ra.parents


def check_output_folder(output: str | Path, *, flag: str, inputs: Iterable[str | Path | None] = (),
                        marker: str | None = None, writer: str = "", overwrite: bool = False) -> None:
    """Refuse, before any work, an output folder that would destroy something the user did not name.

    The output may not be, contain or lie inside any of `inputs`. An existing output is replaced only with
    `overwrite`, and only if it is a folder holding `marker` (the file the writing command leaves), so a plain
    file or someone else's folder is never deleted."""
    for source in inputs:
        if source and Path(source).exists() and overlaps(output, source):
            raise OutputRefused(f"{flag} {output} overlaps the input {source}; choose a folder outside it")
    out = Path(output)
    if not out.exists() and not out.is_symlink():
        return
    if not overwrite:
        raise OutputRefused(f"{flag} {output} already exists; choose another {flag} or pass --overwrite")
    if marker is not None and not (out.is_dir() and (out / marker).is_file()):
        raise OutputRefused(f"{flag} {output} was not written by {writer} (it has no {marker}); --overwrite "
                            "replaces only such a folder, so choose another " + flag)


def check_output_files(args: Any, outputs: Sequence[str], inputs: Sequence[str]) -> None:
    """Refuse, before any work, an output file that is also one of the command's inputs (writing it would
    destroy the input) or another of its outputs. `outputs` and `inputs` name argparse destinations."""
    def flag(dest: str) -> str:
        return "--" + dest.replace("_", "-")

    named = [(d, getattr(args, d, None)) for d in outputs]
    sources = [(d, getattr(args, d, None)) for d in inputs]
    for i, (out, target) in enumerate(named):
        if not target:
            continue
        for other, path in sources + named[i + 1:]:
            if path and overlaps(target, path):
                raise OutputRefused(f"{flag(out)} {target} is also {flag(other)}; writing it would destroy that "
                                    "file: choose another path")


@contextlib.contextmanager
def staged_folder(output: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """A hidden temporary folder beside `output`, renamed onto it when the block succeeds and deleted when
    it fails, so a failed or killed writer never leaves a folder that looks complete. Callers decide with
    `check_output_folder` whether an existing output may be replaced; without `overwrite` it never is."""
    output = Path(output).absolute()
    if output.exists() and not overwrite:
        raise OutputRefused(f"{output} already exists; choose another output or pass --overwrite")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it private
        if output.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{output.name}.old-", dir=output.parent))
            os.replace(output, old / "previous")
            os.replace(tmp, output)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
