"""Token and cost accounting: prices per model, a thread-safe meter with a budget, and estimates.

The budget is enforced before a call, not after: each call reserves a conservative upper bound of its cost
(prompt bytes / 3 tokens, the full `max_completion_tokens` of output) and starts only if the spend so far
plus every open reservation plus this one stays within `--max-cost`. When the answer arrives the
reservation is replaced by the cost of the tokens the endpoint reports.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from typing import Any

# USD per million tokens (input, output), list prices at the time of writing; override with --price-in/out.
KNOWN_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-4": (30.00, 60.00),
    "gpt-3.5-turbo": (0.50, 1.50),
}
# typical answer sizes, for --dry-run only
EST_TOKENS_PER_REASON = 60
EST_COMPARE_TOKENS = 120


class BudgetExceeded(RuntimeError):
    """The next call could cost more than what is left of `--max-cost`."""


@dataclass(frozen=True)
class Prices:
    input_per_m: float
    output_per_m: float

    def cost(self, prompt_tokens: int, completion_tokens: int, discount: float = 1.0) -> float:
        return discount * (prompt_tokens * self.input_per_m + completion_tokens * self.output_per_m) / 1e6


def prices_for(model: str, price_in: float | None = None, price_out: float | None = None) -> Prices | None:
    """Explicit prices, else the longest known model-name prefix (dated versions included), else None."""
    if price_in is not None and price_out is not None:
        return Prices(price_in, price_out)
    match = max((m for m in KNOWN_PRICES if model.startswith(m)), key=len, default=None)
    if match is None:
        return None
    known = KNOWN_PRICES[match]
    return Prices(known[0] if price_in is None else price_in, known[1] if price_out is None else price_out)


def estimate_prompt_tokens(messages: list[dict[str, Any]], upper: bool = False) -> int:
    """~4 bytes a token for English; `upper` uses 3 (a safe bound for budgets) plus per-message overhead."""
    size = len(json.dumps(messages, ensure_ascii=False).encode("utf-8"))
    return math.ceil(size / (3 if upper else 4)) + 4 * len(messages) + 3


class CostMeter:
    """Spend, open reservations and token totals of the calls this run made (cache hits are free)."""

    def __init__(self, prices: Prices | None, budget: float | None = None, discount: float = 1.0):
        if budget is not None and prices is None:
            raise ValueError("--max-cost needs prices: pass --price-in and --price-out for this model")
        self.prices, self.budget, self.discount = prices, budget, discount
        self.spent = 0.0
        self.reserved = 0.0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self._lock = threading.Lock()

    def reserve(self, body: dict[str, Any]) -> float:
        """Reserve the worst-case cost of one request or raise `BudgetExceeded`."""
        if self.prices is None:
            return 0.0
        worst = self.prices.cost(estimate_prompt_tokens(body["messages"], upper=True),
                                 int(body.get("max_completion_tokens") or 0), self.discount)
        with self._lock:
            if self.budget is not None and self.spent + self.reserved + worst > self.budget:
                raise BudgetExceeded(f"the next call could cost up to ${worst:.4f}; spent ${self.spent:.4f} "
                                     f"of ${self.budget:.4f}")
            self.reserved += worst
        return worst

    def settle(self, reservation: float, usage: dict[str, Any] | None) -> None:
        usage = usage or {}
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        with self._lock:
            self.reserved -= reservation
            self.prompt_tokens += prompt
            self.completion_tokens += completion
            if self.prices is not None:
                self.spent += self.prices.cost(prompt, completion, self.discount)

    def release(self, reservation: float) -> None:
        with self._lock:
            self.reserved -= reservation
