"""`data.verdict`: each rule on reasons as the R2R release's GPT-4 teacher and the students write them, and the
rule set as a whole against the teacher's own ranking of the release."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from r2r_jax.data.verdict import VERDICTS, verdict, with_verdict

# (reason, verdict): the release's wording unless marked as a student's
CASES = [
    # 1. an opening yes / no
    ("No. The passage does not answer the question about why honeybees swarm.", "no"),  # student
    ("Yes, the passage gives the boiling point of water at sea level.", "yes"),
    ("Nonetheless the passage directly answers the query.", "yes"),  # "no" only as a whole word
    # 2. denials
    ("The passage does not directly answer the query, but it does mention Lawton, OK.", "no"),
    ("This passage discusses the rhetoric of mental health, which is not directly relevant to the query.", "no"),
    ("This passage is about virtual reality technology, not bump keys, making it irrelevant to the query.", "no"),
    ("This passage does not mention Nabumetone at all, making it less relevant to the query.", "no"),
    ("This passage does not provide any information about Ross Cameron's age.", "no"),
    ("The passage does not directly define 'literal', nor does it provide a definition of 'define'.", "no"),
    ("This passage mentions ukulele in the context of sheet music, which is only tangentially related to the query.",
     "no"),
    ("The passage mentions Ocoee, but it refers to Ocoee, Florida, not Ocoee, Tennessee.", "no"),
    ("The passage primarily focuses on the definition and symptoms of hot flashes, rather than their causes.", "no"),
    ("This passage mentions boiler room scams but provides no explanation of what such a scam entails.", "no"),
    ("This passage discusses the popularity of the name 'Halima' but does not provide its meaning.", "no"),
    ("This passage mentions the weather in Thira, Santorini in August, but it doesn't provide specific details.",
     "no"),
    # 3. claims, and what weakens them
    ("This passage directly addresses the query by stating the temperature of meatloaf when it's done.", "yes"),
    ("The passage provides a phone number for T. Rowe Price, directly answering the query.", "yes"),
    ("This passage also answers the query by providing the price of Patron Anejo 750ml.", "yes"),
    ("This passage provides a clear and direct definition of 'promulgate'.", "yes"),
    ("This passage explains what a CEO does and how they are compensated.", "yes"),
    ("This passage provides information about the symptoms of acute pyelonephritis, which is relevant to the query.",
     "yes"),
    ("This passage provides the most detailed information about the cost of hardwood floor refinishing.", "yes"),
    ("This passage indirectly answers the query by mentioning that scars can be caused by many factors.", "unclear"),
    ("This passage mentions 'price tag clipart'. However, it's not as directly relevant as the other passages.",
     "unclear"),
    ("The passage mentions multiple gift cards sold at Costco, but does not provide as much detail as passage 1.",
     "unclear"),
    # 4. both, and neither
    ("This passage provides a definition of an adiabatic process. However, the definition is not as clear as in "
     "passage 3.", "yes"),
    ("This passage directly answers the query about the Buick Verano's mileage, but does not give the model year.",
     "yes"),  # answers it, lacks a detail
    ("This passage directly mentions Lawton, but it does not answer the query.", "no"),
    ("This passage provides a definition of garlic, but it doesn't directly discuss the benefits of garlic "
     "supplements.", "no"),
    ("The passage provides a clear explanation of how bees turn nectar into honey.", "yes"),  # student
    ("This passage could provide an explanation of why the sky is blue.", "unclear"),  # hedged
    ("This passage describes human trafficking as a form of modern-day slavery.", "unclear"),
    ("This passage discusses enzyme inhibitors, which is related to the query.", "unclear"),  # student
    ("", "unclear"),
]


@pytest.mark.parametrize(("reason", "expected"), CASES)
def test_rules(reason, expected):
    assert verdict(reason) == expected


def test_case_and_contractions_do_not_matter():
    assert verdict("THIS PASSAGE DOESN’T ANSWER THE QUERY.") == "no"
    assert verdict("this passage   directly\nanswers the query") == "yes"


def test_the_teachers_own_reasons_follow_its_ranking(shared_data):
    """On the whole release (2,500 direct reasons), what GPT-4 says of a passage tracks where it ranked it:
    mostly 'yes' at rank 1, mostly 'no' at rank 5, and the shares move monotonically between them. A rule set
    that read the wording wrongly (or said 'unclear' to everything) could not do this."""
    from r2r_jax.data.importers import import_file

    records, _ = import_file(shared_data / "teacher" / "r2r_gpt4_msmarco_500.jsonl", "r2r")
    by_rank: dict[int, Counter] = {r: Counter() for r in range(1, 6)}
    for rec in records:
        rank = rec.rank_of()
        for docid, reason in rec.direct_reasons.items():
            by_rank[rank[docid]][verdict(reason)] += 1
    share = {r: {v: c[v] / sum(c.values()) for v in VERDICTS} for r, c in by_rank.items()}
    assert share[1]["yes"] > 0.8 and share[1]["no"] < 0.05
    assert share[5]["no"] > 0.8 and share[5]["yes"] < 0.05
    yes = [share[r]["yes"] for r in range(1, 6)]
    no = [share[r]["no"] for r in range(1, 6)]
    assert yes == sorted(yes, reverse=True) and no == sorted(no)


@pytest.mark.parametrize(("reason", "expected"), CASES)
def test_a_verdict_opening_states_the_reasons_own_verdict(reason, expected):
    """`data.verdict_first` targets: "Yes." / "No." before a reason that states it, nothing before one that
    states none or already opens with it; the opening never changes what the reason says."""
    opened = with_verdict(reason)
    assert verdict(opened) == expected
    if expected == "unclear" or re.match(r"\W*(yes|no)\b", reason.lower()):
        assert opened == reason
    else:
        assert opened == f"{'Yes.' if expected == 'yes' else 'No.'} {reason}"


def test_verdict_first_changes_only_the_direct_targets(tmp_path):
    """tokenize_records with `data.verdict_first`: each direct target decodes to the teacher's reason opened
    with its verdict; prompts, comparison targets and reason-less candidates are what they were without it."""
    from pathlib import Path

    from r2r_jax.config import DataConfig
    from r2r_jax.data.features import tokenize_records
    from r2r_jax.data.records import read_records
    from r2r_jax.data.templates import load_tokenizer
    from r2r_jax.testing.demo_tokenizer import build_demo_tokenizer

    demo = Path(__file__).resolve().parents[1] / "r2r_jax" / "demo_data" / "teacher.jsonl"
    records = list(read_records(demo))[:12]
    tok = load_tokenizer(build_demo_tokenizer(tmp_path / "tok"))
    plain_cfg = DataConfig(max_target_len=96)
    plain = tokenize_records(records, tok, plain_cfg)
    opened = tokenize_records(records, tok, DataConfig(max_target_len=96, verdict_first=True))
    said = Counter()
    for rec, a, b in zip(records, plain, opened, strict=True):
        assert [p.tolist() for p in a.prompts] == [p.tolist() for p in b.prompts]
        assert [t.tolist() for t in a.cmp_targets] == [t.tolist() for t in b.cmp_targets]
        for cand, target in zip(rec.candidates, b.targets, strict=True):
            reason = rec.direct_reasons.get(cand.docid)
            text = tok.decode(target.tolist(), skip_special_tokens=True).strip()
            assert text == (with_verdict(reason).strip() if reason else "")
            said[verdict(reason) if reason else "none"] += 1
    assert said["yes"] and said["no"]  # both openings were exercised


def test_without_verdict_drops_only_an_opening_yes_or_no():
    from r2r_jax.data.verdict import without_verdict

    assert without_verdict("Yes. This passage directly answers the query.") == \
        "This passage directly answers the query."
    assert without_verdict("No, it does not answer the query.") == "it does not answer the query."
    for kept in ("Yesterday's forecast is here.", "Nothing about the query.", "This passage says yes."):
        assert without_verdict(kept) == kept
    assert without_verdict(with_verdict("This passage does not answer the query.")) == \
        "This passage does not answer the query."
