"""What a direct reason says about its passage: that it answers the query (yes), that it does not (no), or
neither (unclear). A small rule set over the reasons' own wording (docs/evaluation.md, "Do the reasons agree
with the ranking?"), so a ranking can be checked against what its reasons say: a top passage whose reason says
"does not answer the question" is a contradiction a reader sees at once.

The rules, from the R2R release's GPT-4 reasons and the students that learn them, in order:

1. An opening "Yes" or "No" is the verdict ("No. The passage does not answer ...").
2. A *denial* is a negated answer or relevance claim: "does not (directly) answer / address the query",
   "not related", "irrelevant", "only tangentially related", "no information", "does not ... at all",
   "least relevant", or a negated content verb ("does not define / provide / mention ..."; not "does not
   provide as much detail as", a comparison). After a contrast ("but", "however", "although") in its
   sentence, a negated content verb denies a *detail*: "... but does not give the hours" (with "directly",
   "but does not directly discuss ...", the answer itself). "X, not Y" is a denial too ("about Ocoee,
   Florida, not Ocoee, Tennessee", "but not about Fine, NY"), and so is "rather than" ("focuses on their
   symptoms rather than their causes").
3. A *claim* is a positive one: "directly answers / defines / explains / mentions ...", "answers the
   question", "provides a definition / the answer", "explains what / how ...", "provides a (clear)
   explanation of how ...", "the most direct / detailed
   information", "relevant to the query", "aligns with the query", "most relevant". A claim with a negation
   or a hedge ("indirectly", "partially", "somewhat", "may", "could", "only") in the three words before it
   does not count; neither does a comparison ("not as directly relevant as passage 1") deny anything.
4. Claims and no denial: yes. Denials and no claim: no. Both: a claim before a contrast whose denials all
   follow it ("directly answers ..., but does not give the year") is yes, since the passage answers the
   query and lacks a detail; else no ("directly mentions X but does not answer the query"). Neither: unclear
   ("This passage describes human trafficking ...").

The rules read English only. Pure string code, so training uses it too: with `data.verdict_first` each
direct reason target opens with its verdict (`with_verdict`), the first token the student writes after the
scoring prompt, at the position its score head reads.
"""

from __future__ import annotations

import re
from typing import Literal

Verdict = Literal["yes", "no", "unclear"]
VERDICTS: tuple[Verdict, ...] = ("yes", "no", "unclear")

_NEG = r"(?:not|never|no longer)"
_NEG_PLAIN = rf"{_NEG}(?!\s+(?:as|so)\b)"  # "not as directly relevant as passage 1" compares, it does not deny
_GAP = r"(?:\s+\w+){0,3}?"  # up to three words between a negation and its verb ("does not directly answer")
_ANSWER_VERBS = r"(?:answer|address|respond|relate|pertain|apply|satisfy|fulfil|fulfill|match|mention the query)"
_CONTENT_VERBS = (r"(?:provide|specify|mention|give|include|define|explain|state|say|list|discuss|cover|contain|"
                  r"describe|identify|tell|offer|name|show|clarify|indicate|focus|talk|refer|address|answer|"
                  r"link|connect|establish|confirm)")
_DENIALS = [
    re.compile(rf"\b{_NEG_PLAIN}{_GAP}\s+{_ANSWER_VERBS}"),  # does not (directly) answer / address the query
    re.compile(rf"\b{_NEG_PLAIN}{_GAP}\s+(?:related|relevant|applicable|pertinent|useful|helpful|on topic)\b"),
    re.compile(r"\b(?:irrelevant|unrelated|off-topic|least relevant)\b"),
    re.compile(r"\b(?:tangentially|loosely|marginally|barely|remotely|vaguely) (?:related|relevant|connected)\b"),
    re.compile(r"(?:,|\bbut)\s*not (?!only|just|necessarily|least)"),  # "about Ocoee, Florida, not Ocoee, TN"
    re.compile(r"\brather than\b"),  # "focuses on their symptoms rather than their causes"
    re.compile(r"\bno\s+(?:\w+\s+)?(?:information|mention|answer|relevance|connection|relation|details?|"
               r"explanation|definition)\b"),  # "provides no explanation", "no relevant information"
    re.compile(rf"\b{_NEG}{_GAP}\s+{_CONTENT_VERBS}\w*\s+(?:any|anything)\b"),  # does not provide any ...
    re.compile(rf"\b{_NEG}\b[^.;]*\bat all\b"),  # does not mention X at all
    re.compile(r"\b(?:fails|failing) to\b|\black(?:s|ing)? (?:any|the|a)\b|\bnothing (?:about|to do|related)\b"),
]
_CONTRAST = re.compile(r"\b(?:but|however|although|though|yet|while|whereas)\b")
_LACKS = re.compile(rf"\b{_NEG_PLAIN}{_GAP}\s+{_CONTENT_VERBS}")  # does not provide / mention / define ...
_AS_MUCH = re.compile(r"\w*\s+(?:as|so)\b")
_CLAIMS = [
    re.compile(r"\bdirectly\s+(?:answer|address|defin|explain|describ|provid|stat|mention|discuss|list|giv|respond|"
               r"identif|specif|tell|say|nam|relat|relevant|confirm|show|indicat)\w*"),
    re.compile(r"\b(?:answers|addresses)\s+the\s+(?:query|question|user)"),
    re.compile(r"\b(?:provides|gives|offers|contains|includes|states|has)\s+(?:a|an|the)(?:\s+\w+){0,2}?\s+"
               r"(?:answer|definition)\b"),
    re.compile(r"\b(?:provides|gives|offers|contains|includes)\s+(?:a|an|the)(?:\s+\w+){0,2}?\s+"
               r"(?:explanation|description) of (?:what|how|why|when|where|who|which)\b"),
    re.compile(r"\b(?:is|are|highly|very|most|directly|clearly|quite)\s+relevant\b"),
    re.compile(r"\b(?:relevant (?:to|for)|align(?:s|ing)? with) the (?:query|question)\b"),
    re.compile(r"\bexactly what\b"),
    re.compile(r"\bthe most (?:detailed|relevant|specific|complete|accurate|comprehensive|direct)\b"),
    re.compile(r"\bdirect(?: and \w+)? (?:answer|information|evidence|definition|explanation|response)\b"),
    re.compile(r"\b(?:explains|describes|defines|states|lists|tells|shows)\s+(?:what|how|why|when|where|who|which)\b"),
]
_HEDGE = re.compile(rf"\b(?:{_NEG}|no|indirectly|partially|partly|somewhat|may|might|could|less|not as|only)\b")
_OPENING = re.compile(r"^\W*(yes|no)\b\W*", re.IGNORECASE)  # the word and what closes it: "Yes. ", "no, "


def _normal(reason: str) -> str:
    text = reason.lower().replace("’", "'")
    text = re.sub(r"\b(does|do|did|is|are|was|were|has|have|can|could|would)n't\b", r"\1 not", text)
    text = text.replace("can't", "can not").replace("won't", "will not").replace("cannot", "can not")
    return re.sub(r"\s+", " ", text).strip()


def _claims(text: str) -> list[int]:
    """Start offsets of the positive claims that no negation or hedge in the three words before weakens."""
    out = []
    for pattern in _CLAIMS:
        for m in pattern.finditer(text):
            before = " ".join(text[: m.start()].split()[-3:])
            if not _HEDGE.search(before):
                out.append(m.start())
    return sorted(out)


def _denials(text: str) -> tuple[list[int], list[int]]:
    """Start offsets of (denials of the answer itself, denials of a detail: a negated content verb after a
    contrast, "..., but does not give the year"). A negated content verb with no contrast before it in its
    sentence ("does not define 'literal'") denies the answer itself."""
    plain = {m.start() for p in _DENIALS for m in p.finditer(text)}
    detail = set()
    for m in _LACKS.finditer(text):
        if _AS_MUCH.match(text, m.end()):  # "does not provide as much detail as passage 1": a comparison
            continue
        sentence = text[text.rfind(".", 0, m.start()) + 1: m.start()]
        about_answer = "directly" in m.group(0)  # "but does not directly discuss the benefits": the answer
        (detail if _CONTRAST.search(sentence) and not about_answer else plain).add(m.start())
    return sorted(plain), sorted(detail - plain)


def verdict(reason: str) -> Verdict:
    """'yes' when the reason says its passage answers the query, 'no' when it says it does not, else
    'unclear' (the module docstring lists the rules)."""
    text = _normal(reason)
    opening = _OPENING.match(text)
    if opening:
        return "yes" if opening.group(1) == "yes" else "no"
    claims = _claims(text)
    plain, detail = _denials(text)
    if not plain and not detail:
        return "yes" if claims else "unclear"
    if not claims:
        return "no"
    first_denial = min(plain + detail)
    if not plain and claims[0] < first_denial:  # answers the query, lacks a detail
        return "yes"
    return "no"


OPENING_WORDS: dict[Verdict, str] = {"yes": "Yes.", "no": "No."}


def opens_with_verdict(reason: str) -> bool:
    """Whether the reason opens with a "Yes" or "No" of its own (a `data.verdict_first` student's do)."""
    return _OPENING.match(reason) is not None


def without_verdict(reason: str) -> str:
    """The reason without its opening "Yes." / "No.": the text a verdict-first student wrote after its
    verdict, whose own verdict says whether the opening word and the explanation agree."""
    opening = _OPENING.match(reason)
    return reason[opening.end():] if opening else reason


def with_verdict(reason: str) -> str:
    """The reason opened with the verdict it states ("Yes. This passage defines ..."); a reason that states
    none, or already opens with it, as it is: the target never claims more than the teacher wrote."""
    if opens_with_verdict(reason):
        return reason
    said = verdict(reason)
    return reason if said == "unclear" else f"{OPENING_WORDS[said]} {reason.lstrip()}"
