"""Atomic output files: write to a temporary name beside the target, then rename.

A crash or an exception leaves either the old file or none — never a half-written one that looks
complete. Files get the usual permissions (0666 less the umask), not mkstemp's 0600. Folders (exports, bases,
indexes) are staged beside the target and renamed the same way, and `check_output_folder` refuses outputs
that would replace an input or a folder this project did not write. `folder_lock` and `output_lock` keep a
second job out of a folder or output that a job is writing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
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


LOCK_FILE = ".r2r.lock"  # in a folder an r2r job works in, while it works there


@contextlib.contextmanager
def folder_lock(folder: str | Path, command: str) -> Iterator[Path]:
    """Hold `folder` for this job: a second r2r job that wants it is refused (OutputRefused) with one line
    naming the folder and the holder's PID, instead of both writing into it and mixing their outputs.

    The lock is `flock` on `folder/.r2r.lock`, so it is the kernel's: a job that dies, even by SIGKILL, holds
    nothing, and the file it leaves blocks no one. The file names the holder's PID and command while held and
    is removed on release; the folder is made if needed, and removed again if the job left it empty."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputRefused(f"{folder} is a file, not a folder")
    with _made(folder):
        with _flock(folder / LOCK_FILE, str(folder), command):
            yield folder


@contextlib.contextmanager
def output_lock(path: str | Path, command: str) -> Iterator[Path]:
    """Hold the output `path` (a file or a folder written whole) for this job, as `folder_lock` does, through
    a hidden `.<name>.r2r-lock` beside it: an output folder is staged beside its target and renamed onto it, so
    the lock cannot live inside."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # as the writers do: kept, like the folder they write into
    with _flock(path.parent / f".{path.name}.r2r-lock", str(path), command):
        yield path


@contextlib.contextmanager
def _made(folder: Path) -> Iterator[None]:
    """`folder` made (with its parents) for the block if it is missing, and removed after it if empty then: a
    job refused before it wrote anything leaves no folder behind."""
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield
    finally:
        if made:
            with contextlib.suppress(OSError):  # not empty (the job wrote there) or already gone
                folder.rmdir()


@contextlib.contextmanager
def _flock(lock: Path, what: str, command: str) -> Iterator[None]:
    """An exclusive, non-blocking `flock` on the file `lock` (made if missing), naming this process in it; a
    lock someone holds is refused with their PID, read from the file."""
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666 & ~current_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode("utf-8", "replace").split()
            os.close(fd)
            pid = f"pid {holder[0]}" if holder else "pid unknown"
            raise OutputRefused(f"{what} is in use by another r2r job ({pid}); wait for it to finish, or choose "
                                "another output") from None
        if _same_file(lock, fd):
            break
        os.close(fd)  # its holder removed the file as we opened it: lock the file that is there now
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {command}\n".encode())
        yield
    finally:
        if _same_file(lock, fd):  # a job that removed the folder may have let another job make a new lock
            lock.unlink(missing_ok=True)
        os.close(fd)  # releases the lock


def _same_file(path: Path, fd: int) -> bool:
    try:
        on_disk, held = os.stat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


def overlaps(a: str | Path, b: str | Path) -> bool:
    """Whether two paths are the same or one lies inside the other (after resolving links and `..`; a link that
    loops stays as it is, where `Path.resolve` would raise)."""
    ra, rb = Path(os.path.realpath(a)), Path(os.path.realpath(b))
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


def check_output_files(args: Any, outputs: Sequence[str], inputs: Sequence[str],
                       derived: Mapping[str, str | Path | None] | None = None) -> None:
    """Refuse, before any work, an output file that is also one of the command's inputs (writing it would
    destroy the input) or another of its outputs. `outputs` and `inputs` name argparse destinations; `derived`
    maps a name for messages to each path the command writes without a flag naming it (a default derived from
    --output, a working folder beside it), so those are checked too. Paths that are, contain or lie inside
    one another count as the same."""
    def flag(dest: str) -> str:
        return "--" + dest.replace("_", "-")

    named = [(flag(d), getattr(args, d, None)) for d in outputs] + list((derived or {}).items())
    sources = [(flag(d), getattr(args, d, None)) for d in inputs]
    for out, target in named[: len(outputs)]:
        if target:
            check_file_target(out, target)
    for i, (out, target) in enumerate(named):
        if not target:
            continue
        for other, path in sources + named[i + 1:]:
            if path and overlaps(target, path):
                raise OutputRefused(f"{out} {target} is also {other}; writing it would destroy that file: choose "
                                    "another path")


def check_file_target(flag: str, target: str | Path) -> None:
    """Refuse, before any work, an output file that cannot be written: a folder is there, or something on its
    way is a file. Otherwise the failure comes at the end, naming the temporary file the writer used."""
    path = Path(target)
    if path.is_dir():
        raise OutputRefused(f"{flag} {target} is a folder; give the path of a file to write")
    above = next((p for p in path.absolute().parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise OutputRefused(f"{flag} {target}: {above} is a file, not a folder")


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
