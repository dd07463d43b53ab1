"""`r2r teach`: candidates JSONL -> teacher.jsonl through any OpenAI-compatible endpoint.

Exit status: 0 all queries done; 1 some failed (listed in the failures file; a rerun retries only them) or a
fatal endpoint error; 2 bad input or options; 3 stopped at --max-cost (a rerun with a higher budget
continues); 130 interrupted (Ctrl-C), 143 terminated (SIGTERM: the same clean stop). Every rerun
reuses the cache: answers already paid for are never asked again.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys

from r2r_jax.atomic import output_lock, write_json
from r2r_jax.cli_types import (
    Terminated,
    add_renamed,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    unit_float,
)
from r2r_jax.data.candidates import read_candidates
from r2r_jax.data.records import RecordError
from r2r_jax.teacher.generate import PAIR_ORDERS, Teacher, TeachSettings
from r2r_jax.teacher.prompts import RESPONSE_FORMATS, PromptError

EXIT_FAILED, EXIT_USAGE, EXIT_BUDGET, EXIT_INTERRUPTED = 1, 2, 3, 130


# (files written, files read): `r2r` refuses an output that is also an input before the command runs
FILE_ARGUMENTS = (("output", "cache", "failures", "report"), ("candidates",))
EXAMPLE = ("r2r teach --candidates candidates.jsonl --output teacher.jsonl --teacher-model gpt-4o --max-queries 10 "
           "--dry-run")


def add_arguments(p: argparse.ArgumentParser) -> None:
    io = p.add_argument_group("input and output")
    io.add_argument("--candidates", required=True, metavar="FILE",
                    help="rank_llm candidates JSONL (or RankGPT hits JSON)")
    io.add_argument("--output", required=True, metavar="FILE", help="teacher.jsonl; an existing one is resumed")
    io.add_argument("--cache", metavar="FILE", help="SQLite response cache (default: <output>.cache.sqlite)")
    io.add_argument("--failures", metavar="FILE",
                    help="permanent failures, one JSON a line (default: <output>.failures.jsonl)")
    add_renamed(io, "--report", "--summary-json", metavar="FILE", help="also write the run summary as JSON")
    add_renamed(io, "--max-queries", "--limit", type=positive_int, metavar="N", help="only the first N queries")
    ep = p.add_argument_group("endpoint")
    add_renamed(ep, "--teacher-model", "--model", required=True, metavar="NAME",
                help="the teacher's model name at the endpoint, e.g. gpt-4o")
    ep.add_argument("--base-url", metavar="URL",
                    help="OpenAI-compatible base URL, e.g. http://localhost:8000/v1 (default: the openai client's, "
                         "i.e. $OPENAI_BASE_URL or api.openai.com)")
    ep.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="VAR",
                    help="environment variable holding the API key")
    ep.add_argument("--mode", choices=("online", "batch"), default="online",
                    help="online calls, or the Batch API (half price, rounds of up to 24 h)")
    ep.add_argument("--concurrency", type=positive_int, default=8, help="queries in flight at once (online)")
    ep.add_argument("--timeout", type=positive_float, default=120.0, help="seconds per call")
    ep.add_argument("--max-retries", type=non_negative_int, default=6, help="retries of a transient error per call")
    ep.add_argument("--backoff-base", type=non_negative_float, default=1.0,
                    help="first backoff ceiling in seconds (doubles)")
    ep.add_argument("--backoff-max", type=non_negative_float, default=60.0, help="backoff ceiling in seconds")
    ep.add_argument("--poll-interval", type=positive_float, default=30.0, help="seconds between batch status polls")
    ep.add_argument("--batch-max-requests", type=positive_int, default=50_000, help="requests per batch file")
    tg = p.add_argument_group("teaching")
    tg.add_argument("--top-k", type=positive_int, default=20, help="candidates per query the teacher ranks")
    tg.add_argument("--window", type=positive_int, default=20, help="passages per ranking call (RankGPT: 20)")
    tg.add_argument("--step", type=positive_int, default=10,
                    help="window step, bottom to top (RankGPT: 10)")
    tg.add_argument("--top-m", type=non_negative_int, default=5,
                    help="comparison reasons among the final top-m (0: none)")
    tg.add_argument("--pairs", choices=("adjacent", "sampled"), default="adjacent",
                    help="adjacent pairs of the top-m, or --num-pairs pairs sampled from it")
    tg.add_argument("--pair-order", choices=PAIR_ORDERS, default="first-stage",
                    help="how a compared pair is shown: first-stage order (default; [1] does not reveal the ranking) "
                         "or ranking order (outputs started before this option existed)")
    tg.add_argument("--num-pairs", type=non_negative_int, default=5, help="sampled pairs per query (--pairs sampled)")
    tg.add_argument("--seed", type=non_negative_int, default=0, help="seed of the pair sampling")
    tg.add_argument("--prompt-version", default="v1", help="prompts/rank_<v>.txt and compare_<v>.txt")
    tg.add_argument("--preset", choices=tuple(PRESETS),
                    help="r2r-authors: the shape of the R2R authors' teacher protocol, in this project's own wording "
                         "— one call over each query's first-stage top 5, a direct and a listwise reason per "
                         "passage, no pairwise stage (sets --prompt-version, --top-k, --window, --step and "
                         "--top-m; docs/teacher.md says where it differs)")
    tg.add_argument("--max-words", type=positive_int, default=300, help="words of a passage shown to the teacher")
    tg.add_argument("--temperature", type=non_negative_float, default=0.0, help="the teacher's sampling temperature")
    tg.add_argument("--max-tokens", type=positive_int, default=4096, help="max_completion_tokens per call")
    tg.add_argument("--response-format", choices=RESPONSE_FORMATS, default="json_schema",
                    help="structured output (json_schema), JSON mode, or plain text for endpoints with neither")
    tg.add_argument("--max-reasks", type=non_negative_int, default=2,
                    help="re-asks after an unusable answer")
    co = p.add_argument_group("cost")
    co.add_argument("--price-in", type=non_negative_float,
                    help="USD per 1M prompt tokens (default: known model prices)")
    co.add_argument("--price-out", type=non_negative_float, help="USD per 1M completion tokens")
    co.add_argument("--batch-discount", type=unit_float, default=0.5, help="price factor in batch mode")
    co.add_argument("--max-cost", type=non_negative_float,
                    help="stop before spending more than this many USD in this run")
    co.add_argument("--dry-run", action="store_true", help="estimate calls, tokens and cost; call nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


# teaching protocols by name: the settings each one fixes
PRESETS = {"r2r-authors": {"prompt_version": "r2r", "top_k": 5, "window": 5, "step": 5, "top_m": 0}}


def _settings(args: argparse.Namespace) -> TeachSettings:
    settings = TeachSettings(
        model=args.teacher_model, prompt_version=args.prompt_version, top_k=args.top_k, window=args.window,
        step=args.step, top_m=args.top_m, pairs=args.pairs, num_pairs=args.num_pairs, seed=args.seed,
        pair_order=args.pair_order,
        max_words=args.max_words, temperature=args.temperature, max_tokens=args.max_tokens,
        response_format=args.response_format, max_reasks=args.max_reasks)
    return dataclasses.replace(settings, **PRESETS[args.preset]) if args.preset else settings


def cache_path(args: argparse.Namespace) -> str:
    return args.cache or f"{args.output}.cache.sqlite"


def failures_path(args: argparse.Namespace) -> str:
    return args.failures or f"{args.output}.failures.jsonl"


def derived_outputs(args: argparse.Namespace) -> dict[str, str | None]:
    """The default cache and failures paths (derived from --output): `r2r` refuses them too when they are an
    input."""
    return {"--cache (default <output>.cache.sqlite)": None if args.cache else cache_path(args),
            "--failures (default <output>.failures.jsonl)": None if args.failures else failures_path(args)}


def _write_json(path: str, obj: dict) -> None:
    write_json(path, obj)


def run(args: argparse.Namespace) -> int:
    """Teach; a real run holds its output and its cache (`atomic.output_lock`) from reading what is done to the
    summary, so a second `r2r teach` on either is refused instead of appending the same queries again."""
    if args.dry_run:
        return _run(args)
    with output_lock(args.output, "r2r teach"), output_lock(cache_path(args), "r2r teach"):
        return _run(args)


def check_base_url(url: str | None) -> None:
    """An endpoint URL the client can call (http or https, with a host): a typo found now, not as every query
    failing to connect."""
    from urllib.parse import urlparse

    if url is None:
        return
    parts = urlparse(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in url):
        raise ValueError(f"--base-url {url!r} is not an http(s) URL, e.g. http://localhost:8000/v1")


def _run(args: argparse.Namespace) -> int:
    from r2r_jax.teacher.cost import CostMeter, prices_for
    from r2r_jax.teacher.output import TeacherOutput, read_done
    from r2r_jax.teacher.summary import Stats

    settings = _settings(args)
    stats = Stats()
    try:
        check_base_url(args.base_url)
        teacher = Teacher(settings, stats)
        queries = read_candidates(args.candidates)
        if args.max_queries is not None:
            queries = queries[:args.max_queries]
        done = {r.qid for r in read_done(args.output, settings)}
    except (ValueError, RecordError, PromptError, OSError) as e:
        print(f"r2r teach: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    todo = [q for q in queries if q.qid not in done]
    discount = args.batch_discount if args.mode == "batch" else 1.0
    prices = prices_for(args.teacher_model, args.price_in, args.price_out)
    if args.dry_run:
        from r2r_jax.teacher.estimate import estimate_run, format_estimate

        print(format_estimate(estimate_run(teacher, todo, prices, discount), args.teacher_model, args.mode))
        if done:
            print(f"  ({len(done)} queries already in {args.output} are skipped)")
        return 0
    api_key = os.environ.get(args.api_key_env)
    if not api_key:
        print(f"r2r teach: error: environment variable {args.api_key_env} is not set (it holds the API key; "
              "any placeholder works for a local server without authentication)", file=sys.stderr)
        return EXIT_USAGE
    try:
        meter = CostMeter(prices, args.max_cost, discount)
    except ValueError as e:
        print(f"r2r teach: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    # a preempted job or `timeout` sends SIGTERM: stop as Ctrl-C does (summary, failures file, exit 143)
    received: list[int] = []

    def interrupt(signum, _frame):
        received.append(signum)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        code = _teach(args, teacher, stats, meter, queries, todo, api_key, TeacherOutput(args.output, settings))
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 128 + received[0] if received and code == EXIT_INTERRUPTED else code


def _teach(args, teacher, stats, meter, queries, todo, api_key, output) -> int:
    from r2r_jax.teacher.cache import ResponseCache
    from r2r_jax.teacher.client import RetryPolicy, TeacherClient
    from r2r_jax.teacher.output import OrderedAppender, write_failures
    from r2r_jax.teacher.summary import build_summary, format_summary

    cache = ResponseCache(cache_path(args))
    policy = RetryPolicy(args.max_retries, args.backoff_base, args.backoff_max, args.timeout)
    client = TeacherClient(args.base_url, api_key, cache, meter, stats, policy, max_in_flight=args.concurrency)
    appender = OrderedAppender(output, len(todo))
    progress = not args.no_progress
    try:
        if args.mode == "online":
            from r2r_jax.teacher.online import run_online

            outcome = run_online(teacher, client, todo, appender, args.concurrency, progress)
        else:
            from r2r_jax.teacher.batch import BatchRunner

            outcome = BatchRunner(teacher, client, args.poll_interval, args.batch_max_requests, progress
                                  ).run(todo, appender)
        if not outcome.failures and not outcome.stopped:
            output.put_in_order([q.qid for q in queries])
    finally:
        output.close()
        cache.close()
    failures = failures_path(args)
    write_failures(failures, outcome.failures)
    counts = {"total": len(queries), "already_done": len(queries) - len(todo), **outcome.counts}
    summary = build_summary(stats, meter, counts, args.mode, outcome.stopped)
    print(f"r2r teach: {args.output}\n{format_summary(summary)}", file=sys.stderr)
    if args.report:
        _write_json(args.report, summary)
    if outcome.interrupted:
        print("r2r teach: interrupted; rerun the same command to continue (cached answers are free)",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    if outcome.fatal:
        return EXIT_FAILED
    if outcome.stopped:
        print("r2r teach: stopped at the budget; rerun with a higher --max-cost to continue", file=sys.stderr)
        return EXIT_BUDGET
    if outcome.failures:
        print(f"r2r teach: {len(outcome.failures)} queries failed, listed in {failures}; "
              "a rerun retries only them", file=sys.stderr)
        return EXIT_FAILED
    return 0
