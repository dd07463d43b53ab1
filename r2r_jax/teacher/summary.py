"""Run counters and the final summary: calls, cache hits, retries, repairs, failures, tokens, cost."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from r2r_jax.teacher.cost import CostMeter


class Stats:
    """Thread-safe named counters. Names are `group.kind`: retry.rate_limited, repair.duplicate, ..."""

    def __init__(self) -> None:
        self._counts: Counter = Counter()
        self._lock = threading.Lock()

    def add(self, name: str, n: int = 1) -> None:
        if n:
            with self._lock:
                self._counts[name] += n

    def get(self, name: str) -> int:
        with self._lock:
            return self._counts[name]

    def group(self, prefix: str) -> dict[str, int]:
        with self._lock:
            return {k.split(".", 1)[1]: v for k, v in sorted(self._counts.items()) if k.startswith(prefix + ".")}


def build_summary(stats: Stats, meter: CostMeter, queries: dict[str, int], mode: str,
                  stopped: str | None) -> dict[str, Any]:
    return {
        "mode": mode,
        "queries": queries,
        "calls": stats.get("calls"),
        "cache_hits": stats.get("cache_hits"),
        "retries": stats.group("retry"),
        "unusable_answers": stats.group("unusable"),
        "reasks": stats.get("reasks"),
        "repairs": stats.group("repair"),
        "failures": queries.get("failed", 0),
        "tokens": {"prompt": meter.prompt_tokens, "completion": meter.completion_tokens},
        "cost_usd": None if meter.prices is None else round(meter.spent, 6),
        "max_cost_usd": meter.budget,
        "stopped": stopped,
    }


def format_summary(s: dict[str, Any]) -> str:
    def kv(d: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in d.items()) or "none"

    q = s["queries"]
    cost = "unknown (no prices for this model; pass --price-in/--price-out)" if s["cost_usd"] is None \
        else f"${s['cost_usd']:.4f}" + (f" of ${s['max_cost_usd']:.4f}" if s["max_cost_usd"] is not None else "")
    lines = [
        f"queries: {kv(q)}",
        f"calls: {s['calls']} ({s['mode']}), cache hits: {s['cache_hits']}",
        f"retries: {kv(s['retries'])}",
        f"unusable answers: {kv(s['unusable_answers'])}; re-asks: {s['reasks']}",
        f"repairs: {kv(s['repairs'])}",
        f"failures: {s['failures']}",
        f"tokens: prompt {s['tokens']['prompt']}, completion {s['tokens']['completion']}; cost: {cost}",
    ]
    if s["stopped"]:
        lines.append(f"stopped: {s['stopped']}")
    return "\n".join("  " + line for line in lines)
