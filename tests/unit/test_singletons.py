"""When every sample is its own answer group (free text), a vote decides nothing: core says so
once (core.voting.all_singletons / singletons), every voting strategy's trace carries it with
what chose instead, the CLI prints one line, and the fallback rule ranks by likelihood."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import testtime.strategies  # noqa: F401  (registers the strategies)
from testtime.cli.run import singletons_note
from testtime.core.budget import Budget
from testtime.core.cost import Cost
from testtime.core.errors import ConfigError
from testtime.core.types import Candidate, Completion, Problem, Result
from testtime.core.voting import FIRST, SINGLETONS, all_singletons, fallback, group, singletons
from testtime.generators.fake import FakeGenerator
from testtime.strategies.across import solve_batch
from testtime.strategies.base import STRATEGIES
from testtime.strategies.run import solve
from testtime.verifiers.base import Verifier
from testtime.verifiers.fake import FakeVerifier

Q = "Write a haiku about rain."
P = Problem.from_prompt(Q, id="haiku")
HAIKUS = [  # four texts, four answers (each its last line)
    "Grey clouds drift away\nand the puddles shine",
    "Rain on the roof taps\nsoftly through the night",
    "Rain on the roof drums\nloud until the dawn",
    "Wet leaves in the wind\nbow to the cold rain",
]
AGREE = ["Rain falls.\nAnswer: 7", "Rain falls.\nAnswer: 7", "Sun.\nAnswer: 8", "Rain.\nAnswer: 7"]


def cand(answer: str | None, logprobs: tuple[float, ...] | None = None, id: int = 0) -> Candidate:
    comp = Completion("x", 1, len(logprobs or ()), "eos", logprobs=logprobs)
    return Candidate("x", answer, completion=comp, id=id)


# -- core ------------------------------------------------------------------------------------


def test_all_singletons_needs_two_answers_none_agreeing() -> None:
    assert all_singletons(group([cand("a"), cand("b"), cand(None)]))
    assert not all_singletons(group([cand("a"), cand("b"), cand("a")]))
    assert not all_singletons(group([cand("a")]))  # one sample: nothing to disagree
    assert not all_singletons(group([]))
    assert singletons(group([cand("a"), cand("b")])) == {"groups": SINGLETONS, "selection": FIRST}
    assert singletons(group([cand("a"), cand("b")]), "verifier")["selection"] == "verifier"
    assert singletons(group([cand("a"), cand("a")])) == {}


def test_the_likelihood_fallback_takes_the_highest_mean_token_logprob() -> None:
    cands = [
        cand(None, (0.0,), id=0),  # no answer: never chosen
        cand("a", (-2.0, -2.0), id=1),
        cand("b", (-0.5, -1.5), id=2),  # mean -1.0: the likeliest
        cand("c", None, id=3),  # sampled without logprobs: last
        cand("d", (-1.0, -1.0), id=4),  # ties with b: the first wins
    ]
    pick, rule = fallback(cands, "likelihood")
    assert (pick and pick.id, rule) == (2, "likelihood")
    assert fallback(cands, "first")[0] == cands[1] and fallback(cands, "first")[1] == FIRST


def test_the_likelihood_fallback_without_logprobs_says_first() -> None:
    pick, rule = fallback([cand("a"), cand("b")], "likelihood")
    assert (pick and pick.answer, rule) == ("a", FIRST)
    assert fallback([cand(None)], "likelihood") == (None, FIRST)
    with pytest.raises(ConfigError, match="likelihood"):
        fallback([cand("a")], "usc")


# -- every voting strategy says so ------------------------------------------------------------


def run(
    name: str, params: dict[str, Any], texts: list[str], verifier: Verifier | None = None
) -> Result:
    spec = STRATEGIES.spec(name, params)
    gen = FakeGenerator({Q: texts})
    return asyncio.run(solve(P, spec, gen, verifier=verifier, max_tokens=32, seed=0))


WET = FakeVerifier(lambda problem, c: float("Wet" in c.text))  # prefers HAIKUS[3]
VOTERS: list[tuple[str, dict[str, Any], Verifier | None, str]] = [
    ("self_consistency", {"n": 4}, None, FIRST),
    ("adaptive_consistency", {"max_samples": 4}, None, FIRST),
    ("adaptive_consistency", {"max_samples": 4, "rule": "doubling"}, None, FIRST),
    ("weighted_majority", {"n": 4}, WET, "verifier"),
    ("best_of_majority", {"n": 4, "alpha": 0.2}, WET, "verifier"),  # keeps every answer
    ("best_of_majority", {"n": 4, "alpha": 0.5}, WET, FIRST),  # keeps none: the first
]


@pytest.mark.parametrize(("name", "params", "verifier", "selection"), VOTERS)
def test_a_vote_over_singletons_says_so_and_what_chose(
    name: str, params: dict[str, Any], verifier: Verifier | None, selection: str
) -> None:
    r = run(name, params, HAIKUS, verifier)
    t = r.trace or {}
    assert (t.get("groups"), t.get("selection")) == (SINGLETONS, selection)
    assert len(r.candidates) == 4
    assert r.chosen == (0 if selection == FIRST else 3)


@pytest.mark.parametrize(("name", "params", "verifier", "selection"), VOTERS)
def test_a_vote_with_agreement_says_nothing(
    name: str, params: dict[str, Any], verifier: Verifier | None, selection: str
) -> None:
    t = run(name, params, AGREE, verifier).trace or {}
    assert "groups" not in t and "selection" not in t


def test_one_budget_across_problems_says_so_per_problem() -> None:
    other = "What is 3 + 4?"
    gen = FakeGenerator({Q: HAIKUS, other: AGREE})
    problems = [P, Problem.from_prompt(other, id="sum")]
    got = asyncio.run(solve_batch(problems, gen, total_budget=Budget(samples=8), initial=4, cap=4))
    haiku, agreed = got.results
    assert (haiku.trace or {}).get("groups") == SINGLETONS and haiku.chosen == 0
    assert "groups" not in (agreed.trace or {})


# -- the CLI's line ---------------------------------------------------------------------------


def result(trace: dict[str, Any] | None) -> Result:
    return Result("p", "a", (), Cost(), {"name": "self_consistency"}, trace=trace)


def test_the_cli_notes_singletons_in_one_line() -> None:
    alone = result({"groups": SINGLETONS, "selection": FIRST})
    line = singletons_note([alone])
    assert SINGLETONS in line and "first sample stands" in line and "\n" not in line
    some = singletons_note([alone, result({"votes": {}}), result(None)])
    assert "on 1 of 3 problems" in some
    judged = singletons_note([result({"groups": SINGLETONS, "selection": "verifier"})])
    assert "chosen by verifier" in judged
    assert singletons_note([result({"votes": {"a": 2.0}})]) == ""
