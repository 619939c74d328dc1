"""Replay equals running: a stored pool's first k samples are what the strategy draws at
budget k, and each replayed accuracy equals the mean, over every ordered k-subset of the
pool, of the real strategy run on exactly those samples."""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
from pathlib import Path

import pytest

from testtime.core.types import Problem
from testtime.generators.fake import FakeGenerator
from testtime.lab.analysis.pools import Pool, rule
from testtime.lab.analysis.replay import _pools, analyse
from testtime.lab.data.spec import parse_spec, spec_key
from testtime.lab.data.store import open_store
from testtime.lab.execution import runner
from testtime.lab.execution.work import at_budget, load_problems
from testtime.strategies.run import build_verifier, solve

NOISY = {"name": "fake", "params": {"noise": 0.4}}
SPEC = parse_spec({
    "name": "replay", "model": "fake", "task": {"name": "arithmetic", "params": {"size": 40}},
    "problems": 4, "budgets": [1, 2, 3, 6], "pool": 6,
    "strategies": [
        "self_consistency",
        {"name": "best_of_n", "verifier": NOISY},
        {"name": "weighted_majority", "verifier": NOISY},
        {"name": "best_of_majority", "verifier": NOISY, "params": {"alpha": 0.4}},
        {"name": "adaptive_consistency", "budgets": [4]},
    ],
})  # fmt: skip


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("replay") / "s.db"
    with open_store(path) as db:
        plan = runner.prepare(db, SPEC, "test")
        runner.execute(db, SPEC, plan, lambda: runner.run_local(db, SPEC, plan))
    return path


def _texts(path: Path, problem: str) -> list[str]:
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT text FROM samples WHERE problem = ? ORDER BY idx", (problem,)
        ).fetchall()
    return [r[0] for r in rows]


def test_a_strategy_at_budget_k_draws_the_pools_first_k_samples(stored: Path) -> None:
    task, problems = next(iter(load_problems(SPEC).values()))
    for arm in SPEC.arms[:2]:
        verifier = (
            build_verifier(arm.verifier.name, NOISY["params"], task=task) if arm.verifier else None
        )
        for problem in problems:
            pool = _texts(stored, problem.id)
            for k in (1, 3, 6):
                got = asyncio.run(solve(problem, at_budget(arm, k), FakeGenerator(), task=task,
                                        verifier=verifier, max_tokens=SPEC.max_tokens))  # fmt: skip
                assert [c.text for c in got.candidates] == pool[:k]


def _served(problem: Problem, texts: list[str]) -> FakeGenerator:
    return FakeGenerator({problem.messages[-1].content: list(texts)})  # returned in turn


@pytest.mark.parametrize("arm_index", [0, 1, 2, 3])
def test_replayed_accuracy_is_the_strategy_averaged_over_every_ordered_subset(
    stored: Path, arm_index: int
) -> None:
    arm = SPEC.arms[arm_index]
    task, problems = next(iter(load_problems(SPEC).values()))
    with open_store(stored, readonly=True) as db:
        pools = next(iter(_pools(db, SPEC.run_id).values()))
    record = {**arm.to_dict(), "verifier_key": spec_key(arm.verifier) if arm.verifier else ""}
    value, _ = rule(arm.replay or "", record, draws=10_000, seed=0)
    verifier = (
        build_verifier(arm.verifier.name, NOISY["params"], task=task) if arm.verifier else None
    )
    for problem in problems:
        pool: Pool = pools[problem.id][0]
        texts = _texts(stored, problem.id)
        for k in (1, 2, 3):
            runs = []
            for order in itertools.permutations(range(len(texts)), k):
                got = asyncio.run(solve(problem, at_budget(arm, k),
                                        _served(problem, [texts[i] for i in order]), task=task,
                                        verifier=verifier, max_tokens=SPEC.max_tokens))  # fmt: skip
                runs.append(float(got.correct))
            want = sum(runs) / len(runs)
            assert value(pool, [k])[0] == pytest.approx(want, abs=1e-9), (arm.label, k)


def test_analysis_has_every_curve_coverage_and_costs(stored: Path) -> None:
    with open_store(stored, readonly=True) as db:
        analysis = analyse(db, SPEC.run_id)
        cost = json.loads(db.results(SPEC.run_id)[0][7])
    labels = [c.label for c in analysis.curves]
    assert labels == [a.label for a in SPEC.arms]
    sc = analysis.curves[0]
    assert [p.budget for p in sc.points] == [1, 2, 3, 4, 5, 6] and sc.estimator == "exact"
    assert analysis.curves[2].estimator == "monte-carlo"
    adaptive = analysis.curves[-1]
    assert adaptive.estimator == "run" and not adaptive.replayed
    assert [p.budget for p in adaptive.points] == [4] and cost["samples"] >= 1
    for p in sc.points:
        assert p.lo <= p.accuracy <= p.hi and p.samples == p.budget
    flops = [p.flops for p in sc.points]
    assert flops == sorted(flops) and flops[0] > 0
    assert analysis.coverage is not None
    cover = [p.accuracy for p in analysis.coverage.points]
    assert cover == sorted(cover) and cover[-1] >= sc.points[-1].accuracy


def test_replayed_votes_group_as_the_task_does() -> None:
    """An equation is not a vote for its result (the task grades '2 + 3 = 5' wrong): the
    replay agrees with an exact-string vote, 6 winning 4 votes to 3, where grouping by
    core's old equivalence read 5 votes for a group that was 60% right."""
    answers = ["5", "2 + 3 = 5", "6", "5", "2 + 3 = 5", "6", "5", "6", "6", "-0", "0"]
    correct = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    pool = Pool(answers=answers[:9], correct=correct[:9])
    value, _ = rule("majority", {}, draws=10, seed=0)
    assert value(pool, [9]) == [0.0]
    assert pool.canonical()[:3] == ["5", "2 + 3 = 5", "6"]
    assert Pool(answers=answers[9:], correct=correct[9:]).canonical() == ["0", "0"]


def test_a_replayed_weighted_vote_weighs_scores_as_the_verifier_declares() -> None:
    """15 samples of 42 at mean log-probability -0.5, one 99 at -3: likelihood weighs
    exp(score), so 42 wins every subset that holds it (raw log-probabilities elected 99)."""
    pool = Pool(
        answers=["42"] * 15 + ["99"],
        correct=[1.0] * 15 + [0.0],
        scores=[{"likelihood": -0.5}] * 15 + [{"likelihood": -3.0}],
    )
    arm = {"verifier": {"name": "likelihood", "params": {}}, "verifier_key": "likelihood"}
    value, estimator = rule("weighted", arm, draws=200, seed=0)
    assert estimator == "monte-carlo" and value(pool, [16]) == [1.0]
