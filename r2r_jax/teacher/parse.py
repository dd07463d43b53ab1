"""Reading teacher answers: JSON extraction, ranking repair, and the verdict "unusable, ask again".

A ranking is repaired, never discarded, when it can be: duplicates keep their first place, unknown
identifiers are dropped, missing ones follow in their input order (RankGPT's convention). Each repair is
counted so the record and the run summary say what was changed. An answer with no JSON, no known identifier,
or cut off at the token limit is `Unusable`; the caller re-asks with the reason.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")
_NUMBER = re.compile(r"-?\d+")


class Unusable(ValueError):
    """An answer that cannot be used. `kind` is a stable counter name; the message goes into the re-ask."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass
class RankAnswer:
    order: list[int]  # 0-based window positions, most relevant first; a permutation of range(n)
    reasons: dict[int, str]  # window position -> direct reason
    repairs: Counter = field(default_factory=Counter)  # duplicate / unknown / missing / missing_reason
    listwise: dict[int, str] = field(default_factory=dict)  # window position -> listwise reason, when asked for


def message_of(response: dict[str, Any]) -> tuple[str | None, str | None]:
    """(content, finish_reason) of the first choice of a chat completion body."""
    choices = response.get("choices") if isinstance(response, dict) else None
    if not choices or not isinstance(choices[0], dict):
        raise Unusable("no_choice", "the response had no choices")
    message = choices[0].get("message") or {}
    return message.get("content"), choices[0].get("finish_reason")


def _check_finish(content: str | None, finish_reason: str | None) -> str:
    if finish_reason == "length":
        raise Unusable("truncated", "the answer was cut off at the token limit; be more concise")
    if not content or not content.strip():
        raise Unusable("empty", "the answer was empty")
    return content


def json_object(content: str) -> Any:
    """Parse a JSON value from an answer, tolerating code fences and prose around one object."""
    text = _FENCE.sub("", content.strip())
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        try:
            return json.loads(text[start:end + 1])
        except json.JSONDecodeError:
            pass
    raise Unusable("invalid_json", "the answer was not valid JSON")


def _identifier(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        m = _NUMBER.search(value)
        return int(m.group()) if m else None
    return None


def _ranked_items(obj: Any) -> list[Any]:
    if isinstance(obj, list):
        return obj
    if isinstance(obj, dict):
        for key in ("ranked_passages", "ranking", "ranked", "passages"):
            if isinstance(obj.get(key), list):
                return obj[key]
    raise Unusable("no_ranking", 'the answer had no "ranked_passages" list')


def parse_ranking(content: str | None, finish_reason: str | None, n: int) -> RankAnswer:
    """A window of `n` passages shown as [1]..[n] -> repaired order and reasons."""
    items = _ranked_items(json_object(_check_finish(content, finish_reason)))
    repairs: Counter = Counter()
    order: list[int] = []
    seen: set[int] = set()
    reasons: dict[int, str] = {}
    listwise: dict[int, str] = {}
    for item in items:
        raw_id = item.get("id", item.get("identifier")) if isinstance(item, dict) else item
        ident = _identifier(raw_id)
        if ident is None or not 1 <= ident <= n:
            repairs["unknown"] += 1
            continue
        pos = ident - 1
        if pos in seen:
            repairs["duplicate"] += 1
            continue
        seen.add(pos)
        order.append(pos)
        reason = item.get("reason", item.get("direct_reason")) if isinstance(item, dict) else None
        if isinstance(reason, str) and reason.strip():
            reasons[pos] = reason.strip()
        listwise_reason = item.get("listwise_reason") if isinstance(item, dict) else None
        if isinstance(listwise_reason, str) and listwise_reason.strip():
            listwise[pos] = listwise_reason.strip()
    if not order:
        raise Unusable("no_known_ids", f"the ranking named none of the identifiers 1 to {n}")
    missing = [p for p in range(n) if p not in seen]
    repairs["missing"] += len(missing)
    order.extend(missing)
    repairs["missing_reason"] += n - len(reasons)
    return RankAnswer(order, reasons, +repairs, listwise)


def parse_comparison(content: str | None, finish_reason: str | None) -> tuple[int, str]:
    """-> (preferred: 1, 2 or 0 for a tie, reason)."""
    obj = json_object(_check_finish(content, finish_reason))
    if not isinstance(obj, dict):
        raise Unusable("bad_comparison", 'the answer was not a JSON object with "preferred" and "reason"')
    raw = obj.get("preferred")
    preferred = 0 if raw is None else _identifier(raw)
    if preferred not in (0, 1, 2):
        raise Unusable("bad_comparison", '"preferred" must be 1, 2 or 0')
    reason = obj.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise Unusable("bad_comparison", 'the answer had no "reason" text')
    return preferred, reason.strip()
