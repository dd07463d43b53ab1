"""A user's BEIR-format folder as a named set: `r2r data add NAME FOLDER --beir`.

BEIR ships each collection as `corpus.jsonl` (`_id`, `title`, `text`), `queries.jsonl` (`_id`, `text`) and
`qrels/<split>.tsv` (a `query-id corpus-id score` header, then one judgement a line). The folder is checked
(every file parses, every judged query has a text) and copied whole into the data directory, so a later
`--dataset NAME` does not depend on where the original lived; the manifest records each file's SHA-256 and size.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from r2r_jax.atomic import staged_folder
from r2r_jax.data.datasets import BEIR_FILES, KNOWN_SETS, MANIFEST, DatasetError, check_name, data_dir, read_manifest
from r2r_jax.retrieval.inputs import iter_corpus, read_queries
from r2r_jax.retrieval.trec import read_qrels


def _check_folder(folder: Path) -> list[str]:
    """The files to copy (relative paths): the three BEIR files plus any other qrels split."""
    if not folder.is_dir():
        raise DatasetError(f"{folder}: {'is a file, not a folder' if folder.exists() else 'no such folder'} "
                           f"(a BEIR folder holds {', '.join(BEIR_FILES.values())})")
    missing = [rel for rel in BEIR_FILES.values() if not (folder / rel).is_file()]
    if missing:
        raise DatasetError(f"{folder} is not a BEIR folder: it has no {', '.join(missing)} (a BEIR folder holds "
                           f"{', '.join(BEIR_FILES.values())})")
    splits = sorted(f"qrels/{p.name}" for p in (folder / "qrels").glob("*.tsv") if p.is_file())
    return ["corpus.jsonl", "queries.jsonl", *splits]


def _copy_hashing(source: Path, target: Path) -> dict:
    digest, size = hashlib.sha256(), 0
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(source, "rb") as src, open(target, "wb") as dst:
        for chunk in iter(lambda: src.read(1 << 20), b""):
            digest.update(chunk)
            dst.write(chunk)
            size += len(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    return {"sha256": digest.hexdigest(), "size": size}


def add_beir(name: str, folder: str | Path, overwrite: bool = False) -> dict:
    """Check and copy a BEIR folder into `$R2R_DATA/<name>` (staged, renamed when complete); its manifest."""
    check_name(name)
    if name in KNOWN_SETS:
        raise DatasetError(f"{name} is one of the named sets this project pins ({', '.join(KNOWN_SETS)}); "
                           "choose another name for your folder")
    folder = Path(folder)
    files = _check_folder(folder)
    target = data_dir() / name
    if target.exists():
        if not overwrite:
            raise DatasetError(f"dataset {name} already exists in {data_dir()}; pass --overwrite to replace it")
        if read_manifest(name) is None:
            raise DatasetError(f"{target} was not added by r2r data add (it has no {MANIFEST}); --overwrite "
                               "replaces only such a folder, so choose another name")
    qrels = read_qrels(folder / BEIR_FILES["qrels"])
    texts = dict(read_queries(folder / BEIR_FILES["queries"]))
    unknown = [qid for qid in qrels if qid not in texts]
    if unknown:
        raise DatasetError(f"{folder / BEIR_FILES['qrels']}: {len(unknown)} judged queries have no text in "
                           f"queries.jsonl, e.g. {unknown[:5]}")
    passages = sum(1 for _ in iter_corpus(folder / BEIR_FILES["corpus"]))
    with staged_folder(target, overwrite=overwrite) as staging:
        hashes = {rel: _copy_hashing(folder / rel, staging / rel) for rel in files}
        manifest = {"name": name, "format": "beir", "source": str(folder.resolve()),
                    "added": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "passages": passages, "queries": len(texts),
                    "judged_queries": len(qrels), "files": hashes}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")  # written last
    return manifest


def judged_queries(name: str, queries: Path, qrels: Path) -> list[tuple[str, str]]:
    """The set's queries that its test qrels judge, in queries.jsonl order: BEIR's queries.jsonl often holds the
    train and dev queries too, and only the judged ones are evaluated."""
    judged = read_qrels(qrels)
    out = [(qid, text) for qid, text in read_queries(queries) if qid in judged]
    if not out:
        raise DatasetError(f"dataset {name}: no query of {queries} is judged in {qrels}")
    return out

