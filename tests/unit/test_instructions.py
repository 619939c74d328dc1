"""The `instructions` task (IFEval-style verifiable constraints) and the `constraints`
verifier: every checker on replies that follow it and replies that do not, strict and loose
as IFEval defines them, seeded and conflict-free draws, one-line parameter errors, the
verifier's fraction and best-of-N with it."""

from __future__ import annotations

import json
import random
import re
from typing import Any

import pytest

import testtime.verifiers  # noqa: F401  (registers the verifiers; the tasks import below)
from testtime.core import constraints as cs
from testtime.core.errors import ConfigError
from testtime.core.types import Candidate, Message, Problem
from testtime.generators.fake import FakeGenerator
from testtime.strategies.base import STRATEGIES
from testtime.strategies.run import build_verifier, solve
from testtime.tasks.base import TASKS
from testtime.tasks.instructions import MAX_CONSTRAINTS, InstructionsTask
from testtime.verifiers.base import traits_of


def task(**params: Any) -> InstructionsTask:
    built = TASKS.build(TASKS.spec("instructions", {"size": 6} | params))
    assert isinstance(built, InstructionsTask)
    return built


def problem(*constraints: dict[str, Any]) -> Problem:
    return Problem((Message("user", "Write something."),), metadata={"constraints": constraints})


# (constraint, a reply that follows it, a reply that does not)
CASES: list[tuple[dict[str, Any], str, str]] = [
    ({"kind": "words", "relation": "at_least", "n": 5}, "one two three four five", "one two"),
    ({"kind": "words", "relation": "at_most", "n": 5}, "a b c", "a b c d e f"),
    ({"kind": "words", "relation": "between", "low": 3, "high": 5}, "a b c d", "a b"),
    ({"kind": "words", "relation": "between", "low": 3, "high": 5}, "a b c", "a b c d e f"),
    (
        {"kind": "sentences", "relation": "at_least", "n": 3},
        "One. Two! Three?",
        "Dr. Smith came. He left.",
    ),
    (
        {"kind": "sentences", "relation": "at_most", "n": 2},
        "It is 3.5 m long. That is all.",
        "1. Go. 2. Stop. 3. Wait.",
    ),
    ({"kind": "bullets", "n": 2}, "**Bold** intro\n* a\n* b", "- a\n- b\n- c"),
    ({"kind": "bullets", "n": 3}, "Intro:\n  - a\n* b\n- c", "* a\n**b**\n* c"),
    ({"kind": "paragraphs", "n": 2}, "***\nfirst\n***\nsecond", "first\n***\n \n***\nsecond"),
    ({"kind": "paragraphs", "n": 3}, "a\n***\nb\n***\nc", "a\n***\nb"),
    ({"kind": "sections", "n": 2}, "SECTION 1\na\nSECTION 2\nb", "Section 1\na\nSection 2\nb"),
    ({"kind": "title"}, "<<My day>>\nIt was fine.", "<< >>\n<<a\nb>>"),
    ({"kind": "highlights", "n": 2}, "*one* and **two**", "*one* only\n* a\n**  **"),
    ({"kind": "placeholders", "n": 2}, "[name] lives at [address]", "[name] only"),
    ({"kind": "json", "keys": []}, '```json\n{"a": 1}\n```', 'Here it is: {"a": 1}'),
    (
        {"kind": "json", "keys": ["title", "summary"]},
        '{"title": "x", "summary": "y"}',
        '{"title": "x"}',
    ),
    ({"kind": "json", "keys": ["title"]}, '{"title": 1}', '["title"]'),
    ({"kind": "postscript"}, "Hello.\nP.S. See you.", "Hello. PS see you."),
    (
        {"kind": "end_phrase", "phrase": "Any other questions?"},
        '"Done. any other questions?"  ',
        "Any other questions? Yes.",
    ),
    ({"kind": "quotation"}, '"Hello there."', '"Hello there.'),
    ({"kind": "quotation"}, '  "x"  ', '"'),
    (
        {"kind": "keywords", "words": ["river", "candle"]},
        "The RIVER and the candles.",
        "The river.",
    ),
    (
        {"kind": "forbidden", "words": ["very", "good"]},
        "Everything is goodness.",
        "It was Very nice.",
    ),
    (
        {"kind": "keyword_frequency", "word": "lantern", "n": 2},
        "A lantern, a LANTERN.",
        "One lantern.",
    ),
    ({"kind": "letter_frequency", "letter": "z", "n": 3}, "Zig zag z", "zig zag"),
    ({"kind": "capital_words", "n": 3}, "I saw NASA in the USA.", "I saw Nasa."),
    ({"kind": "lowercase"}, "all lower, 123.", "All lower."),
    ({"kind": "lowercase"}, "fine", "123"),
    ({"kind": "uppercase"}, "ALL CAPS, 123.", "ALL CAPs."),
    ({"kind": "no_commas"}, "No commas here.", "One, two."),
]


@pytest.mark.parametrize(("constraint", "good", "bad"), CASES)
def test_each_checker_passes_a_reply_that_follows_and_fails_one_that_does_not(
    constraint: dict[str, Any], good: str, bad: str
) -> None:
    assert cs.follows(good, constraint)
    assert not cs.follows(bad, constraint)


def test_every_kind_has_cases_and_there_are_at_least_twelve() -> None:
    assert len(cs.KINDS) >= 12
    assert {c["kind"] for c, _, _ in CASES} == set(cs.KINDS)


def test_a_blank_reply_follows_nothing_even_what_it_would_pass() -> None:
    forbidden = {"kind": "forbidden", "words": ["very"]}
    assert cs.follows("fine", forbidden) and not cs.follows("   ", forbidden)
    assert cs.results("", [forbidden, {"kind": "no_commas"}], "loose") == (False, False)


def test_counts_follow_their_stated_definitions() -> None:
    assert cs.count_words("Don't stop-now, 3 times!") == 6  # \w+ runs, as IFEval
    assert cs.count_sentences("e.g. this. And Mr. Brown's 2.5 pies! Really?") == 3
    assert cs.count_sentences("1. Milk\n2. Eggs") == 2  # '1.' is no sentence; 'Milk 2' ends none
    assert cs.count_sentences('He said "stop." Then left') == 2


# -- strict and loose -------------------------------------------------------------------------
def test_a_first_line_like_sure_here_it_is_fails_strict_and_passes_loose() -> None:
    reply = 'Sure, here it is:\n"my answer has no capitals"'
    p = problem({"kind": "quotation"}, {"kind": "lowercase"}, {"kind": "no_commas"})
    strict, loose = task(mode="strict"), task(mode="loose")
    assert strict.followed(p, reply) == (False, False, False)
    assert loose.followed(p, reply) == (True, True, True)
    assert not strict.check(p, reply) and loose.check(p, reply)
    assert strict.followed(p, reply, mode="loose") == (True, True, True)  # per call, too


def test_loose_removes_the_last_line_and_markdown_stars_as_ifeval_does() -> None:
    ends = {"kind": "end_phrase", "phrase": "Any other questions?"}
    assert not cs.follows("Ok.\nAny other questions?\nHope this helps!", ends)
    assert cs.follows("Ok.\nAny other questions?\nHope this helps!", ends, "loose")
    assert not cs.follows("Ok. **Any other questions?**", ends)
    assert cs.follows("Ok. **Any other questions?**", ends, "loose")
    assert cs.variants("a\nb*\nc", "loose") == (
        "a\nb*\nc", "b*\nc", "a\nb*", "b*", "a\nb\nc", "b\nc", "a\nb", "b"
    )  # fmt: skip


def test_loose_never_accepts_on_a_blank_variant() -> None:
    # removing the only line leaves nothing: the blank variant cannot pass 'at most 0 words'
    assert not cs.follows("one", {"kind": "words", "relation": "at_most", "n": 0}, "loose")


def test_each_constraint_is_judged_on_its_own_variants() -> None:
    reply = "Sure!\nall lower here\nBYE"  # lowercase needs both lines cut, no_commas holds
    p = problem({"kind": "lowercase"}, {"kind": "no_commas"})
    assert task(mode="loose").followed(p, reply) == (True, True)


# -- the task ---------------------------------------------------------------------------------
def test_the_same_parameters_give_the_same_problems_and_others_differ() -> None:
    first = task(seed=3).problems()
    assert first == task(seed=3).problems()
    assert [p.id for p in first] == [f"instructions-K1-3-{i}" for i in range(6)]
    assert [p.prompt for p in first] != [p.prompt for p in task(seed=4).problems()]
    assert task(size=10).problems()[:6] == task().problems()


def test_fewer_constraints_are_the_first_of_more_on_the_same_prompt() -> None:
    for one, three in zip(
        task(constraints=1).problems(), task(constraints=3).problems(), strict=True
    ):
        assert three.metadata["constraints"][:1] == one.metadata["constraints"]
        assert three.prompt.startswith(one.prompt)


def test_each_prompt_states_its_constraints_as_plain_data() -> None:
    for p in task(constraints=4, size=30).problems():
        drawn = p.metadata["constraints"]
        assert len(drawn) == 4 and len({c["kind"] for c in drawn}) == 4
        assert json.loads(json.dumps(drawn)) == [dict(c) for c in drawn]  # plain data
        assert all(cs.say(c) in p.prompt for c in drawn)


def test_no_conflicting_pair_is_ever_drawn() -> None:
    for name, kind in cs.KINDS.items():
        assert set(kind.conflicts) <= set(cs.KINDS) - {name}, name
    pairs = {("lowercase", "uppercase"), ("json", "bullets"), ("quotation", "end_phrase")}
    assert all(cs.conflict(a, b) and cs.conflict(b, a) for a, b in pairs)
    seen: set[str] = set()
    for seed in range(3000):
        drawn = cs.draw(random.Random(seed), MAX_CONSTRAINTS)
        names = [c["kind"] for c in drawn]
        seen.update(names)
        assert not any(cs.conflict(a, b) for i, a in enumerate(names) for b in names[i + 1 :])
    assert seen == set(cs.KINDS)


def test_no_draw_requires_a_word_it_forbids() -> None:
    required = [*cs.KEYWORDS, *cs.END_PHRASES, *cs.JSON_KEYS, "P.S.", "SECTION"]
    for word in cs.FORBIDDEN:
        assert not any(re.search(rf"\b{word}\b", r, re.IGNORECASE) for r in required), word
        assert not any(word in k for k in cs.KEYWORDS), word  # keywords match inside words
    assert not any("," in p for p in cs.END_PHRASES)  # an end phrase never breaks no_commas


def test_the_answer_is_the_whole_reply_and_votes_group_only_identical_texts() -> None:
    t = task()
    assert t.extract("  Line one.\n\n* two\n") == "Line one.\n\n* two"
    assert t.extract(" \n ") is None and not t.check(t.problems()[0], None)
    assert t.same(" a\nb ", "a\nb")
    assert not t.same("a\nb", "a b") and not t.same("a,b", "a, b") and not t.same("A", "a")
    assert t.graded(t.problems()[0]) and not t.graded(problem())


def test_unknown_or_malformed_constraints_are_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="unknown constraint kind 'haiku'; available: bullets"):
        cs.follows("x", {"kind": "haiku"})
    with pytest.raises(ConfigError, match="lacks or mistypes a parameter") as caught:
        cs.follows("x", {"kind": "words", "relation": "at_least"})
    assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="mode must be one of strict, loose"):
        cs.results("x", [{"kind": "title"}], "lax")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"constraints": 0}, f"'constraints' must be 1 to {MAX_CONSTRAINTS}"),
        ({"constraints": MAX_CONSTRAINTS + 1}, f"'constraints' must be 1 to {MAX_CONSTRAINTS}"),
        ({"mode": "lax"}, "'mode' must be one of 'strict', 'loose'"),
        ({"size": 0}, "'size' must be > 0"),
        ({"constraints": "two"}, "'constraints' must be an integer"),
        ({"style": "ifeval"}, "no parameter 'style'"),
    ],
)
def test_bad_parameters_are_refused_in_one_line(params: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)) as caught:
        TASKS.spec("instructions", params)
    assert "\n" not in str(caught.value)


def test_the_class_refuses_a_bad_mode_too() -> None:
    with pytest.raises(ConfigError, match="strict or loose"):
        InstructionsTask(size=1, seed=0, constraints=1, mode="lax")  # type: ignore[arg-type]


# -- the verifier -----------------------------------------------------------------------------
THREE = problem(
    {"kind": "lowercase"}, {"kind": "no_commas"}, {"kind": "end_phrase", "phrase": "Bye."}
)


async def test_the_verifier_scores_the_fraction_of_constraints_followed() -> None:
    v = build_verifier("constraints")
    replies = ["Hi, there", "Hi there", "hi there", "hi there. bye.", "Sure:\nhi there. bye."]
    got = await v.score(THREE, [Candidate(r, r) for r in replies])
    assert got.values == pytest.approx([0, 1 / 3, 2 / 3, 1, 2 / 3])
    assert got.cost.flops == 0
    loose = await build_verifier("constraints", {"mode": "loose"}).score(
        THREE, [Candidate(replies[-1], None)]
    )
    assert loose.values == (1.0,)  # the text is scored, not an extracted answer
    assert traits_of("constraints").reads_gold


async def test_the_verifier_refuses_a_problem_without_constraints() -> None:
    v = build_verifier("constraints")
    with pytest.raises(ConfigError, match="use it with --task instructions") as caught:
        await v.score(Problem.from_prompt("Hi", id="p1"), [Candidate("x", "x")])
    assert "'p1'" in str(caught.value) and "\n" not in str(caught.value)


async def test_best_of_n_with_the_exact_checker_picks_the_reply_that_follows_most() -> None:
    t = task(constraints=1)
    p = Problem(THREE.messages, id="three", metadata=THREE.metadata)
    replies = ["Hi, there", "hi there. bye.", "Hi there"]
    gen = FakeGenerator(scripts={"Write something.": replies})
    spec = STRATEGIES.spec("best_of_n", {"n": 3})
    verifier = build_verifier("constraints", task=t)
    result = await solve(p, spec, gen, task=t, verifier=verifier)
    assert result.answer == "hi there. bye." and result.correct
