"""Prompt templates and their tokenization (docs/design.md, "The student").

A scoring prompt is `template.format(query=..., passage=...)` tokenized by the tokenizer itself, so the
tokenizer adds `<|begin_of_text|>` (never twice) and an untruncated prompt gets exactly the ids that
`tokenizer(prompt_text)` gives a Hugging Face user of the exported model. When a prompt is too long, the
*passage* text is cut at one of its own token boundaries and the prompt re-rendered and re-tokenized, so the
template's end ("Relevance:") always survives; only when passages are already empty is the query cut too.
Text is data, never control: special-token strings inside queries, passages or reasons are split into
ordinary tokens (`split_special_tokens=True`).
"""

from __future__ import annotations

import os
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from r2r_jax.data.records import library_error

BOS_TOKEN = "<|begin_of_text|>"
EOT_TOKEN = "<|eot_id|>"
PAD_TOKEN = "<|finetune_right_pad_id|>"
# Llama-3.x vocabularies hold id 128004 at the slot the 3.1 release names <|finetune_right_pad_id|>;
# some copies of the tokenizer (like the shared one) still call it <|reserved_special_token_2|>.
LLAMA3_PAD_ID = 128004
_LLAMA3_PAD_NAMES = (PAD_TOKEN, "<|reserved_special_token_2|>")


@dataclass(frozen=True)
class SpecialIds:
    """Ids the features need: eot closes every target, pad fills every padded position."""

    eot: int
    pad: int
    bos: int | None


def looks_local(path: str | Path) -> bool:
    """Whether a model or tokenizer name is meant as a local folder, not a Hub id (`org/name`): it is absolute,
    starts with '.' or '~', has two or more separators, or names a folder that exists (`runs/tok`)."""
    text = str(path)
    parts = Path(text).parts
    return (text.startswith(("/", ".", "~")) or os.sep != "/" and os.sep in text or len(parts) > 2
            or (len(parts) == 2 and Path(parts[0]).is_dir()))


def load_tokenizer(path: str | Path):
    """Any Hugging Face tokenizer folder, through `AutoTokenizer`. A local-looking path (`looks_local`) that
    is not there fails at once with FileNotFoundError: transformers would take it for a Hub id and spend
    about a minute of retries offline before saying so."""
    from transformers import AutoTokenizer

    text = str(path)
    if looks_local(text):
        text = str(Path(text).expanduser())
        if not Path(text).exists():
            raise FileNotFoundError(f"tokenizer {path}: no such folder")
    try:
        return AutoTokenizer.from_pretrained(text)
    except Exception as e:  # noqa: BLE001 - a folder without a readable tokenizer (or config): the input's fault,
        # and transformers' own words (over several lines) name no file
        raise library_error(e, text, "cannot load a tokenizer from it ({})", limit=300) from None


def _token_id(tokenizer, token: str) -> int | None:
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or tid == tokenizer.unk_token_id:
        return None
    # some tokenizers map unknown strings to an id without an unk token; check the round trip
    return tid if tokenizer.convert_ids_to_tokens(tid) == token else None


def special_ids(tokenizer) -> SpecialIds:
    """eot = <|eot_id|> (else eos); pad = <|finetune_right_pad_id|>, else pad_token_id, else Llama-3's 128004."""
    eot = _token_id(tokenizer, EOT_TOKEN)
    if eot is None:
        eot = tokenizer.eos_token_id
    if eot is None:
        raise ValueError(f"tokenizer has neither {EOT_TOKEN} nor an eos token to end reason targets")
    pad = _token_id(tokenizer, PAD_TOKEN)
    if pad is None:
        pad = tokenizer.pad_token_id
    if pad is None and len(tokenizer) > LLAMA3_PAD_ID and tokenizer.bos_token == BOS_TOKEN:
        if tokenizer.convert_ids_to_tokens(LLAMA3_PAD_ID) in _LLAMA3_PAD_NAMES:
            pad = LLAMA3_PAD_ID
    if pad is None:
        raise ValueError(f"tokenizer has no {PAD_TOKEN} and no pad_token; set tokenizer.pad_token first")
    return SpecialIds(eot=int(eot), pad=int(pad), bos=tokenizer.bos_token_id)


def check_template(template: str, fields: Sequence[str], tokenizer=None) -> None:
    """The template must use exactly `fields` and must not spell the BOS token (the tokenizer adds it)."""
    used = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    if used != set(fields):
        raise ValueError(f"template {template!r} must use exactly the fields {sorted(fields)}, uses {sorted(used)}")
    bos = getattr(tokenizer, "bos_token", None) or BOS_TOKEN
    if bos in template:
        raise ValueError(f"template {template!r} contains {bos}; the tokenizer adds it, never add it twice")


def template_fit_problem(tokenizer, template: str, max_len: int, comparison: bool = False) -> str | None:
    """Why prompts of `template` cannot fit `max_len` tokens (the template with an empty query and passages
    takes them all, leaving a passage none), or None. Checked once the tokenizer is loaded and before any model
    is: otherwise the first prompt finds it, after the model load."""
    text = render_comparison(template, "", ["", ""], 1) if comparison else render_prompt(template, "", "")
    own = len(encode_texts(tokenizer, [text])[0])
    if own < max_len:
        return None
    passage = "passages" if comparison else "passage"
    return (f"the template alone takes {own} tokens (with an empty query and {passage}), leaving none of the "
            f"limit {max_len} for the {passage}; raise the limit above {own} or shorten the template")


def render_prompt(template: str, query: str, passage: str) -> str:
    return template.format(query=query, passage=passage)


def render_comparison(template: str, query: str, passages: Sequence[str], about: int | None = None) -> str:
    """The comparison prompt lists the compared passages as "[1] text", "[2] text", ...; for a reason about
    one of them (1-based `about`), a last line of the block names it."""
    block = "\n".join(f"[{i}] {p}" for i, p in enumerate(passages, start=1))
    if about is not None:
        block += f"\nExplain passage [{about}] against the others."
    return template.format(query=query, passages=block)


def encode_texts(tokenizer, texts: Sequence[str], *, add_special_tokens: bool = True) -> list[list[int]]:
    """Batch tokenization with special-token strings in the text treated as plain text."""
    if not texts:
        return []
    enc = tokenizer(list(texts), add_special_tokens=add_special_tokens, split_special_tokens=True,
                    return_attention_mask=False)
    return [list(ids) for ids in enc["input_ids"]]


def _token_ends(tokenizer, texts: Sequence[str]) -> dict[str, list[int]]:
    """For each distinct text (tokenized alone): the character offset where each token ends, i.e. the
    places where the text may be cut."""
    todo = sorted({t for t in texts if t})
    out: dict[str, list[int]] = {"": []}
    if not todo:
        return out
    enc = tokenizer(todo, add_special_tokens=False, split_special_tokens=True, return_offsets_mapping=True,
                    return_attention_mask=False)
    for text, offsets in zip(todo, enc["offset_mapping"], strict=True):
        ends, last = [], 0
        for _, end in offsets:
            last = max(last, end)
            ends.append(last)
        out[text] = ends
    return out


def _water_fill(lengths: list[int], budget: int) -> list[int]:
    """Caps c_i <= len_i with sum(c) == min(budget, sum(len)) that shorten the longest pieces first."""
    if sum(lengths) <= budget:
        return list(lengths)
    ordered, used, level = sorted(lengths), 0, 0
    for i, n in enumerate(ordered):
        if used + n * (len(ordered) - i) > budget:  # the rest cannot all keep n tokens
            level = (budget - used) // (len(ordered) - i)
            break
        used += n
    caps = [min(n, level) for n in lengths]
    spare = budget - sum(caps)
    for i, n in enumerate(lengths):
        if spare and n > caps[i]:
            caps[i] += 1
            spare -= 1
    return caps


def _slack_fill(lengths: list[int], budget: int) -> list[int]:
    """`_water_fill`, keeping one token of slack per cut piece: a cut piece usually ends in a word, and the
    text after it (e.g. ".\n" in the original) then no longer merges with its last token."""
    caps = _water_fill(lengths, max(budget, 0))
    cut = sum(c < n for c, n in zip(caps, lengths, strict=True))
    return _water_fill(lengths, max(budget - cut, 0)) if cut else caps


def _shrink(tokenizer, renders: list[Callable[[list[str]], str]], pieces: list[list[str]],
            ids: list[list[int]], max_len: int) -> tuple[list[list[int]], list[list[str]]]:
    """Cut each item's pieces at token boundaries until its render tokenizes to <= max_len ids (or its
    pieces are empty). All items advance together, so each round is one batch tokenizer call."""
    ends_of = _token_ends(tokenizer, [p for ps in pieces for p in ps])
    originals = [list(ps) for ps in pieces]
    ends = [[ends_of[p] for p in ps] for ps in originals]  # cut points in the original pieces
    lengths = [[len(e) for e in es] for es in ends]
    budget = [sum(n) - (len(i) - max_len) for n, i in zip(lengths, ids, strict=True)]
    pieces, ids = [list(ps) for ps in pieces], list(ids)
    active = [k for k in range(len(ids)) if len(ids[k]) > max_len]
    for _ in range(16):
        if not active:
            break
        caps = {k: _slack_fill(lengths[k], budget[k]) for k in active}
        for k in active:
            pieces[k] = [p[: e[c - 1]] if c else "" for p, e, c in zip(originals[k], ends[k], caps[k], strict=True)]
        encoded = encode_texts(tokenizer, [renders[k](pieces[k]) for k in active])
        still = []
        for k, new in zip(active, encoded, strict=True):
            ids[k] = new
            if len(new) > max_len and any(caps[k]):
                lengths[k] = caps[k]
                budget[k] = sum(caps[k]) - max(len(new) - max_len, 1)  # boundary effects: take a little more
                still.append(k)
        active = still
    return ids, pieces


QUERY_SHARE = 0.5  # the most of a prompt's token budget a query may take


@dataclass
class TruncationStats:
    """How many prompts a job had to shorten (a summary line for rerank and training)."""

    prompts: int = 0
    truncated: int = 0  # prompts whose passages (or query) were cut to fit
    queries_cut: int = 0  # of those, prompts whose query was longer than QUERY_SHARE of the budget

    def record(self, prompts: int, truncated: int, queries_cut: int) -> None:
        self.prompts += prompts
        self.truncated += truncated
        self.queries_cut += queries_cut

    def line(self, max_len: int) -> str:
        if not self.truncated:
            return f"no prompt exceeded {max_len} tokens"
        share = 100.0 * self.truncated / max(self.prompts, 1)
        queries = f", {self.queries_cut} of them with the query cut too" if self.queries_cut else ""
        return f"{self.truncated} of {self.prompts} prompts ({share:.1f}%) cut to {max_len} tokens{queries}"


Render = Callable[[str, list[str]], str]


def fit_prompts(tokenizer, render: Render | Sequence[Render], items: Sequence[tuple[str, Sequence[str]]],
                max_len: int, ids: Sequence[list[int]] | None = None,
                stats: TruncationStats | None = None) -> list[list[int]]:
    """Token ids of `render(query, passages)` for each (query, passages) item, each at most `max_len`:
    a query longer than QUERY_SHARE of `max_len` is cut to it, then passages are shortened (longest first);
    a template and query that leave a non-empty passage no tokens at all are an error, not a silent tie.

    `render` is one function for all items or one per item; `ids` may pass the tokenizations of the full
    prompts when they are already known.
    """
    renders = list(render) if isinstance(render, Sequence) else [render] * len(items)
    queries = [q for q, _ in items]
    passages = [list(ps) for _, ps in items]
    if ids is None:
        ids = encode_texts(tokenizer, [r(q, ps) for r, q, ps in zip(renders, queries, passages, strict=True)])
    ids = list(ids)
    over = [k for k in range(len(ids)) if len(ids[k]) > max_len]
    if not over:
        return ids
    # a query may take at most QUERY_SHARE of the prompt: a very long query is cut first, so it cannot
    # leave the passages no tokens (every passage would then score the same)
    query_cap = int(max_len * QUERY_SHARE)
    query_ends = _token_ends(tokenizer, [queries[k] for k in over])
    long_query = [k for k in over if len(query_ends[queries[k]]) > query_cap]
    for k in long_query:
        queries[k] = queries[k][: query_ends[queries[k]][query_cap - 1]] if query_cap else ""
    if long_query:
        for k, new in zip(long_query, encode_texts(tokenizer, [renders[k](queries[k], passages[k])
                                                               for k in long_query]), strict=True):
            ids[k] = new
    got, cut = _shrink(tokenizer, [lambda ps, q=queries[k], r=renders[k]: r(q, ps) for k in over],
                       [passages[k] for k in over], [ids[k] for k in over], max_len)
    still = [j for j, g in enumerate(got) if len(g) > max_len]
    if still:  # passages are empty and the prompt is still too long: cut the query too
        got_q, _ = _shrink(tokenizer, [lambda qs, ps=cut[j], r=renders[over[j]]: r(qs[0], ps) for j in still],
                           [[queries[over[j]]] for j in still], [got[j] for j in still], max_len)
        for j, g in zip(still, got_q, strict=True):
            if len(g) > max_len:
                raise ValueError(f"the template alone needs {len(g)} tokens, more than the limit {max_len}")
            got[j] = g
    for j, k in enumerate(over):
        if any(passages[k]) and not any(cut[j]):
            raise ValueError(f"the template and the query leave no tokens for the passage within {max_len} "
                             "tokens; raise the prompt length limit or shorten the template")
    for k, g in zip(over, got, strict=True):
        ids[k] = g
    if stats is not None:
        stats.record(len(ids), len(over), sum(len(queries[k]) < len(items[k][0]) for k in over))
    return ids


def encode_targets(tokenizer, texts: Sequence[str | None], max_len: int, eot_id: int) -> list[list[int]]:
    """Targets " {text}<|eot_id|>": text tokens cut to max_len - 1, eot always last; no text -> []."""
    if max_len < 1:
        raise ValueError(f"max_target_len must be >= 1, got {max_len}")
    real = [i for i, t in enumerate(texts) if t is not None and t.strip()]
    enc = encode_texts(tokenizer, [" " + texts[i].strip() for i in real], add_special_tokens=False)
    out: list[list[int]] = [[] for _ in texts]
    for i, ids in zip(real, enc, strict=True):
        out[i] = ids[: max_len - 1] + [eot_id]
    return out
