"""Budget forcing on the scripted fake: the extension count, the cap, the forced answer."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import testtime.strategies  # noqa: F401  (registers the strategies)
from testtime.core.budget import Budget
from testtime.core.errors import BudgetError, ConfigError
from testtime.core.types import Candidate, Problem, Result
from testtime.generators.fake import FakeGenerator
from testtime.lab.analysis.replay import analyse
from testtime.lab.data.spec import parse_spec
from testtime.lab.data.store import open_store
from testtime.lab.execution import runner
from testtime.strategies.base import STRATEGIES
from testtime.strategies.run import solve
from testtime.tasks.base import Task
from testtime.verifiers.fake import FakeVerifier

Q = "What is 3 + 4?"
P = Problem.from_prompt(Q, answer="7", id="q")
END = "</think>"
ANSWER = "\n\nFinal answer:"


class Sums(Task):
    name = "sums"

    def problems(self) -> Sequence[Problem]:
        return [P]


def early(waits: int = 8, answer: str = "7") -> dict[str, float]:
    """A model that ends its thinking after every short thought: 'a.' then ' b.' per Wait."""
    return {"a." + "\nWait b." * i + f"{END}{ANSWER} {answer}": 1.0 for i in range(waits + 1)}


def run(gen: FakeGenerator, budget: Budget | None = None, **params: Any) -> Result:
    spec = STRATEGIES.spec("budget_forcing", {"think_end": END, "temperature": 0.0, **params})
    return asyncio.run(solve(P, spec, gen, task=Sums(), budget=budget, max_tokens=64))


def thinking(r: Result, final: Candidate) -> int:
    """Tokens of the thinking segments behind a chain's answer (walked through parents)."""
    total, c = 0, final
    while c.parent is not None:
        c = r.candidates[c.parent]
        total += c.completion.generated_tokens if c.completion else 0
    return total


def finals(r: Result) -> list[Candidate]:
    return [c for c in r.candidates if c.text.count(ANSWER) and c.parent is not None]


@pytest.mark.parametrize("k", [0, 1, 2, 5])
def test_the_extension_is_appended_exactly_k_times(k: int) -> None:
    gen = FakeGenerator({Q: early()})
    r = run(gen, ignore=k, thinking_tokens=200)
    extended = [q for q in gen.requests if q.prefix.endswith("\nWait")]
    assert len(extended) == k
    assert r.trace is not None and r.trace["chains"][0]["waits"] == k
    (final,) = finals(r)
    assert final.text.count("\nWait") == k and final.text.endswith(f"{END}{ANSWER} 7")
    assert r.answer == "7" and r.correct


def test_without_a_delimiter_the_end_of_turn_is_refused_k_times() -> None:
    gen = FakeGenerator({Q: ["I add 3 and 4 and get 7."]})  # ends with the model's eos
    spec = STRATEGIES.spec("budget_forcing", {"think_end": "", "ignore": 3, "n": 2})
    r = asyncio.run(solve(P, spec, gen, task=Sums()))
    assert sum(q.prefix.endswith("\nWait") for q in gen.requests) == 6  # 3 per chain
    assert all(not q.stop for q in gen.requests)  # no delimiter: nothing to stop at
    answers = [q for q in gen.requests if q.prefix.endswith(ANSWER)]
    assert len(answers) == 2 and all(q.greedy for q in answers)
    assert r.trace is not None and [c["waits"] for c in r.trace["chains"]] == [3, 3]


def test_at_the_cap_thinking_ends_and_the_answer_is_forced() -> None:
    long = "one two three four five six seven eight nine ten" * 3
    gen = FakeGenerator({Q: {f"{long}{END}{ANSWER} 9": 1.0, f"{long[:12]}{ANSWER} 7": 0.0}})
    r = run(gen, thinking_tokens=5, ignore=4)
    assert r.trace is not None
    assert r.trace["chains"] == [
        {"thinking_tokens": 5, "waits": 0, "ended": "cap", "answer": r.answer, "final": 1}
    ]
    forced = gen.requests[-1]
    assert forced.prefix == "one two three four five" + END + ANSWER
    assert forced.max_tokens == 16


def test_a_minimum_below_which_the_end_is_refused() -> None:
    gen = FakeGenerator({Q: early()})  # each segment is 6 tokens: 'a.' or ' b.', then '</think>'
    r = run(gen, ignore=10, thinking_tokens=100, min_thinking=20)
    assert r.trace is not None and r.trace["chains"][0]["waits"] == 3  # at 6, 12, 18; not 24


@settings(max_examples=40, deadline=None)
@given(
    cap=st.integers(1, 40),
    k=st.integers(0, 6),
    n=st.integers(1, 3),
    low=st.one_of(st.none(), st.integers(0, 40)),
    temperature=st.sampled_from([0.0, 1.0]),
)
def test_no_chain_ever_thinks_past_its_cap(
    cap: int, k: int, n: int, low: int | None, temperature: float
) -> None:
    mixed = {**early(answer="7"), **{"a b c d e f g h i j k l m n o p" * 2 + END: 1.0}}
    gen = FakeGenerator({Q: mixed})
    low = None if low is None else min(low, cap)
    r = run(gen, thinking_tokens=cap, ignore=k, n=n, min_thinking=low, temperature=temperature)
    assert r.trace is not None and len(r.trace["chains"]) == n
    assert sorted(c.id for c in finals(r)) == sorted(i["final"] for i in r.trace["chains"])
    for info in r.trace["chains"]:  # chains end in any order: match them by their last candidate
        final = r.candidates[info["final"]]
        assert thinking(r, final) == info["thinking_tokens"] <= cap
        assert info["waits"] <= k
    for q in gen.requests:
        assert q.max_tokens <= cap or q.prefix.endswith(ANSWER)


def test_chains_vote_or_a_verifier_picks() -> None:
    gen = FakeGenerator({Q: {f"x.{END}{ANSWER} 7": 0.5, f"y.{END}{ANSWER} 8": 0.5}})
    r = run(gen, n=9, temperature=1.0)
    assert r.trace is not None
    votes = r.trace["votes"]
    assert sum(votes.values()) == 9 and r.answer == max(votes, key=votes.__getitem__)
    picked = asyncio.run(
        solve(P, STRATEGIES.spec("budget_forcing", {"think_end": END, "n": 9, "select": "best"}),
              gen, task=Sums(), verifier=FakeVerifier({"8": 1.0, "7": 0.0}))
    )  # fmt: skip
    assert picked.answer == "8"


def test_bad_setups_are_refused_before_anything_is_spent() -> None:
    gen = FakeGenerator({Q: early()})
    with pytest.raises(ConfigError, match="tokenises to nothing"):
        run(gen, ignore=1, extension="   ")
    with pytest.raises(ConfigError, match="'answer_prompt' is empty"):
        STRATEGIES.spec("budget_forcing", {"answer_prompt": ""})
    with pytest.raises(ConfigError, match="min_thinking"):
        STRATEGIES.spec("budget_forcing", {"thinking_tokens": 8, "min_thinking": 9})
    with pytest.raises(ConfigError, match="needs a verifier"):
        run(gen, select="best")
    with pytest.raises(BudgetError, match="smaller than one thinking chain"):
        run(gen, budget=Budget(tokens=50), thinking_tokens=128)
    assert gen.requests == []


def test_a_sweep_over_chains_and_thinking_length_is_one_lab_experiment(tmp_path: Path) -> None:
    spec = parse_spec({
        "name": "forcing", "model": "fake", "task": {"name": "arithmetic", "params": {"size": 3}},
        "budgets": [1, 2, 4],
        "strategies": [{"name": "budget_forcing", "params": {"ignore": 1},
                        "sweep": {"thinking_tokens": [4, 16]}}],
    })  # fmt: skip
    assert [a.label for a in spec.arms] == [
        "budget_forcing(thinking_tokens=4)",
        "budget_forcing(thinking_tokens=16)",
    ]
    with open_store(tmp_path / "s.db") as db:
        plan = runner.prepare(db, spec, "test")
        runner.execute(db, spec, plan, lambda: runner.run_local(db, spec, plan))
        curves = {c.label: c for c in analyse(db, plan.run_id).curves}
    for t in (4, 16):
        points = curves[f"budget_forcing(thinking_tokens={t})"].points
        assert [p.budget for p in points] == [1, 2, 4]  # N chains
        assert all(a.tokens < b.tokens for a, b in itertools.pairwise(points))
        assert all(p.tokens <= p.budget * (t + 16) for p in points)  # thinking + answer caps
    short, long = (curves[f"budget_forcing(thinking_tokens={t})"].points[0] for t in (4, 16))
    assert short.tokens < long.tokens
