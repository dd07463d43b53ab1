"""Named data sets (`r2r data`): a result is reproducible from a set's name, not from a path on one machine.

A data directory (`$R2R_DATA`, default `~/.cache/r2r`) holds one folder per set. The sets this project knows
(`KNOWN_SETS`) are pinned file by file: name, SHA-256, size and a public download URL, so `--dataset dl19` means
the same bytes everywhere, and a file whose hash differs is never used. A user's own BEIR folder becomes a set
too (`retrieval/beir.py` adds it); its folder holds a manifest (`r2r_dataset.json`) with the hashes its files had
when added, since no table can know them.

This module lives in `data/` (below `retrieval/`, `eval/` and `rerank/`) so that every command that reads
candidates, qrels or teacher records can resolve `--dataset`; downloading is `retrieval/fetch.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from r2r_jax.atomic import atomic_path
from r2r_jax.data.records import RecordError

DATA_ENV = "R2R_DATA"
MANIFEST = "r2r_dataset.json"  # in a user set's folder: its kind, source and the hashes of its files

_R2R_REPO = ("https://raw.githubusercontent.com/JoyDajunSpaceCraft/Reason-to-Rank/"
             "4b3dafe45c6e7d84b35df9ab3d197379c6b744db")  # the R2R authors' repository, pinned to a commit
_NIST_DL = "https://trec.nist.gov/data/deep"


@dataclass(frozen=True)
class KnownFile:
    name: str  # the file name inside the set's folder
    role: str  # what commands read it as: candidates, qrels or teacher
    sha256: str
    size: int
    url: str
    format: str = ""  # teacher files: the `r2r import-teacher --format` they are in


@dataclass(frozen=True)
class KnownSet:
    description: str
    files: tuple[KnownFile, ...]


KNOWN_SETS: dict[str, KnownSet] = {
    "dl19": KnownSet("TREC DL 2019 passage: 43 queries, BM25 top 100 with passages (RankGPT hits JSON), NIST qrels", (
        KnownFile("bm25_top100.json", "candidates",
                  "97df0f0a48e7fee75dadeaf3aa92618f8bcfe2609fbf14375b252c21418ec43a", 2_021_767,
                  f"{_R2R_REPO}/prepare_reason_rank/data/RankGPTBM25/msmarco_19_test.json"),
        KnownFile("qrels.txt", "qrels", "8a1f10d550732e4cd91d7fc49846a3784de4040972f583e69285a88f3c5fee92",
                  187_092, f"{_NIST_DL}/2019qrels-pass.txt"))),
    "dl20": KnownSet("TREC DL 2020 passage: 54 queries, BM25 top 100 with passages (RankGPT hits JSON), NIST qrels", (
        KnownFile("bm25_top100.json", "candidates",
                  "63d2517bd7bdc14c51ddf7a867ce80ecaa6ec5860d92c4a4153fdef9574febf8", 2_555_755,
                  f"{_R2R_REPO}/prepare_reason_rank/data/RankGPTBM25/msmarco_20_test.json"),
        KnownFile("qrels.txt", "qrels", "60d4c34561f9687f8f73e0a752ba80ab80159b3e9c1bedd0a351f747ed6f5684",
                  218_617, f"{_NIST_DL}/2020qrels-pass.txt"))),
    "r2r-release": KnownSet("the R2R authors' GPT-4 teacher file: 500 MS MARCO training queries, 5 passages each", (
        KnownFile("r2r_gpt4_msmarco_500.jsonl", "teacher",
                  "c5a5c53f092969f29099d14ec9c814efea3414853379fe1d70218058d09fc79f", 2_324_194,
                  f"{_R2R_REPO}/scripts/train/train_data/msmarco_500.jsonl", format="r2r"),)),
}

# a user's BEIR folder: role -> file inside the set's folder (BEIR's own names)
BEIR_FILES = {"corpus": "corpus.jsonl", "queries": "queries.jsonl", "qrels": "qrels/test.tsv"}

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class DatasetError(RecordError):
    """A named set that is missing, incomplete, unknown or whose bytes differ from the table (bad input: exit 2);
    the message says how to add or fetch what is missing."""


def data_dir() -> Path:
    """`$R2R_DATA`, else `~/.cache/r2r`."""
    return Path(os.environ.get(DATA_ENV) or Path.home() / ".cache" / "r2r")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_name(name: str) -> str:
    """A set name is one plain folder name (it becomes `$R2R_DATA/<name>`)."""
    if not _NAME_RE.fullmatch(name):
        raise DatasetError(f"dataset name {name!r} must be letters, digits, '.', '_' or '-' (not starting with "
                           "'.', '_' or '-')")
    return name


def how_to_get(name: str, files: Iterable[str] | None = None) -> str:
    """The commands that would make `name` (or the given files of it) present."""
    known = KNOWN_SETS.get(name)
    if known is None:
        return f"add your BEIR folder with r2r data add {name} FOLDER --beir"
    names = " ".join(files if files is not None else (f.name for f in known.files))
    return f"run r2r data fetch {name}, or r2r data add {name} {names}"


def read_manifest(name: str) -> dict | None:
    """A user set's manifest, or None when `name` has none (a known set, or nothing)."""
    path = data_dir() / name / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: unreadable manifest ({e}); add the set again with r2r data add") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise DatasetError(f"{path}: not a dataset manifest; add the set again with r2r data add")
    return manifest


def user_sets() -> list[str]:
    """Folders of the data directory that hold a manifest (sets added by `r2r data add ... --beir`)."""
    root = data_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.name not in KNOWN_SETS and (p / MANIFEST).is_file())


def unknown_set(name: str) -> DatasetError:
    """The error for a name that is neither a known set nor one of the user's."""
    names = ", ".join([*KNOWN_SETS, *user_sets()])
    return DatasetError(f"unknown dataset {name!r}: the named sets are {names} (r2r data list); "
                        f"{how_to_get(name)}")


def missing_set(name: str) -> DatasetError:
    """The error for a known set with no folder yet: the one line says how to get it."""
    return DatasetError(f"dataset {name} is not in {data_dir()}: {how_to_get(name)}")


def dataset_file(name: str, role: str) -> Path:
    """The file a command reads as `role` (candidates, qrels, teacher, corpus, queries) from set `name`, checked
    before use: a known set's file must have the table's SHA-256, a user set's file the size its manifest
    recorded (hashing a large corpus at every use would cost more than the check is worth; `r2r data list
    --verify` rehashes it)."""
    check_name(name)
    folder = data_dir() / name
    known = KNOWN_SETS.get(name)
    if known is not None:
        entry = next((f for f in known.files if f.role == role), None)
        if entry is None:
            raise DatasetError(f"dataset {name} has no {role} file (it holds "
                               f"{', '.join(f.name for f in known.files)})")
        path = folder / entry.name
        if not folder.is_dir():
            raise missing_set(name)
        if not path.is_file():
            raise DatasetError(f"dataset {name} has no {entry.name} in {folder}: {how_to_get(name, [entry.name])}")
        if path.stat().st_size != entry.size or sha256_file(path) != entry.sha256:
            raise DatasetError(f"{path} does not match its SHA-256 in the table of named sets: "
                               f"{how_to_get(name, [entry.name])} to replace it")
        return path
    manifest = read_manifest(name)
    if manifest is None:
        raise unknown_set(name)
    rel = BEIR_FILES.get(role) if manifest.get("format") == "beir" else None
    if rel is None:
        hint = (f"; run r2r retrieve --dataset {name} --output candidates.jsonl and pass --candidates "
                "candidates.jsonl" if role == "candidates" else "")
        raise DatasetError(f"dataset {name} (a {manifest.get('format')} set) has no {role} file{hint}")
    path = folder / rel
    recorded = manifest["files"].get(rel, {})
    if not path.is_file() or path.stat().st_size != recorded.get("size"):
        raise DatasetError(f"{path} is missing or changed since it was added: add the set again with "
                           f"r2r data add {name} FOLDER --beir --overwrite")
    return path


def file_states(name: str, verify: bool = False) -> list[tuple[str, int | None, str]]:
    """(file, size, state) for `r2r data list`: a known set's files are always hashed (they are a few MB); a
    user set's are compared by size, and hashed too with `verify`."""
    folder = data_dir() / name
    out = []
    if name in KNOWN_SETS:
        for f in KNOWN_SETS[name].files:
            path = folder / f.name
            if not path.is_file():
                part = path.with_name(path.name + ".part")
                state = f"missing ({part.stat().st_size:,} B downloaded)" if part.is_file() else "missing"
            elif path.stat().st_size == f.size and sha256_file(path) == f.sha256:
                state = "verified"
            else:
                state = "DIFFERS from the table (r2r data fetch replaces it)"
            out.append((f.name, f.size, state))
        return out
    manifest = read_manifest(name) or {"files": {}}
    for rel, meta in manifest["files"].items():
        path = folder / rel
        if not path.is_file() or path.stat().st_size != meta.get("size"):
            state = "missing or changed"
        elif verify:
            state = "verified" if sha256_file(path) == meta.get("sha256") else "CHANGED since it was added"
        else:
            state = "present"
        out.append((rel, meta.get("size"), state))
    return out


def copy_verified(source: Path, target: Path, sha256: str) -> None:
    """Copy `source` to `target` atomically, hashing the bytes as they are written: only bytes that have the
    expected SHA-256 ever appear under the target name (the source could change between check and copy)."""
    digest = hashlib.sha256()
    with atomic_path(target) as tmp:
        with open(source, "rb") as src, open(tmp, "wb") as dst:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                digest.update(chunk)
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        if digest.hexdigest() != sha256:
            raise DatasetError(f"{source} changed while it was copied; {target} not written")


def match_known(name: str, files: Iterable[str | Path]) -> list[tuple[Path, KnownFile]]:
    """Each given file paired with the table entry it is, by file name or else by SHA-256 (so a file keeps its
    download name, e.g. 2019qrels-pass.txt). Every file is checked before anything is written."""
    entries = KNOWN_SETS[name].files
    pairs: list[tuple[Path, KnownFile]] = []
    for given in files:
        path = Path(given)
        if not path.is_file():
            raise DatasetError(f"{path}: {'is a directory, not a file' if path.is_dir() else 'no such file'}")
        digest = sha256_file(path)
        by_name = next((f for f in entries if f.name == path.name), None)
        by_hash = next((f for f in entries if f.sha256 == digest), None)
        entry = by_hash or by_name
        elsewhere = next((f"; it is {other}/{f.name}" for other, known in KNOWN_SETS.items() for f in known.files
                          if f.sha256 == digest), "")
        if entry is None:
            raise DatasetError(f"{path} is not a file of dataset {name}: neither its name nor its SHA-256 "
                               f"{digest} is one of {', '.join(f.name for f in entries)}{elsewhere}")
        if by_hash is None:
            raise DatasetError(f"{path}: SHA-256 {digest} does not match {name}/{entry.name} (expected "
                               f"{entry.sha256}){elsewhere}; nothing added")
        if any(e is entry for _, e in pairs):
            raise DatasetError(f"{path}: {name}/{entry.name} is given twice")
        pairs.append((path, entry))
    return pairs


def add_known(name: str, files: Iterable[str | Path]) -> list[tuple[Path, Path, bool]]:
    """Copy local copies of a known set's files into the data directory; (source, target, copied) per file,
    `copied` False for a file already present with the right hash."""
    pairs = match_known(name, files)
    folder, out = data_dir() / name, []
    try:
        for source, entry in pairs:
            target = folder / entry.name
            present = target.is_file() and target.stat().st_size == entry.size and sha256_file(target) == entry.sha256
            if not present:
                copy_verified(source, target, entry.sha256)
            out.append((source, target, not present))
    except BaseException:
        if folder.is_dir() and not any(folder.iterdir()):  # a failed first copy leaves no empty set folder
            folder.rmdir()
        raise
    return out
