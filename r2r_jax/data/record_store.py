"""Teacher records at corpus scale: tokenized once into a memory-mapped Arrow file, read by index.

A distillation set of 100k-1M queries x 20 passages does not fit in a TPU VM host's memory as Python
objects. `open_store` streams the records (JSONL, Parquet, or a Hugging Face `save_to_disk` folder) in
chunks through the same validation and tokenization as ever (`tokenize_records`), writes the token ids
to an Arrow file with `datasets`' writer, and hands back a `TokenizedStore`: a sequence of
`TokenizedRecord` backed by `datasets.Dataset.from_file` (memory-mapped, so host memory holds only the
pages a batch touches). Random negatives draw from a second Arrow file of every passage (`negatives.py`).

The store is a cache keyed by the source file (path, size, modification time), the data config and the
tokenizer's files; a finished store is a folder renamed into place, so an interrupted build leaves
nothing that a later run would read. Its fingerprint (the hash the loader's resume check compares) is
computed while writing, the same hash `features.fingerprint` gives for the records in memory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from r2r_jax.config import DataConfig
from r2r_jax.data.features import DTYPE, Fingerprint, TokenizedRecord, tokenize_records
from r2r_jax.data.records import RecordError, TeacherRecord, check_readable, read_records, record_from_dict

STORE_VERSION = 1
CHUNK = 1024  # records tokenized per batch call
LIST_FIELDS = ("prompts", "targets", "cmp_prompts", "cmp_targets", "negatives")


def default_cache_dir() -> Path:
    """`$R2R_CACHE_DIR`, else `~/.cache/r2r_jax`: where tokenized record stores are kept."""
    return Path(os.environ.get("R2R_CACHE_DIR") or Path.home() / ".cache" / "r2r_jax") / "records"


def _without_nulls(value):
    """Arrow writes a JSON object as a struct of every key seen in the file, null where a row has none."""
    return {k: v for k, v in value.items() if v is not None} if isinstance(value, dict) else value


def _from_arrow(row: dict) -> dict:
    """A record row as Parquet / `datasets` store it, back to the JSONL schema's shape: objects keyed by
    docid may come as structs (null for other rows' keys) or as maps (lists of key-value pairs)."""
    row = dict(row)
    reasons = row.get("direct_reasons")
    if isinstance(reasons, list):
        row["direct_reasons"] = dict(
            (r["docid"], r["reason"]) if isinstance(r, dict) and "docid" in r else
            (r["key"], r["value"]) if isinstance(r, dict) else tuple(r) for r in reasons)
    else:
        row["direct_reasons"] = _without_nulls(reasons)
    row["teacher"] = _without_nulls(row.get("teacher"))
    return row


def iter_source(path: str | Path) -> Iterator[TeacherRecord]:
    """Validated records of a JSONL file, a Parquet file or a `save_to_disk` folder, streamed in file order;
    a bad record raises `RecordError` naming the file and its line (JSONL) or row (Arrow, from 1)."""
    path = str(path)
    if Path(path).is_dir():
        import datasets

        try:
            dataset = datasets.load_from_disk(path)
        except FileNotFoundError as e:
            raise RecordError(f"not a records file nor a `save_to_disk` folder ({e})", path=path) from None
        if isinstance(dataset, datasets.DatasetDict):
            raise RecordError(f"holds splits {sorted(dataset)}; give the folder of one split", path=path)
        rows: Iterator[dict] = (row for batch in dataset.iter(batch_size=CHUNK) for row in _rows(batch))
    elif path.endswith(".parquet"):
        check_readable(path)
        rows = _parquet_rows(path)
    else:
        yield from read_records(path)
        return
    for number, row in enumerate(rows, start=1):
        yield record_from_dict(_from_arrow(row), path, number)


def _parquet_rows(path: str) -> Iterator[dict]:
    """Rows of a Parquet file, a batch at a time; a file Arrow cannot read is a RecordError naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=CHUNK):
            yield from batch.to_pylist()
    except (pa.ArrowException, OSError) as e:
        raise RecordError(f"not a readable Parquet file ({e})", path=path) from None


def _rows(columns: dict[str, list]) -> Iterator[dict]:
    names = list(columns)
    for values in zip(*(columns[n] for n in names), strict=True):
        yield dict(zip(names, values, strict=True))


def _chunks(records: Iterator[TeacherRecord]) -> Iterator[list[TeacherRecord]]:
    chunk: list[TeacherRecord] = []
    for rec in records:
        chunk.append(rec)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class ArrowRows:
    """Rows of an Arrow file written by `datasets`' writer, memory-mapped (`datasets.Dataset.from_file`) and read
    one at a time straight from its record batches: the batch by bisection on their offsets, then the row."""

    def __init__(self, filename: Path):
        import datasets

        self._batches = datasets.Dataset.from_file(str(filename)).data.table.to_batches()  # zero-copy views
        self._starts = np.cumsum([0] + [len(b) for b in self._batches])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def value(self, i: int, column: str):
        return self.row(i, (column,))[column]

    def row(self, i: int, columns: Sequence[str]) -> dict:
        k = int(np.searchsorted(self._starts, i, side="right")) - 1
        batch, j = self._batches[k], i - int(self._starts[k])
        return {c: batch.column(c)[j].as_py() for c in columns}


class ArrowPassages:
    """The `PassageTable` of a record set, memory-mapped: (owner record, text) per passage."""

    def __init__(self, filename: Path):
        self._rows = ArrowRows(filename)

    def __len__(self) -> int:
        return len(self._rows)

    def owner(self, i: int) -> int:
        return self._rows.value(i, "owner")

    def text(self, i: int) -> str:
        return self._rows.value(i, "text")


class TokenizedStore(Sequence[TokenizedRecord]):
    """The tokenized records of a store folder, memory-mapped; `store[i]` is a `TokenizedRecord`."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.meta = json.loads((folder / "meta.json").read_text())
        self.fingerprint: str = self.meta["fingerprint"]
        self._rows = ArrowRows(folder / "records.arrow")

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index):  # type: ignore[override]
        if not isinstance(index, int | np.integer) or not 0 <= index < len(self):
            raise IndexError(f"record index {index!r} of a store of {len(self)}")
        row = self._rows.row(int(index), ("qid", "ranks", *LIST_FIELDS))
        lists = {k: [np.asarray(x, DTYPE) for x in row[k]] for k in LIST_FIELDS}
        return TokenizedRecord(row["qid"], ranks=np.asarray(row["ranks"], DTYPE), **lists)


def _features():
    import datasets

    ids = datasets.List(datasets.List(datasets.Value("int32")))
    return datasets.Features({"qid": datasets.Value("string"), "ranks": datasets.List(datasets.Value("int32")),
                              **{k: ids for k in LIST_FIELDS}})


def _tokenizer_hash(folder: str) -> str:
    """The tokenizer's own files (weights in the same folder are left out)."""
    h = hashlib.sha256()
    for f in sorted(Path(folder).iterdir()):
        if f.is_file() and f.suffix not in (".safetensors", ".bin", ".gguf", ".pt", ".msgpack"):
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def store_key(source: str | Path, tokenizer_path: str, cfg: DataConfig) -> str:
    """What the tokenized records depend on: the source's identity, the data config, the tokenizer."""
    stat = Path(source).stat()
    parts = {"version": STORE_VERSION, "source": str(Path(source).resolve()), "size": stat.st_size,
             "mtime_ns": stat.st_mtime_ns, "tokenizer": _tokenizer_hash(tokenizer_path),
             "data": {k: v for k, v in dataclasses.asdict(cfg).items()
                      if k not in ("train_path", "tokenizer", "dev_candidates", "dev_qrels", "cache_dir")}}
    if Path(source).is_dir():  # a save_to_disk folder: its data files' sizes and times
        parts["files"] = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(Path(source).iterdir())]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _write_passages(source: str | Path, filename: Path) -> None:
    import datasets
    from datasets.arrow_writer import ArrowWriter

    count = 0
    features = datasets.Features({"owner": datasets.Value("int64"), "text": datasets.Value("string")})
    with ArrowWriter(features=features, path=str(filename)) as writer:
        for chunk in _chunks(iter_source(source)):
            writer.write_batch({"owner": [count + r for r, rec in enumerate(chunk) for _ in rec.candidates],
                                "text": [c.text for rec in chunk for c in rec.candidates]})
            count += len(chunk)
        writer.finalize()


def _build(source: str | Path, tokenizer, cfg: DataConfig, folder: Path) -> None:
    from datasets.arrow_writer import ArrowWriter

    passages = None
    if cfg.random_negatives or cfg.hard_negatives:  # hard slots a record cannot fill take random passages
        _write_passages(source, folder / "passages.arrow")
        passages = ArrowPassages(folder / "passages.arrow")
    fingerprint, count = Fingerprint(), 0
    with ArrowWriter(features=_features(), path=str(folder / "records.arrow")) as writer:
        for chunk in _chunks(iter_source(source)):
            for rec in tokenize_records(chunk, tokenizer, cfg, passages=passages, start=count):
                fingerprint.update(rec)
                writer.write({"qid": rec.qid, "ranks": rec.ranks.tolist(),
                              **{k: [x.tolist() for x in getattr(rec, k)] for k in LIST_FIELDS}})
            count += len(chunk)
        writer.finalize()
    (folder / "meta.json").write_text(json.dumps({"version": STORE_VERSION, "records": count,
                                                  "fingerprint": fingerprint.hexdigest(), "source": str(source)}))


def open_store(source: str | Path, tokenizer, tokenizer_path: str, cfg: DataConfig,
               cache_dir: str | Path | None = None) -> TokenizedStore:
    """The tokenized store of `source` under `cfg` and the tokenizer, built first when not cached."""
    if not Path(source).is_dir():
        check_readable(source)
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    folder = root / store_key(source, tokenizer_path, cfg)
    if (folder / "meta.json").is_file():
        return TokenizedStore(folder)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=root))
    try:
        _build(source, tokenizer, cfg, staging)
        try:
            staging.rename(folder)
        except OSError:  # another process (another host on a shared disk) finished the same store first
            if not (folder / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return TokenizedStore(folder)
