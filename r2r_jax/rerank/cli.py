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

from r2r_jax.cli_types import non_negative_float, non_negative_int, positive_int
from r2r_jax.data.records import RecordError

# (files written, files read): `r2r` refuses an output that is also an input before the command runs
FILE_ARGUMENTS = (("output", "explanations"), ("candidates", "run", "corpus", "queries"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("student (one of)")
    which = src.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", metavar="CKPT",
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
    inp.add_argument("--run", metavar="RUN", help="first-stage TREC run (with --corpus and --queries)")
    inp.add_argument("--corpus", metavar="FILE", help="passages: JSONL {id, contents} or TSV docid<TAB>text")
    inp.add_argument("--queries", metavar="FILE", help="queries: TSV qid<TAB>text, JSONL or TREC topics")
    inp.add_argument("--depth", type=positive_int,
                     help="rerank each query's top DEPTH candidates; the rest follow in first-stage order, below "
                          "them (rank_llm's convention; the R2R authors reranked the top 5). Default: all")
    inp.add_argument("--max-queries", type=positive_int, help="only the first N queries (a quick look)")

    out = parser.add_argument_group("output")
    out.add_argument("--output", required=True, metavar="RUN", help="reranked TREC run to write")
    out.add_argument("--tag", default="r2r", help="run tag, the TREC run's last column (default r2r)")
    out.add_argument("--explain-top", type=non_negative_int, default=0, metavar="K",
                     help="decode a direct reason for each of the top K and a comparison reason for each "
                          "adjacent pair among them (default 0: none)")
    out.add_argument("--explanations", metavar="JSONL",
                     help="per-query reranked lists, scores and reasons (default with --explain-top: "
                          "<output stem>.explanations.jsonl)")

    gen = parser.add_argument_group("batching and decoding")
    gen.add_argument("--no-share-prefix", dest="share_prefix", action="store_false",
                     help="score every prompt whole (default: each query's common prompt prefix runs once, "
                          "then only each candidate's own tokens; the same scores)")
    gen.add_argument("--batch-size", type=positive_int, default=32,
                     help="sequences per batch, rounded up to a multiple of the data-parallel size (default 32)")
    gen.add_argument("--max-new-tokens", type=positive_int,
                     help="reason length limit (default: the trained target length)")
    gen.add_argument("--temperature", type=non_negative_float, default=0.0, help="0 = greedy (default); > 0 samples")
    gen.add_argument("--seed", type=non_negative_int, default=0, help="sampling seed (with --temperature > 0)")
    gen.add_argument("--prompt-template", help="scoring template, fields {query} {passage} (default: trained one)")
    gen.add_argument("--comparison-template", help="comparison template, fields {query} {passages}")
    gen.add_argument("--max-prompt-len", type=positive_int,
                     help="scoring prompt tokens (default: trained value)")
    gen.add_argument("--max-comparison-prompt-len", type=positive_int,
                     help="comparison prompt tokens (default: trained)")

    mesh = parser.add_argument_group("devices (this host's; each host reranks its share of the queries)")
    mesh.add_argument("--mesh.data", dest="mesh_data", type=int, default=-1, help="data-parallel size (-1: rest)")
    mesh.add_argument("--mesh.fsdp", dest="mesh_fsdp", type=int, default=1, help="parameter-sharding size")
    mesh.add_argument("--mesh.tensor", dest="mesh_tensor", type=int, default=1, help="tensor-parallel size")


def read_inputs(args: argparse.Namespace):
    """(candidate lists cut to --depth, the first-stage docids below the cut per query, a name for messages)
    from --candidates or --run/--corpus/--queries."""
    from r2r_jax.data.candidates import read_candidates
    from r2r_jax.retrieval.trec import read_run, read_run_candidates

    run_args = (args.run, args.corpus, args.queries)
    if args.candidates and any(run_args):
        raise ValueError("give either --candidates or --run/--corpus/--queries, not both")
    tails: dict[str, list[str]] = {}
    if args.candidates:
        items, source = read_candidates(args.candidates), args.candidates
        if args.depth is not None:
            tails = {qc.qid: [c.docid for c in qc.candidates[args.depth:]] for qc in items}
            items = [dataclasses.replace(qc, candidates=qc.candidates[: args.depth]) for qc in items]
    elif all(run_args):
        items, source = read_run_candidates(args.run, args.corpus, args.queries, depth=args.depth), args.run
        if args.depth is not None:  # only the reranked hits' passages are read; the rest need only their docids
            tails = {qid: [d for d, _ in hits[args.depth:]] for qid, hits in read_run(args.run).items()}
    elif any(run_args):
        raise ValueError("--run needs --corpus and --queries")
    else:
        raise ValueError("no candidates: give --candidates FILE, or --run RUN --corpus FILE --queries FILE")
    if args.max_queries is not None:
        items = items[: max(args.max_queries, 0)]
    if not items:
        raise RecordError("no queries to rerank", path=source)
    return items, {qc.qid: tails.get(qc.qid, []) for qc in items}, source


def run(args: argparse.Namespace) -> int:
    import jax

    from r2r_jax.checkpoint import CheckpointError
    from r2r_jax.config import MeshConfig
    from r2r_jax.parallel.mesh import make_mesh, maybe_initialize_distributed
    from r2r_jax.rerank.job import rerank, validate_candidates, with_first_stage_tail, write_outputs
    from r2r_jax.trained.loading import load_from_checkpoint, load_from_hf

    def fail(e: BaseException, code: int) -> int:
        print(f"r2r rerank: error: {e}", file=sys.stderr)
        return code

    try:
        if args.base_model and not args.checkpoint:
            raise ValueError("--base-model goes with --checkpoint")
        items, tails, source = read_inputs(args)
        validate_candidates(items, source)
    except (RecordError, ValueError, OSError) as e:
        return fail(e, 2)
    explanations = args.explanations
    if explanations is None and args.explain_top:
        explanations = str(Path(args.output).with_suffix("")) + ".explanations.jsonl"

    maybe_initialize_distributed()
    prompts = {"prompt_template": args.prompt_template, "comparison_template": args.comparison_template,
               "max_prompt_len": args.max_prompt_len, "max_comparison_prompt_len": args.max_comparison_prompt_len}
    try:
        mesh = make_mesh(MeshConfig(args.mesh_data, args.mesh_fsdp, args.mesh_tensor), jax.local_devices())
        if args.checkpoint:
            student = load_from_checkpoint(args.checkpoint, mesh, args.base_model, args.tokenizer, **prompts)
        else:
            student = load_from_hf(args.model, mesh, args.dtype, args.attention, args.tokenizer,
                                   scan_layers=not args.unroll_layers, **prompts)
        result = rerank(student, items, batch_size=args.batch_size, explain_top=args.explain_top,
                        max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed,
                        share_prefix=args.share_prefix)
        result.run = with_first_stage_tail(result.run, tails)
        write_outputs(result, items, args.output, args.tag, explanations)
    except (RecordError, FileNotFoundError, CheckpointError) as e:  # a bad or torn checkpoint, bad records
        return fail(e, 2)
    except (ValueError, OSError, FloatingPointError) as e:
        return fail(e, 1)
    if jax.process_index() == 0:
        devices = f"{jax.device_count()} device(s), {jax.process_count()} process(es)"
        print(f"reranked {len(items)} queries, {result.docs} passages with {student.source} in "
              f"{result.score_seconds:.1f} s: {result.docs_per_second:.1f} docs/s on {devices}; "
              f"{result.truncation.line(student.prompts.max_prompt_len)}")
        if args.explain_top:
            n = sum(len(e.direct) + len(e.comparisons) for e in result.explanations.values())
            print(f"explained the top {args.explain_top}: {n} reasons in {result.explain_seconds:.1f} s")
        print(f"wrote {args.output}" + (f" and {explanations}" if explanations else ""))
    return 0
