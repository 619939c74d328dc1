"""Sequential revisions and verifier-guided refinement on the scripted fake."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import testtime.strategies  # noqa: F401  (registers the strategies)
from testtime.core.budget import Budget
from testtime.core.errors import BudgetError, ConfigError
from testtime.core.types import Problem, Result
from testtime.generators.fake import FakeGenerator
from testtime.strategies.base import STRATEGIES
from testtime.strategies.run import build_verifier, solve
from testtime.tasks.base import Task
from testtime.verifiers.base import Verifier
from testtime.verifiers.fake import FakeVerifier

Q = "What is 3 + 4?"
P = Problem.from_prompt(Q, answer="7", id="q")
RIGHT = "3 + 4 = 7\n\nAnswer: 7"
WRONG = "3 + 4 = 8\n\nAnswer: 8"


class Queue(FakeGenerator):
    """Attempts in this exact order, whatever prefix each request continues."""

    def __init__(self, texts: list[str]) -> None:
        super().__init__({Q: texts})
        self.queue = list(texts)

    def _pick(self, script: Any, options: Any, req: Any) -> list[str]:
        return [self.queue.pop(0) for _ in range(req.n)]


class Sums(Task):
    name = "sums"

    def problems(self) -> Sequence[Problem]:
        return [P]


def run(
    name: str,
    gen: FakeGenerator,
    verifier: Verifier | None = None,
    budget: Budget | None = None,
    **params: Any,
) -> Result:
    spec = STRATEGIES.spec(name, params)
    return asyncio.run(solve(P, spec, gen, task=Sums(), verifier=verifier, budget=budget))


def test_each_revision_sees_its_chains_earlier_attempts() -> None:
    gen = Queue([WRONG, RIGHT, WRONG, RIGHT])
    r = run("revise", gen, n=4, sequential=4, context=2)
    retry = STRATEGIES.spec("revise").params.retry  # type: ignore[attr-defined]
    prefixes = [q.prefix for q in gen.requests]
    assert prefixes[0] == ""
    assert prefixes[1] == WRONG + retry
    assert prefixes[2] == WRONG + retry + RIGHT + retry
    assert prefixes[3] == RIGHT + retry + WRONG + retry  # only the last two (context=2)
    texts = [c.text for c in r.candidates]
    assert texts == [WRONG, RIGHT, WRONG, RIGHT]  # each attempt is its own text
    assert [c.parent for c in r.candidates] == [None, 0, 1, 2]
    assert [c.answer for c in r.candidates] == ["8", "7", "8", "7"]
    assert r.trace is not None and r.trace["chains"] == [[0, 1, 2, 3]]


@pytest.mark.parametrize(
    ("n", "sequential", "lengths"),
    [(8, 2, [2, 2, 2, 2]), (6, 4, [4, 2]), (3, 8, [3]), (5, 1, [1, 1, 1, 1, 1])],
)
def test_the_sequential_parallel_ratio_shapes_the_chains(
    n: int, sequential: int, lengths: list[int]
) -> None:
    gen = FakeGenerator.from_answers({Q: {"7": 0.6, "8": 0.4}})
    r = run("revise", gen, n=n, sequential=sequential)
    assert r.trace is not None
    assert [len(chain) for chain in r.trace["chains"]] == lengths
    assert gen.requests[0].n == len(lengths)  # every chain's first attempt in one request
    assert r.cost.samples == n == len(r.candidates)


def test_an_attempts_answer_comes_from_that_attempt_alone() -> None:
    gen = Queue([RIGHT, "I am not sure."])
    r = run("revise", gen, n=2, sequential=2)
    assert [c.answer for c in r.candidates] == ["7", "I am not sure."]  # not the shown 7


def test_refine_tells_the_model_which_step_the_checker_rejected() -> None:
    gen = Queue([WRONG, RIGHT, RIGHT])
    r = run("refine", gen, build_verifier("step_check"), n=3, sequential=3)
    assert 'scored that answer 0.00, rejecting the step "3 + 4 = 8"' in gen.requests[1].prefix
    assert "scored that answer 1.00. Let me" in gen.requests[2].prefix
    assert r.answer == "7" and r.correct
    assert [c.scores["step_check"] for c in r.candidates] == [0.0, 1.0, 1.0]


def test_refine_under_an_outcome_verifier_shows_the_score() -> None:
    gen = Queue([WRONG, RIGHT])
    verifier = FakeVerifier({"7": 0.9, "8": 0.25})
    r = run("refine", gen, verifier, n=2, sequential=2)
    assert "scored that answer 0.25. Let me" in gen.requests[1].prefix
    assert r.answer == "7" and r.cost.samples == 2


def test_selection_by_vote_best_or_each_chains_last() -> None:
    attempts = [WRONG, WRONG, RIGHT, RIGHT]  # two chains, each revised from 8 to 7
    assert run("revise", Queue(attempts), n=4, sequential=2).answer == "8"  # 2-2, first seen
    assert run("revise", Queue(attempts), n=4, sequential=2, select="last").answer == "7"
    best = run("revise", Queue([WRONG, WRONG, RIGHT, WRONG]), FakeVerifier({"7": 1.0}), n=4,
               sequential=2, select="best")  # fmt: skip
    assert best.answer == "7"


@settings(max_examples=30, deadline=None)
@given(
    budget=st.one_of(
        st.builds(Budget, samples=st.integers(1, 12)),
        st.builds(Budget, tokens=st.integers(256, 2000)),
        st.builds(Budget, flops=st.floats(6e8, 5e9)),
    ),
    n=st.integers(1, 10),
    sequential=st.integers(1, 5),
    name=st.sampled_from(["revise", "refine"]),
)
def test_revisions_never_exceed_their_budget(
    budget: Budget, n: int, sequential: int, name: str
) -> None:
    gen = FakeGenerator.from_answers({Q: {"7": 0.5, "8": 0.5}}, n_params=1_000_000)
    verifier = FakeVerifier({"7": 0.8, "8": 0.2}, n_params=500_000, tokens_per_candidate=20)
    try:
        r = run(name, gen, verifier, budget, n=n, sequential=sequential)
    except BudgetError:
        assert gen.requests == []
        return
    assert r.cost.samples <= min(n, budget.samples or n)
    assert r.cost.generated_tokens <= (budget.tokens or 10**9)
    assert r.cost.flops <= (budget.flops or float("inf"))


def test_bad_setups_are_clear_errors() -> None:
    gen = Queue([RIGHT])
    with pytest.raises(ConfigError, match="needs a verifier"):
        run("refine", gen)
    with pytest.raises(ConfigError, match="needs a verifier"):
        run("revise", gen, select="best")
    with pytest.raises(ConfigError, match="'retry' is empty"):
        STRATEGIES.spec("revise", {"retry": ""})
    with pytest.raises(ConfigError, match=r"may use \{score\}"):
        STRATEGIES.spec("refine", {"retry": "scored {points}"})
    with pytest.raises(ConfigError, match="tokenises to nothing"):
        run("revise", gen, retry="  ")
    with pytest.raises(BudgetError, match="smaller than one attempt"):
        run("revise", gen, budget=Budget(tokens=10))
    assert gen.requests == []
