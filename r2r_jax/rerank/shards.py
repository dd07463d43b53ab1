"""A rerank job that survives being killed: queries in shards, each shard's results on disk as it finishes.

A corpus-size job (MS MARCO dev: ~7k queries x 1,000 passages) runs for hours on preemptible machines. The
job reads its queries as a stream, `shard_size` at a time, and after each shard process 0 writes the
shard's TREC lines (and explanations) atomically into `<output>.shards/`. Run again with the same
arguments, it skips the shards already there — no query is scored twice — and when every shard is done it
writes the one TREC run (and explanations JSONL) in input order, then removes the shard folder it made.
Host memory holds one shard, whatever the number of queries.

`job.json` in the folder records what the shards were made from (inputs, student, settings that change a
score or a reason); a run whose settings differ is refused rather than mixed with them, and while a job runs
process 0 holds the folder (`shard_folder_held`, taken before the model loads), so a second job with the same
--output is refused at once too. A job that fails before its first shard takes its `job.json` with it. Every
process follows process 0's list of finished shards (sent through JAX's collectives: no shared file system
needed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import jax

from r2r_jax.atomic import LOCK_FILE, OutputRefused, atomic_write, folder_lock, write_json, write_jsonl
from r2r_jax.data.candidates import QueryCandidates
from r2r_jax.data.templates import TruncationStats
from r2r_jax.rerank.job import RerankResult, explanation_records, gather_from_all, with_first_stage_tail
from r2r_jax.retrieval.trec import write_run

JOB_FILE = "job.json"


class ShardMismatch(ValueError):
    """The shard folder holds results of a different job, or another job is working in it."""


def shard_dir(output: str | Path) -> Path:
    return Path(f"{output}.shards")


def file_identity(path: str | Path) -> dict:
    """What tells an input file apart without reading it again: its absolute path, size and change time."""
    stat = Path(path).stat()
    return {"path": str(Path(path).absolute()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


@dataclass
class ShardedOutcome:
    queries: int = 0  # in the finished run
    reranked: int = 0  # by this invocation (the rest came from earlier shards)
    resumed_shards: int = 0
    docs: int = 0  # scored by this invocation
    score_seconds: float = 0.0
    explain_seconds: float = 0.0
    explained: int = 0  # reasons decoded by this invocation
    truncation: TruncationStats = field(default_factory=TruncationStats)

    @property
    def docs_per_second(self) -> float:
        return self.docs / self.score_seconds if self.score_seconds > 0 else float("nan")


def _shards(items: Iterable[tuple[QueryCandidates, list[str]]], size: int) -> Iterator[list]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def _name(index: int, suffix: str) -> str:
    return f"shard-{index:06d}.{suffix}"


def _open_folder(folder: Path, job: dict) -> set[int]:
    """Process 0: the finished shards of this job (creating the folder for a new one)."""
    fingerprint = hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()
    record = folder / JOB_FILE
    if record.is_file():
        held = json.loads(record.read_text())
        if held.get("fingerprint") != fingerprint:
            changed = sorted(k for k in set(job) | set(held.get("job", {})) if job.get(k) != held["job"].get(k))
            raise ShardMismatch(f"{folder} holds shards of a different job (changed: {', '.join(changed)}); "
                                "run with the same arguments to resume, or remove that folder to start over")
        return {int(p.name.split("-")[1].split(".")[0]) for p in folder.glob("shard-*.trec")}
    if any(p.name != LOCK_FILE for p in folder.iterdir()):  # removed at the end: never take over another folder
        raise ShardMismatch(f"{folder} exists and holds no {JOB_FILE}: it is not an r2r rerank shard folder; move "
                            "it or choose another --output")
    write_json(record, {"fingerprint": fingerprint, "job": job})
    return set()


@contextlib.contextmanager
def shard_folder_held(output: str | Path) -> Iterator[None]:
    """Process 0 holds `<output>.shards/` (made if new) for the block; the others write nothing. Taken before
    the model loads, so a second job with the same --output is refused in a second, not after a load."""
    with contextlib.ExitStack() as stack:
        if jax.process_index() == 0:
            try:
                stack.enter_context(folder_lock(shard_dir(output), "r2r rerank"))
            except OutputRefused as e:  # another job holds it: bad input, as a shard folder of another job is
                raise ShardMismatch(str(e)) from None
        yield


def run_sharded(rerank_shard: Callable[[list[QueryCandidates]], RerankResult],
                items: Iterable[tuple[QueryCandidates, list[str]]], output: str | Path, *, job: dict,
                shard_size: int, tag: str = "r2r", explanations: str | Path | None = None) -> ShardedOutcome:
    """Rerank `items` ((query, first-stage docids kept below the reranked ones)) shard by shard with
    `rerank_shard`, resuming from the shards already on disk; then the final run (and explanations). The
    caller holds the shard folder (`shard_folder_held`)."""
    folder, main = shard_dir(output), jax.process_index() == 0
    new = main and not (folder / JOB_FILE).exists()
    try:
        return _run_sharded(rerank_shard, items, output, folder, main, job, shard_size, tag, explanations)
    except BaseException:
        if new and not any(folder.glob("shard-*")):  # nothing to resume: leave no job.json behind
            (folder / JOB_FILE).unlink(missing_ok=True)
        raise


def _run_sharded(rerank_shard: Callable[[list[QueryCandidates]], RerankResult],
                 items: Iterable[tuple[QueryCandidates, list[str]]], output: str | Path, folder: Path, main: bool,
                 job: dict, shard_size: int, tag: str, explanations: str | Path | None) -> ShardedOutcome:
    done = sorted(_open_folder(folder, job)) if main else []
    done = set(gather_from_all({"done": done})[0]["done"])  # every process follows process 0's list
    outcome = ShardedOutcome(resumed_shards=len(done))
    count = 0
    for index, shard in enumerate(_shards(items, shard_size)):
        count += len(shard)
        if index in done:
            continue
        result = rerank_shard([qc for qc, _ in shard])
        run = with_first_stage_tail(result.run, {qc.qid: tail for qc, tail in shard})
        outcome.reranked += len(shard)
        outcome.docs += result.docs
        outcome.score_seconds += result.score_seconds
        outcome.explain_seconds += result.explain_seconds
        outcome.explained += sum(len(e.direct) + len(e.comparisons) for e in result.explanations.values())
        outcome.truncation.record(*dataclasses.astuple(result.truncation))
        if main:  # explanations first: a shard counts as done once its run is there
            if explanations is not None:
                write_jsonl(folder / _name(index, "explanations.jsonl"),
                            explanation_records(result, [qc for qc, _ in shard]))
            write_run(folder / _name(index, "trec"), run, tag=tag)
    outcome.queries = count
    if main:
        shards = -(-count // shard_size)
        _concatenate(folder, output, "trec", shards)
        if explanations is not None:
            _concatenate(folder, explanations, "explanations.jsonl", shards)
        shutil.rmtree(folder)
    return outcome


def _concatenate(folder: Path, target: str | Path, suffix: str, shards: int) -> None:
    """The shards' files, in shard order, written as one file atomically."""
    parts = [folder / _name(i, suffix) for i in range(shards)]
    missing = [p.name for p in parts if not p.is_file()]
    if missing:
        raise RuntimeError(f"{folder}: shard files missing ({', '.join(missing[:3])}); remove the folder and "
                           "run again")
    with atomic_write(target) as out:
        for part in parts:
            with open(part, encoding="utf-8") as f:
                shutil.copyfileobj(f, out)
