"""`r2r rerank`: rerank first-stage candidates with a trained student; a TREC run and, on request, reasons.

    r2r rerank --checkpoint runs/x --candidates cands.jsonl --output run.trec --explain-top 5
    r2r rerank --model hf_seq_cls/ --run bm25.trec --corpus corpus.jsonl --queries q.tsv --output run.trec

Inputs are read and checked before the model loads, so a bad file fails in seconds, not after a 16 GB load.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from r2r_jax.cli_types import add_mesh_arguments, non_negative_float, non_negative_int, positive_int, unit_float
from r2r_jax.data.records import RecordError, library_error, one_line
from r2r_jax.rerank.explain_plan import COMPARISON_FORMATS

# (files written, files read): `r2r` refuses an output that is also an input before the command runs
FILE_ARGUMENTS = (("output", "explanations"), ("candidates", "run", "corpus", "queries"))
EXAMPLE = "r2r rerank --checkpoint runs/r2r --dataset dl19 --output dl19.trec --explain-top 3"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("student (one of)")
    which = src.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", metavar="RUN",
                       help="training checkpoint: run dir, its checkpoints/ (latest step) or checkpoints/<step>")
    which.add_argument("--model", metavar="DIR", help="merged Hugging Face folder with score.weight (seq-cls export)")
    src.add_argument("--base-model", metavar="DIR", help="with --checkpoint: the HF base, if it moved since training")
    src.add_argument("--tokenizer", metavar="DIR", help="tokenizer folder (default: the checkpoint's or the model's)")
    src.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"),
                     help="with --model: weights and compute dtype (default bfloat16)")
    src.add_argument("--attention", default="xla", choices=("xla", "loop", "cudnn", "splash"),
                     help="with --model (loop: CPU hosts)")
    src.add_argument("--unroll-layers", action="store_true",
                     help="with --model: unrolled decoder layers (faster on CPU hosts). Default: scanned, which "
                          "compiles faster on accelerators; both run the final layer at the scored position only")

    inp = parser.add_argument_group("candidates (one of)")
    inp.add_argument("--candidates", metavar="FILE", help="rank_llm request JSONL or RankGPT hits JSON")
    inp.add_argument("--dataset", metavar="NAME", help="a named set's BM25 top 100 as --candidates (r2r data list)")
    inp.add_argument("--run", metavar="RUN", help="first-stage TREC run (with --corpus and --queries)")
    inp.add_argument("--corpus", metavar="FILE", help="passages: JSONL {id, contents} or TSV docid<TAB>text")
    inp.add_argument("--queries", metavar="FILE", help="queries: TSV qid<TAB>text, JSONL or TREC topics")
    inp.add_argument("--depth", type=positive_int,
                     help="rerank each query's top DEPTH candidates; the rest follow in first-stage order, below "
                          "them (rank_llm's convention; the R2R authors reranked the top 5). Default: the "
                          "student's stored default depth, else all")
    inp.add_argument("--max-queries", type=positive_int, metavar="N", help="only the first N queries (a quick look)")
    inp.add_argument("--shard-size", type=positive_int, default=1000, metavar="N",
                     help="queries per shard (default 1000): each finished shard is kept in <output>.shards/, "
                          "so a killed job run again with the same arguments resumes after the last one")

    rank = parser.add_argument_group(
        "ranking (default: the setting stored with the student as rerank_default.json by `r2r tune-fusion`, "
        "chosen on held-out queries; without one, the student's scores alone)")
    how = rank.add_mutually_exclusive_group()
    how.add_argument("--student-only", action="store_true",
                     help="rank by the student's scores alone, ignoring the stored default (its depth too)")
    how.add_argument("--fusion", choices=("student", "interpolate", "rrf"),
                     help="combine with the first stage's scores: interpolate = weighted sum of per-query "
                          "z-scores, rrf = weighted reciprocal-rank fusion (k=60); overrides the stored default")
    rank.add_argument("--fusion-weight", type=unit_float, metavar="W",
                      help="with --fusion: the student's share in [0, 1] (default 0.5)")

    out = parser.add_argument_group("output")
    out.add_argument("--output", required=True, metavar="RUN", help="reranked TREC run to write")
    out.add_argument("--tag", default="r2r", help="run tag, the TREC run's last column (default r2r)")
    which_ranks = out.add_mutually_exclusive_group()
    which_ranks.add_argument("--explain-top", type=non_negative_int, default=0, metavar="K",
                             help="decode a direct reason for each of the top K and comparison reasons among them "
                                  "(default 0: none)")
    which_ranks.add_argument("--explain-ranks", metavar="RANKS",
                             help="explain these ranks instead, e.g. 1-10,91-100 (the top and the bottom of a "
                                  "top 100); ranges are cut at each list's end and must lie within --depth")
    out.add_argument("--explain-comparisons", choices=COMPARISON_FORMATS, default="window",
                     help="window (default): listwise reasons over windows of at most 5 explained passages, as in "
                          "the R2R release; pair: one reason per adjacent pair, as `r2r teach` writes them; "
                          "none: direct reasons only. Use the format the student was trained on")
    out.add_argument("--explanations", metavar="JSONL",
                     help="per-query reranked lists, scores and reasons (default with --explain-top/-ranks: "
                          "<output stem>.explanations.jsonl)")

    gen = parser.add_argument_group("batching and decoding")
    gen.add_argument("--no-share-prefix", dest="share_prefix", action="store_false",
                     help="score every prompt whole (default: each query's common prompt prefix runs once, "
                          "then only each candidate's own tokens; the same scores)")
    gen.add_argument("--batch-size", type=positive_int, default=32, metavar="N",
                     help="sequences per batch, rounded up to a multiple of the data-parallel size (default 32)")
    gen.add_argument("--max-new-tokens", type=positive_int, metavar="N",
                     help="reason length limit (default: the trained target length)")
    gen.add_argument("--temperature", type=non_negative_float, default=0.0, metavar="T",
                     help="0 = greedy; > 0 samples")
    gen.add_argument("--seed", type=non_negative_int, default=0, metavar="N",
                     help="sampling seed (with --temperature > 0)")
    gen.add_argument("--prompt-template", metavar="TEMPLATE",
                     help="scoring template, fields {query} {passage} (default: trained one)")
    gen.add_argument("--comparison-template", metavar="TEMPLATE",
                     help="comparison template, fields {query} {passages} (default: trained one)")
    gen.add_argument("--max-prompt-len", type=positive_int, metavar="N",
                     help="scoring prompt tokens (default: trained value)")
    gen.add_argument("--max-comparison-prompt-len", type=positive_int, metavar="N",
                     help="comparison prompt tokens (default: trained)")

    mesh = parser.add_argument_group("devices (this host's; each host reranks its share of the queries)")
    add_mesh_arguments(mesh)


def read_inputs(args: argparse.Namespace):
    """(a function that streams (candidates cut to --depth, the first-stage docids below the cut) per query,
    a name for messages, the input files) from --candidates or --run/--corpus/--queries. A rank_llm JSONL
    file is streamed; a run needs its corpus passages in memory and is read whole."""
    from itertools import islice

    from r2r_jax.data.candidates import iter_candidates
    from r2r_jax.data.datasets import dataset_file
    from r2r_jax.data.records import check_regular
    from r2r_jax.inference.fusion import split_at_depth
    from r2r_jax.retrieval.trec import read_run, read_run_candidates

    if getattr(args, "dataset", None):  # a named set (r2r data): its checked candidates file is --candidates
        if args.candidates:
            raise ValueError("give either --dataset or --candidates, not both")
        args.candidates = str(dataset_file(args.dataset, "candidates"))
    run_args = (args.run, args.corpus, args.queries)
    for flag in ("candidates", "run", "corpus", "queries"):
        if getattr(args, flag):
            check_regular(getattr(args, flag), f"--{flag}", "rerank reads it more than once (and hashes it to "
                                                            "resume a killed job)")
    if args.candidates and any(run_args):
        raise ValueError("give either --candidates or --run/--corpus/--queries, not both")
    if args.candidates:
        source, files = args.candidates, [args.candidates]

        def stream():
            for qc in islice(iter_candidates(args.candidates), args.max_queries):
                yield split_at_depth(qc, args.depth)
        return stream, source, files
    if not all(run_args):
        if any(run_args):
            raise ValueError("--run needs --corpus and --queries")
        raise ValueError("no candidates: give --candidates FILE, or --run RUN --corpus FILE --queries FILE")
    items = read_run_candidates(args.run, args.corpus, args.queries, depth=args.depth)[: args.max_queries]
    tails: dict[str, list[str]] = {}
    if args.depth is not None:  # only the reranked hits' passages are read; the rest need only their docids
        tails = {qid: [d for d, _ in hits[args.depth:]] for qid, hits in read_run(args.run).items()}
    return (lambda: ((qc, tails.get(qc.qid, [])) for qc in items)), args.run, list(run_args)


def resolve_fusion(args: argparse.Namespace):
    """(the ranking setting, where it came from), by `inference.fusion.resolve`: --student-only, --fusion,
    else the stored default of the training run of --checkpoint or of the --model folder. An explicit --depth
    replaces the setting's depth. Read before any model loads."""
    from r2r_jax.checkpoint import run_folder
    from r2r_jax.inference.fusion import Fusion, resolve

    if args.fusion_weight is not None and not args.fusion:
        raise ValueError("--fusion-weight goes with --fusion")
    explicit = None
    if args.fusion:
        weight = 1.0 if args.fusion == "student" else 0.5 if args.fusion_weight is None else args.fusion_weight
        explicit = Fusion(args.fusion, weight)
    folder = Path(args.model) if args.model else run_folder(args.checkpoint)
    return resolve(folder, student_only=args.student_only, explicit=explicit, depth=args.depth)


def explanations_path(args: argparse.Namespace) -> str | None:
    """--explanations, or with --explain-top/--explain-ranks and no --explanations,
    <output stem>.explanations.jsonl."""
    if args.explanations is None and (args.explain_top or args.explain_ranks):
        return str(Path(args.output).with_suffix("")) + ".explanations.jsonl"
    return args.explanations


def derived_outputs(args: argparse.Namespace) -> dict[str, str | None]:
    """What rerank writes that no flag names: `r2r` refuses these too when they are, hold or lie in an input."""
    from r2r_jax.rerank.shards import shard_dir

    default = explanations_path(args) if args.explanations is None else None
    return {"--explanations (default with --explain-top)": default,
            "--output's shard folder": str(shard_dir(args.output))}


def explain_plan(args: argparse.Namespace):
    """The `ExplainPlan` of --explain-top / --explain-ranks and --explain-comparisons; ValueError naming the flag
    when a rank spec is malformed or reaches below the reranked depth (ranks past it are first-stage order)."""
    from r2r_jax.rerank.explain_plan import ExplainPlan, format_ranks, parse_ranks

    if args.explain_ranks is not None:
        plan = ExplainPlan(parse_ranks(args.explain_ranks), args.explain_comparisons)
    else:
        plan = ExplainPlan.top(args.explain_top, args.explain_comparisons)
    depth = getattr(args, "depth", None)
    if plan and depth is not None and plan.ranks[-1][1] > depth:
        flag = "--explain-ranks" if args.explain_ranks is not None else "--explain-top"
        raise ValueError(f"{flag} {format_ranks(plan.ranks)}: only the top {depth} are reranked (the ranking's "
                         "depth); raise --depth, or use --student-only to rerank every candidate")
    return plan


def job_settings(args: argparse.Namespace, files: list[str], student, explanations: str | None) -> dict:
    """What a finished shard's results depend on: a resumed job must match it (rerank/shards.py)."""
    from r2r_jax.rerank.shards import file_identity

    return {"inputs": [file_identity(f) for f in files], "student": student.source,
            "prompts": dataclasses.asdict(student.prompts), "depth": args.depth,
            "fusion": args.fusion_setting, "max_queries": args.max_queries,
            "shard_size": args.shard_size, "tag": args.tag, "explain": explain_plan(args).to_dict(),
            "explanations": str(Path(explanations).absolute()) if explanations else None,
            "max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "seed": args.seed}


def run(args: argparse.Namespace) -> int:
    import jax

    from r2r_jax.checkpoint import CheckpointError
    from r2r_jax.config import MeshConfig
    from r2r_jax.parallel.mesh import make_mesh, maybe_initialize_distributed
    from r2r_jax.rerank.job import rerank, validate_candidates
    from r2r_jax.rerank.shards import ShardMismatch, run_sharded, shard_folder_held
    from r2r_jax.retrieval.trec import check_tag
    from r2r_jax.trained.loading import check_student_prompts, load_from_checkpoint, load_from_hf, student_prompts

    def fail(e: BaseException, code: int) -> int:
        print(f"r2r rerank: error: {one_line(e)}", file=sys.stderr)
        return code

    try:
        if args.base_model and not args.checkpoint:
            raise ValueError("--base-model goes with --checkpoint")
        try:
            check_tag(args.tag)
        except ValueError as e:
            raise ValueError(f"--tag: {e}") from None
        fusion, fusion_source = resolve_fusion(args)
        args.depth, args.fusion_setting = fusion.depth, fusion.to_dict()
        stream, source, files = read_inputs(args)
        if not validate_candidates((qc for qc, _ in stream()), source):  # one streaming pass, before any model
            raise RecordError("no queries to rerank", path=source)
        MeshConfig(args.mesh_data, args.mesh_fsdp, args.mesh_tensor).validate()
        prompts = {"prompt_template": args.prompt_template, "comparison_template": args.comparison_template,
                   "max_prompt_len": args.max_prompt_len,
                   "max_comparison_prompt_len": args.max_comparison_prompt_len}
        maybe_initialize_distributed()  # before reading the checkpoint's settings: orbax starts JAX's backend
        settings, tokenizer = student_prompts(args.checkpoint, args.model, args.tokenizer, **prompts)
        plan = explain_plan(args)
        check_student_prompts(settings, tokenizer, comparisons=plan.compares)
    except (RecordError, ValueError, OSError) as e:
        return fail(e, 2)
    explanations = explanations_path(args)

    try:
        with shard_folder_held(args.output):  # before the model loads: a second job is refused at once
            mesh = make_mesh(MeshConfig(args.mesh_data, args.mesh_fsdp, args.mesh_tensor), jax.local_devices())
            if args.checkpoint:
                student = load_from_checkpoint(args.checkpoint, mesh, args.base_model, args.tokenizer, **prompts)
            else:
                try:
                    student = load_from_hf(args.model, mesh, args.dtype, args.attention, args.tokenizer,
                                           scan_layers=not args.unroll_layers, **prompts)
                except Exception as e:  # noqa: BLE001 - a folder that is not a whole export: the input's fault
                    raise library_error(e, f"--model {args.model}") from None

            def rerank_shard(items):
                return rerank(student, items, batch_size=args.batch_size, explain=plan,
                              max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed,
                              share_prefix=args.share_prefix, fusion=fusion)

            outcome = run_sharded(rerank_shard, stream(), args.output,
                                  job=job_settings(args, files, student, explanations),
                                  shard_size=args.shard_size, tag=args.tag, explanations=explanations)
    except (RecordError, FileNotFoundError, CheckpointError, ShardMismatch) as e:  # bad checkpoint or records
        return fail(e, 2)
    except (ValueError, OSError, FloatingPointError) as e:
        return fail(e, 1)
    if jax.process_index() == 0:
        devices = f"{jax.device_count()} device(s), {jax.process_count()} process(es)"
        resumed = (f" ({outcome.queries - outcome.reranked} more from {outcome.resumed_shards} finished shard(s) "
                   "of an earlier run)" if outcome.resumed_shards else "")
        print(f"reranked {outcome.reranked} queries{resumed}, {outcome.docs} passages with {student.source} in "
              f"{outcome.score_seconds:.1f} s: {outcome.docs_per_second:.1f} docs/s on {devices}; "
              f"{outcome.truncation.line(student.prompts.max_prompt_len)}")
        if plan:
            print(f"explained {plan.describe()}: {outcome.explained} reasons in "
                  f"{outcome.explain_seconds:.1f} s")
        print(f"ranking: {fusion.describe()} ({fusion_source})")
        print(f"wrote {args.output}" + (f" and {explanations}" if explanations else ""))
    return 0
