"""One budget across many problems: never over the total, nothing more for settled problems,
and the rest goes where the vote is uncertain."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testtime.core.budget import Budget
from testtime.core.errors import BudgetError
from testtime.core.types import Problem
from testtime.generators.fake import FakeGenerator
from testtime.lab.analysis.across import replay_across
from testtime.lab.analysis.replay import analyse
from testtime.lab.data.spec import parse_spec
from testtime.lab.data.store import open_store
from testtime.lab.execution import runner
from testtime.lab.policy.allocate import allocate
from testtime.lab.reports.llm import write_report
from testtime.strategies.across import Allocator, solve_batch

SURE = {"7": 1.0}
SPLIT = {"7": 0.4, "8": 0.35, "9": 0.25}


def batch(dists: list[dict[str | None, float]], budget: Budget, **kw):  # type: ignore[no-untyped-def]
    prompts = [f"What is {i} + 7?" for i in range(len(dists))]
    gen = FakeGenerator.from_answers(dict(zip(prompts, dists, strict=True)), n_params=10_000)
    problems = [Problem.from_prompt(p, id=f"p{i}") for i, p in enumerate(prompts)]
    return gen, asyncio.run(solve_batch(problems, gen, total_budget=budget, max_tokens=32, **kw))


@settings(max_examples=60, deadline=None)
@given(
    dists=st.lists(
        st.dictionaries(st.sampled_from(["7", "8", "9", None]), st.floats(0.05, 1.0), min_size=1),
        min_size=1, max_size=6,
    ),
    budget=st.one_of(
        st.builds(Budget, samples=st.integers(1, 80)),
        st.builds(Budget, tokens=st.integers(32, 2000)),
        st.builds(Budget, flops=st.floats(1e6, 5e7)),
    ),
    initial=st.integers(1, 4),
    cap=st.integers(1, 12),
)  # fmt: skip
def test_the_total_budget_holds_and_settled_problems_get_nothing_more(
    dists: list[dict[str | None, float]], budget: Budget, initial: int, cap: int
) -> None:
    try:
        _, got = batch(dists, budget, initial=initial, cap=cap, width=3)
    except BudgetError:
        return  # less than one sample per problem: refused (the next tests check it)
    assert got.cost.samples <= (budget.samples or 10**9)
    assert got.cost.generated_tokens <= (budget.tokens or 10**9)
    assert got.cost.flops <= (budget.flops or float("inf"))
    assert all(1 <= n <= cap for n in got.allocation)
    assert sum(got.allocation) == got.cost.samples
    # each sample after the first round went to a problem that was not settled at the time
    drawn = {i: n - sum(j == i for j, _ in got.log) for i, n in enumerate(got.allocation)}
    for i, confidence in got.log:
        check = Allocator(1, cap=cap)
        for c in got.results[i].candidates[: drawn[i]]:
            check.add(0, c.answer, 1.0)
        assert not check.settled(0) and confidence == pytest.approx(check.confidence(0))
        drawn[i] += 1


def test_a_settled_problem_stops_and_the_rest_goes_to_uncertain_ones() -> None:
    _, got = batch([SURE, SPLIT, SURE], Budget(samples=60), initial=2, cap=40)
    sure, split, _ = got.allocation
    assert sure == 4  # unanimous 4 votes: P(leader is the mode) = 0.97 >= 0.95
    assert split > 3 * sure
    assert [r.answer for r in got.results] == ["7", "7", "7"]
    assert got.results[1].strategy["params"]["n"] == split  # read as self-consistency at n


def test_a_budget_below_one_sample_each_is_refused_before_any_work() -> None:
    prompts = [f"What is {i} + 1?" for i in range(5)]
    gen = FakeGenerator.from_answers({p: SURE for p in prompts})
    problems = [Problem.from_prompt(p, id=str(i)) for i, p in enumerate(prompts)]
    with pytest.raises(BudgetError, match="smaller than one sample for each of the 5"):
        asyncio.run(solve_batch(problems, gen, total_budget=Budget(samples=4)))
    assert gen.requests == []


CONFIG = '{"min_terms": 2, "max_terms": 4, "min_digits": 1, "max_digits": 3}'
SPEC = {
    "name": "across", "model": "fake", "problems": 16, "budgets": [1, 2, 4, 8, 16],
    "task": {"name": "reasoning_gym", "params": {"dataset": "chain_sum", "config": CONFIG,
                                                 "size": 16}},
    "strategies": ["self_consistency", {"name": "revise", "budgets": [2]}],
}  # fmt: skip


def test_the_lab_replays_adaptive_against_uniform_at_equal_flops(tmp_path: Path) -> None:
    spec = parse_spec(SPEC)
    with open_store(tmp_path / "s.db") as db:
        plan = runner.prepare(db, spec, "test")
        runner.execute(db, spec, plan, lambda: runner.run_local(db, spec, plan))
        got = replay_across(db, plan.run_id, draws=5)
        curve = next(c for c in analyse(db, plan.run_id).curves if c.label == "self_consistency")
        policy = allocate(db, plan.run_id, feature="oracle", bins=2)
    assert [p.k for p in got.points] == [1, 2, 4, 8]
    rates = list(got.pass_rate)
    assert rates == sorted(rates) and len(got.problems) == 16
    exact = {p.budget: p.accuracy for p in curve.points}
    for p in got.points:
        assert p.uniform[0] == pytest.approx(exact[p.k])  # uniform is majority@k, exactly
        assert p.uniform[1] <= p.uniform[0] <= p.uniform[2]
        assert p.adaptive_flops <= p.flops * (1 + 1e-9)  # never over the equal budget
        assert all(0 <= n <= 16 for n in p.allocation)
    big = got.points[-1]
    assert max(big.allocation) > big.k > min(big.allocation)  # spent unevenly
    files = write_report(analyse_of(tmp_path, plan.run_id), tmp_path / "r", policy=policy,
                         across=got)  # fmt: skip
    names = {f.name for f in files.pngs}
    assert {"allocation.png", "across.png"} <= names
    assert all((tmp_path / "r" / n).read_bytes()[:4] == b"\x89PNG" for n in names)


def analyse_of(tmp_path: Path, run_id: str):  # type: ignore[no-untyped-def]
    with open_store(tmp_path / "s.db", readonly=True) as db:
        return analyse(db, run_id)
