"""The cost of a listwise sliding-window reranker against this project's pointwise scoring, same model.

    python -m benchmarks.listwise --model runs/bases/smollm2-135m [--queries 2] [--window 20] [--stride 10]
    python -m benchmarks.listwise --model DIR --quick     # smoke run: one query, top 12, window 6, stride 3

A listwise reranker (RankGPT, RankZephyr) reads a window of passages in one prompt and *generates* their order
("[4] > [1] > ..."); a window of 20 slides from the bottom of the top 100 to the top with stride 10, so each
query costs 9 prompts of ~20 passages, one after another (each window's order feeds the next), each followed
by a generated permutation. The pointwise student scores each passage once (one forward of its own prompt,
the score read at the last token, the query's shared prefix run once), in batches. This benchmark runs both on
the same weights (an HF causal Llama folder, e.g. the SmolLM2 base `r2r base` writes) over the first DL19
queries' BM25 candidates, and reports seconds per query:

- pointwise, JAX: the rerank job's scoring path (`benchmarks.jax_stack.scorer`, shared prefixes, final layer
  at the scored position only), each passage cut to the same token budget as a listwise passage;
- listwise, JAX: the project's KV-cache decoder (`r2r_jax.model.generate.make_generate`), greedy;
- listwise, transformers: `generate` (greedy, KV cache, SDPA), what rank_llm's Hugging Face path runs.

Generation is held to the length of a complete permutation of the window (`min_new_tokens` = `max_new_tokens`
= the tokens of "[1] > [2] > ... > [w]" plus one), so the cost is that of a model that writes the whole answer;
a base model that stops early or repeats itself would otherwise look cheaper than a working listwise reranker.
The parsed orders (rank_llm's repair: identifiers in order of first mention, unknown ones dropped, the missing
appended in their current order) are applied, so the windows slide as in a real run; how many windows named
every passage on their own is reported. Listwise prompts are the chat template of the folder's tokenizer.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from r2r_jax.teacher.generate import windows  # RankGPT's sliding windows, as `r2r teach` slides them

from .common import DL19, add_run_options, median, start_timed_run
from .common import write_json as emit

INSTRUCTION = ("Below are {n} passages, each marked with an identifier in brackets. Rank them by how well they "
               "answer the search query: {query}")
REQUEST = ("Search query: {query}\nList the {n} identifiers from most to least relevant, separated by ' > ', "
           "e.g. [2] > [1]. Only answer with the list.")
PREFILL_MULTIPLE = 256  # JAX pads listwise prompts to a multiple of this (a few compiled shapes, not one per window)
TEMPLATE_ROOM = 64  # pointwise prompt tokens beyond the passage: the scoring template and the query


@dataclass(frozen=True)
class Query:
    qid: str
    text: str
    passages: list[str]


def read_queries(path: Path, count: int, depth: int) -> list[Query]:
    from r2r_jax.data.candidates import read_candidates

    return [Query(qc.qid, qc.query, [c.text for c in qc.candidates[:depth]]) for qc in read_candidates(path)[:count]]


def cut(tokenizer, text: str, tokens: int) -> str:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= tokens else tokenizer.decode(ids[:tokens])


def listwise_prompt(tokenizer, query: str, passages: list[str]) -> list[int]:
    n = len(passages)
    body = "\n".join(f"[{i + 1}] {p}" for i, p in enumerate(passages))
    text = f"{INSTRUCTION.format(n=n, query=query)}\n\n{body}\n\n{REQUEST.format(n=n, query=query)}"
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                         tokenize=True, return_dict=False)


def permutation_tokens(tokenizer, n: int) -> int:
    """Tokens of a complete answer for a window of n, plus one for the end token."""
    return len(tokenizer(" > ".join(f"[{i + 1}]" for i in range(n)), add_special_tokens=False)["input_ids"]) + 1


def parse_order(text: str, n: int) -> tuple[list[int], bool]:
    """0-based order from a generated answer (first mentions, in range), the rest appended; and whether the
    answer named all n by itself."""
    seen: list[int] = []
    for m in re.findall(r"\[(\d+)\]", text):
        i = int(m) - 1
        if 0 <= i < n and i not in seen:
            seen.append(i)
    complete = len(seen) == n
    return seen + [i for i in range(n) if i not in seen], complete


def load_jax_base(folder: str, attention: str, scan_layers: bool):
    """(model, variables) of an HF causal Llama folder, imported once for both approaches: the LM head for
    generation, and a zero score head for the scoring path (its scores are not what is timed)."""
    from r2r_jax.model.hf_import import import_hf_params, load_hf_model_config
    from r2r_jax.model.llama import LlamaForRanking

    cfg = load_hf_model_config(folder, dtype="float32", param_dtype="float32", remat_policy="none",
                               attention=attention, scan_layers=scan_layers)
    params = import_hf_params(folder, cfg, with_score=False)
    params["score"] = {"kernel": np.zeros((cfg.hidden_size, 1), np.float32)}
    return LlamaForRanking(cfg), {"params": params}


class JaxGenerator:
    """Greedy decoding of one prompt with the project's KV-cache decoder; prompts left-padded to a bucket."""

    def __init__(self, model, variables, tokenizer, new_tokens: int):
        import jax

        from r2r_jax.data.templates import special_ids
        from r2r_jax.model.generate import make_generate

        ids = special_ids(tokenizer)
        self.pad = ids.pad
        stop = sorted({t for t in (tokenizer.eos_token_id, ids.eot) if t is not None})
        self.variables = variables
        self.fn = make_generate(model, new_tokens, stop, ids.pad, min_new_tokens=new_tokens)
        self.rng = jax.random.key(0)

    def __call__(self, prompt: list[int]) -> list[int]:
        width = -(-len(prompt) // PREFILL_MULTIPLE) * PREFILL_MULTIPLE
        ids = np.full((1, width), self.pad, np.int32)
        mask = np.zeros((1, width), np.int32)
        ids[0, width - len(prompt):] = prompt
        mask[0, width - len(prompt):] = 1
        tokens, lengths = self.fn(self.variables, ids, mask, self.rng)
        return np.asarray(tokens)[0, : int(lengths[0])].tolist()


class TorchGenerator:
    def __init__(self, folder: str, new_tokens: int):
        import torch
        from transformers import AutoModelForCausalLM

        self.torch = torch
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32,
                                                          attn_implementation="sdpa").eval()
        self.new_tokens = new_tokens

    def __call__(self, prompt: list[int]) -> list[int]:
        with self.torch.inference_mode():
            ids = self.torch.tensor([prompt])
            out = self.model.generate(ids, attention_mask=self.torch.ones_like(ids), do_sample=False,
                                      max_new_tokens=self.new_tokens, min_new_tokens=self.new_tokens,
                                      pad_token_id=self.model.config.eos_token_id)
        return out[0, len(prompt):].tolist()


def rerank_listwise(generate, tokenizer, query: Query, window: int, stride: int) -> dict:
    """One query's sliding-window rerank; the final order and what each window cost."""
    order = list(range(len(query.passages)))
    prompt_tokens, complete = [], 0
    for start, end in windows(len(order), window, stride):
        part = order[start:end]
        prompt = listwise_prompt(tokenizer, query.text, [query.passages[i] for i in part])
        answer = tokenizer.decode(generate(prompt), skip_special_tokens=True)
        local, whole = parse_order(answer, len(part))
        order[start:end] = [part[i] for i in local]
        prompt_tokens.append(len(prompt))
        complete += whole
    return {"order": order, "prompt_tokens": prompt_tokens, "complete_windows": complete}


def warm_up(generate, tokenizer, queries: list[Query], window: int) -> None:
    """One call per prompt width a window can have (JAX compiles one per width), so no timed window compiles:
    prompts of the shortest and the longest `window` passages of every query bound the widths."""
    def tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    lengths = sorted({len(listwise_prompt(tokenizer, q.text, sorted(q.passages, key=tokens, reverse=longest)[:window]))
                      for q in queries for longest in (False, True)})
    widths = range(-(-lengths[0] // PREFILL_MULTIPLE), -(-lengths[-1] // PREFILL_MULTIPLE) + 1)
    for w in widths if isinstance(generate, JaxGenerator) else widths[:1]:
        generate([tokenizer.bos_token_id or 1] * (w * PREFILL_MULTIPLE))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="HF causal Llama folder with its tokenizer (e.g. the SmolLM2 base)")
    ap.add_argument("--candidates", default=str(DL19), help="candidates (rank_llm JSONL or RankGPT hits JSON)")
    ap.add_argument("--queries", type=int, default=2)
    ap.add_argument("--depth", type=int, default=100, help="candidates reranked per query")
    ap.add_argument("--window", type=int, default=20)
    ap.add_argument("--stride", type=int, default=10)
    ap.add_argument("--passage-tokens", type=int, default=100,
                    help="each passage cut to this many tokens, in both approaches")
    ap.add_argument("--batch-size", type=int, default=32, help="pointwise scoring batch")
    ap.add_argument("--attention", default="loop", choices=("loop", "xla"))
    ap.add_argument("--scan-layers", action="store_true",
                    help="JAX: scanned layers (default: unrolled, the CPU choice)")
    ap.add_argument("--only", choices=("jax", "torch"), help="listwise with one stack only")
    add_run_options(ap)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 1 query, top 12, window 6, stride 3, passages of 32 tokens")
    args = ap.parse_args(argv)
    if args.quick:
        args.queries, args.depth, args.window, args.stride, args.passage_tokens = 1, 12, 6, 3, 32
    _, info = start_timed_run(args, "jax", "jaxlib", "flax", "torch", "transformers")
    from r2r_jax.data.features import encode_prompts
    from r2r_jax.data.templates import load_tokenizer

    tokenizer = load_tokenizer(args.model)
    queries = [Query(q.qid, q.text, [cut(tokenizer, p, args.passage_tokens) for p in q.passages])
               for q in read_queries(Path(args.candidates), args.queries, args.depth)]
    new_tokens = permutation_tokens(tokenizer, args.window)

    from r2r_jax.config import DataConfig

    from .jax_stack import scorer

    model, variables = load_jax_base(args.model, args.attention, args.scan_layers)
    point_s = []
    for q in queries:
        ids, mask = encode_prompts(tokenizer, q.text, q.passages, DataConfig.prompt_template,
                                   args.passage_tokens + TEMPLATE_ROOM)
        fn = scorer(model, variables, args.batch_size, query_sizes=[len(q.passages)])
        fn(ids, mask)  # compiles its shapes
        start = time.perf_counter()
        fn(ids, mask)
        point_s.append(time.perf_counter() - start)
    rows = {"pointwise_jax": {"s_per_query": median(point_s), "seconds": point_s,
                              "forwards_per_query": args.depth}}
    stacks = (args.only,) if args.only else ("jax", "torch")
    for stack in stacks:
        gen = (JaxGenerator(model, variables, tokenizer, new_tokens) if stack == "jax"
               else TorchGenerator(args.model, new_tokens))
        warm_up(gen, tokenizer, queries, args.window)
        seconds, runs = [], []
        for q in queries:
            start = time.perf_counter()
            runs.append(rerank_listwise(gen, tokenizer, q, args.window, args.stride))
            seconds.append(time.perf_counter() - start)
        rows[f"listwise_{stack}"] = {
            "s_per_query": median(seconds), "seconds": seconds, "windows_per_query": len(runs[0]["prompt_tokens"]),
            "prompt_tokens_per_window": float(np.mean([t for r in runs for t in r["prompt_tokens"]])),
            "generated_tokens_per_window": new_tokens,
            "complete_windows": sum(r["complete_windows"] for r in runs),
            "windows": sum(len(r["prompt_tokens"]) for r in runs)}
        del gen
    base = rows["pointwise_jax"]["s_per_query"]
    for row in rows.values():
        row["x_pointwise"] = row["s_per_query"] / base
    for name, row in rows.items():
        print(f"# {name}: {row['s_per_query']:.2f} s/query ({row['x_pointwise']:.1f}x pointwise)",
              file=sys.stderr, flush=True)
    emit(args.json, {"benchmark": "listwise", "machine": info, "model": args.model, "candidates": args.candidates,
                     "queries": [q.qid for q in queries], "depth": args.depth, "window": args.window,
                     "stride": args.stride, "passage_tokens": args.passage_tokens, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
