"""`--dry-run`: how many calls, tokens and dollars a run would take, without calling anything.

Prompts are built exactly as the run builds them, with the first-stage order standing in for the rankings
the teacher has not given yet (token counts barely depend on the order). Prompt tokens are estimated at ~4
bytes a token; answers at a typical size and at their `--max-tokens` ceiling. Re-asks are not foreseeable
and not counted; responses already cached are not subtracted, so for a resumed run this is an upper bound.
"""

from __future__ import annotations

from typing import Any

from r2r_jax.data.candidates import QueryCandidates
from r2r_jax.teacher.cost import EST_COMPARE_TOKENS, EST_TOKENS_PER_REASON, Prices, estimate_prompt_tokens
from r2r_jax.teacher.generate import Teacher, comparison_pairs, windows


def estimate_run(teacher: Teacher, todo: list[QueryCandidates], prices: Prices | None,
                 discount: float) -> dict[str, Any]:
    s = teacher.settings
    calls = {"rank": 0, "compare": 0}
    prompt = typical = ceiling = 0
    for qc in todo:
        cands = qc.candidates[:s.top_k]
        if not cands:
            continue
        for start, end in windows(len(cands), s.window, s.step):
            msgs = teacher.rank_messages(qc.query, [c.text for c in cands[start:end]])
            calls["rank"] += 1
            prompt += estimate_prompt_tokens(msgs)
            typical += min(s.max_tokens, EST_TOKENS_PER_REASON * (end - start) + 20)
            ceiling += s.max_tokens
        for i, j in comparison_pairs(len(cands), s, qc.qid):
            calls["compare"] += 1
            prompt += estimate_prompt_tokens(teacher.compare_messages(qc.query, cands[i].text, cands[j].text))
            typical += min(s.max_tokens, EST_COMPARE_TOKENS)
            ceiling += s.max_tokens
    out: dict[str, Any] = {"queries": len(todo), "calls": calls,
                           "prompt_tokens": prompt, "completion_tokens_typical": typical,
                           "completion_tokens_max": ceiling}
    if prices is not None:
        out["cost_usd_typical"] = round(prices.cost(prompt, typical, discount), 4)
        out["cost_usd_max"] = round(prices.cost(prompt, ceiling, discount), 4)
    return out


def format_estimate(e: dict[str, Any], model: str, mode: str) -> str:
    lines = [f"dry run: {e['queries']} queries to teach with {model} ({mode} mode)",
             f"  calls: {e['calls']['rank']} ranking windows + {e['calls']['compare']} comparisons "
             f"(re-asks not included)",
             f"  prompt tokens: ~{e['prompt_tokens']:,}",
             f"  completion tokens: ~{e['completion_tokens_typical']:,} typical, "
             f"{e['completion_tokens_max']:,} at most (--max-tokens per call)"]
    if "cost_usd_typical" in e:
        lines.append(f"  cost: ~${e['cost_usd_typical']:.2f} typical, ${e['cost_usd_max']:.2f} at most")
    else:
        lines.append("  cost: unknown model prices; pass --price-in and --price-out (USD per 1M tokens)")
    return "\n".join(lines)
