"""Compute-optimal allocation: the per-bin choice is the brute-force optimum, a policy learned
from a fake lab run applies to held-out problems only, and bad policies are clear errors."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import testtime.strategies  # noqa: F401  (registers the strategies)
from testtime.cli import main
from testtime.core.budget import Budget
from testtime.core.errors import BudgetError, ConfigError
from testtime.core.types import Candidate
from testtime.generators.fake import FakeGenerator
from testtime.lab.analysis.curves import Curve, Point
from testtime.lab.analysis.fit import cost_to_reach, efficiency
from testtime.lab.analysis.replay import analyse, stored_pools
from testtime.lab.data.spec import parse_spec
from testtime.lab.data.store import open_store
from testtime.lab.execution import runner
from testtime.lab.policy.allocate import (
    _bin,
    allocate,
    configurations,
    merge_small,
    quantile_edges,
)
from testtime.strategies.base import STRATEGIES
from testtime.strategies.policy import Choice, difficulty, frontier, load_policy, save_policy
from testtime.strategies.run import build_task, build_verifier, solve

CONFIG = '{"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 3}'


def task(seed: int) -> dict[str, Any]:
    params = {"dataset": "chain_sum", "config": CONFIG, "size": 12, "seed": seed}
    return {"name": "reasoning_gym", "params": params}


TRAIN = {
    "name": "train", "model": "fake", "task": task(0), "budgets": [1, 2, 4], "pool": 4,
    "strategies": [
        "self_consistency",
        {"name": "best_of_n", "verifier": "self_certainty"},
        {"name": "revise", "budgets": [2, 4], "params": {"sequential": 2}},
        {"name": "best_of_n", "label": "gold", "verifier": "oracle"},
    ],
}  # fmt: skip


def choice(label: str, cost: float, accuracy: float) -> Choice:
    return Choice(label, {"name": "single", "params": {}}, None, 1, cost, accuracy)


@settings(max_examples=200, deadline=None)
@given(
    curves=st.lists(
        st.lists(st.tuples(st.integers(1, 50), st.integers(0, 20)), min_size=1, max_size=12),
        min_size=1, max_size=5,
    ),
    budget=st.integers(0, 60),
)  # fmt: skip
def test_the_choice_in_each_bin_is_the_brute_force_optimum(
    curves: list[list[tuple[int, int]]], budget: int
) -> None:
    for b, points in enumerate(curves):  # one bin's synthetic (cost, accuracy) configurations
        configs = [choice(f"s{b}-{i}", c, a / 20) for i, (c, a) in enumerate(points)]
        front = frontier(configs)
        fitting = [c for c in configs if c.cost <= budget]
        got = next((c for c in reversed(front) if c.cost <= budget), None)
        if not fitting:
            assert got is None
            continue
        best = max(c.accuracy for c in fitting)
        assert got is not None and got.accuracy == best
        assert got.cost == min(c.cost for c in fitting if c.accuracy == best)
        costs = [c.cost for c in front]
        assert costs == sorted(costs) and all(
            a.accuracy < b.accuracy for a, b in itertools.pairwise(front)
        )


def test_quantile_bins_hold_equal_shares_and_keep_ties_together() -> None:
    values = [i / 10 for i in range(10)]
    edges = quantile_edges(values, 5)
    assert len(edges) == 4
    assert [sum(_bin(edges, v) == b for v in values) for b in range(5)] == [2, 2, 2, 2, 2]
    tied = quantile_edges([0.0] * 6 + [1.0] * 4, 5)
    assert tied == sorted(set(tied))  # repeated edges merge
    lonely = merge_small([0.1, 0.5, 0.9], [0.0] * 5 + [0.3] * 5 + [0.7, 0.95], 4)
    assert lonely == [0.1]  # the two small bins above 0.5 merged into the one below
    assert {_bin(tied, 0.0)} == {0} and _bin(tied, 1.0) > 0


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    store = tmp_path_factory.mktemp("allocate") / "s.db"
    spec = parse_spec(TRAIN)
    with open_store(store) as db:
        plan = runner.prepare(db, spec, "test")
        runner.execute(db, spec, plan, lambda: runner.run_local(db, spec, plan))
    return store, plan.run_id


def test_a_policy_is_the_per_bin_optimum_of_the_runs_configurations(trained) -> None:
    store, run_id = trained
    with open_store(store, readonly=True) as db:
        policy = allocate(db, run_id, bins=3, pilot=2)
        spec = parse_spec(TRAIN)
        configs = configurations(db, run_id, spec, "fake", "reasoning_gym(" + _key() + ")", "flops")
        pools = stored_pools(db, run_id)
    assert policy.model == "fake" and policy.n_params == 1_000_000
    assert len(policy.trained_on) == 12 and len(policy.edges) == 2
    assert policy.pilot.key == "self_certainty" and policy.pilot.feature == "score+vote"
    labels = {c.label for f in policy.frontiers for c in f}
    assert "gold" not in labels  # reads the gold answer: never a choice
    (pool,) = [v for k, v in pools.items() if k[2] == "T0.8-p1"]
    hard = {}
    for q, (p, *_) in pool.items():
        cands = [Candidate("", a, id=i) for i, a in enumerate(p.answers[:2])]
        hard[q] = difficulty(cands, "score+vote", p.score("self_certainty")[:2])
    usable = [c for c in configs if c.arm.label != "gold"]
    for b, front in enumerate(policy.frontiers):
        members = [q for q in policy.trained_on if policy.bin(hard[q]) == b] or policy.trained_on
        for budget in [*sorted({c.cost for c in front}), 1e30]:
            scored = [(sum(c.accuracy[q] for q in members) / len(members),
                       sum(c.cost[q] for q in members) / len(members)) for c in usable]  # fmt: skip
            best = max(a for a, cost in scored if cost <= budget + 1e-6)
            got = policy.choose(b, budget + 1e-6)
            assert got is not None and got.accuracy == pytest.approx(best)


def _key() -> str:
    return f"config={CONFIG},dataset=chain_sum,size=12"


def test_policy_files_round_trip_and_refuse_damage(trained, tmp_path: Path) -> None:
    store, run_id = trained
    with open_store(store, readonly=True) as db:
        policy = allocate(db, run_id, bins=2, pilot=2, axis="samples")
    path = tmp_path / "policy.json"
    save_policy(policy, path)
    assert load_policy(str(path)) == policy
    assert not list(tmp_path.glob(".*tmp"))  # nothing half-written left behind
    path.write_text(json.dumps({**json.loads(path.read_text()), "frontiers": [[]]}))
    with pytest.raises(ConfigError, match=r"damaged|every bin"):
        load_policy(str(path))
    with pytest.raises(ConfigError, match="no policy file"):
        STRATEGIES.spec("compute_optimal", {"policy": str(tmp_path / "none.json")})
    with pytest.raises(ConfigError, match="needs policy=FILE"):
        STRATEGIES.spec("compute_optimal")
    with open_store(store, readonly=True) as db:
        oracle = allocate(db, run_id, bins=2, feature="oracle")
    save_policy(oracle, path)
    with pytest.raises(ConfigError, match="oracle difficulty"):
        STRATEGIES.spec("compute_optimal", {"policy": str(path)})


def test_compute_optimal_runs_on_held_out_problems_only(trained, tmp_path: Path) -> None:
    store, run_id = trained
    with open_store(store) as db:
        save_policy(allocate(db, run_id, bins=2, pilot=2), tmp_path / "p.json")
        arm = {"name": "compute_optimal", "params": {"policy": str(tmp_path / "p.json")},
               "budgets": [10**9, 10**10]}  # fmt: skip
        same = parse_spec({**TRAIN, "name": "eval", "strategies": [arm]})
        with pytest.raises(ConfigError, match="trained on 12 of this run's problems"):
            runner.prepare(db, same, "test")
        other = parse_spec({**TRAIN, "name": "eval", "task": "arithmetic", "strategies": [arm]})
        with pytest.raises(ConfigError, match="made for task 'reasoning_gym'"):
            runner.prepare(db, other, "test")
        assert [r["id"] for r in db.runs()] == [run_id]  # nothing was recorded
        held = parse_spec({**TRAIN, "name": "eval", "task": task(1), "strategies": [arm]})
        plan = runner.prepare(db, held, "test")
        runner.execute(db, held, plan, lambda: runner.run_local(db, held, plan))
        (curve,) = analyse(db, plan.run_id).curves
        rows = db.db.execute("SELECT trace, cost FROM results WHERE run = ?", (plan.run_id,))
        traces = [(json.loads(t), json.loads(c)) for t, c in rows]
    assert [p.budget for p in curve.points] == [10**9, 10**10]
    assert len(traces) == 24
    assert any(t["choice"] for t, _ in traces)  # most problems run a learned choice
    for trace, cost in traces:
        assert 0 <= trace["bin"] <= 1 and len(trace["pilot"]) == 2
        assert cost["samples"] >= 2  # the pilot is charged
        if trace["choice"] is None:  # the budget left fits no choice: the pilot's vote
            assert cost["samples"] == 2


def test_the_pilot_is_the_pools_first_samples(trained, tmp_path: Path) -> None:
    store, run_id = trained
    with open_store(store, readonly=True) as db:
        policy = allocate(db, run_id, bins=2, pilot=2)
        pools = stored_pools(db, run_id)
    save_policy(replace(policy, trained_on=()), tmp_path / "p.json")  # to look at training data
    spec = STRATEGIES.spec("compute_optimal", {"policy": str(tmp_path / "p.json"), "budget": 1e12})
    t = build_task(**task(0))
    problem = t.problems()[0]
    result = asyncio.run(solve(problem, spec, FakeGenerator(), task=t, max_tokens=128))
    (pool,) = [v[problem.id][0] for k, v in pools.items() if k[2] == "T0.8-p1"]
    pilot = [result.candidates[i] for i in result.trace["pilot"]]
    assert [c.answer for c in pilot] == pool.answers[:2]
    assert result.trace["difficulty"] == pytest.approx(
        difficulty(pilot, "score+vote", pool.score("self_certainty")[:2])
    )


def test_bad_budgets_and_models_are_refused(trained, tmp_path: Path) -> None:
    store, run_id = trained
    with open_store(store, readonly=True) as db:
        save_policy(allocate(db, run_id, bins=2, pilot=2), tmp_path / "p.json")
    t = build_task(**task(1))
    problem = t.problems()[0]
    tiny = STRATEGIES.spec("compute_optimal", {"policy": str(tmp_path / "p.json"), "budget": 10})
    gen = FakeGenerator()
    with pytest.raises(BudgetError, match="smaller than one pilot sample"):
        asyncio.run(solve(problem, tiny, gen, task=t))
    assert gen.requests == []
    spec = STRATEGIES.spec("compute_optimal", {"policy": str(tmp_path / "p.json")})
    with pytest.raises(ConfigError, match="needs a budget in flops"):
        asyncio.run(solve(problem, spec, FakeGenerator(), task=t))
    other = FakeGenerator(n_params=7)
    with pytest.raises(ConfigError, match="made for model 'fake'"):
        asyncio.run(solve(problem, spec, other, task=t, budget=Budget(flops=1e12)))
    assert build_verifier("self_certainty").name == "self_certainty"


def test_the_allocate_command_writes_a_policy_or_one_red_line(
    trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store, run_id = trained

    def call(*args: str) -> tuple[int, str, str]:
        argv = ["testtime", "lab", "allocate", run_id, "--store", str(store), *args]
        monkeypatch.setattr(sys, "argv", argv)
        try:
            main()
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
        got = capsys.readouterr()
        return code, got.out, got.err

    code, out, err = call("--bins", "2", "--pilot", "2", "--out", str(tmp_path / "p.json"))
    assert code == 0, err
    assert "compute-optimal policy" in out and "trained on 12 problems" in out
    assert load_policy(str(tmp_path / "p.json")).run == run_id
    for bad, message in (
        (("--axis", "joules"), "--axis must be"),
        (("--pilot", "9"), "more than the stored pool"),
        (("--verifier", "judge"), "did not score the pool"),
        (("--out", str(tmp_path / "missing" / "p.json")), "does not exist"),
    ):
        code, _, err = call(*bad)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1
        assert "Traceback" not in err
    assert not (tmp_path / "missing").exists()


def test_a_chosen_vote_reuses_the_pilot_and_draws_the_pools_next_samples(
    trained, tmp_path: Path
) -> None:
    store, run_id = trained
    with open_store(store, readonly=True) as db:
        policy = allocate(db, run_id, bins=2, pilot=2)
        pools = stored_pools(db, run_id)
    params = {"n": 4, "temperature": 0.8, "top_p": 1.0}
    vote = Choice("sc", {"name": "self_consistency", "params": params}, None, 4, 1e9, 1.0)
    only = replace(policy, trained_on=(), frontiers=((vote,), (vote,)))
    save_policy(only, tmp_path / "p.json")
    t = build_task(**task(0))
    problem = t.problems()[1]
    (pool,) = [v[problem.id][0] for k, v in pools.items() if k[2] == "T0.8-p1"]
    # 1e9 FLOPs of choice after a pilot that it reuses: fits a budget of exactly 1e9
    spec = STRATEGIES.spec("compute_optimal", {"policy": str(tmp_path / "p.json"), "budget": 1e9})
    gen = FakeGenerator()
    result = asyncio.run(solve(problem, spec, gen, task=t, max_tokens=128))
    assert result.trace is not None and result.trace["choice"]["label"] == "sc"
    assert result.cost.samples == 4 and len(result.candidates) == 4  # the pilot paid once
    assert [c.answer for c in result.candidates] == pool.answers[:4]  # the pool's stream
    assert [q.first_index for q in gen.requests] == [0, 2]


def test_efficiency_at_equal_accuracy_interpolates_the_baselines_envelope() -> None:
    def pt(k: int, acc: float, flops: float) -> Point:
        return Point(k, acc, acc, acc, k, k, flops)

    base = Curve("b", (pt(1, 0.2, 10), pt(2, 0.1, 20), pt(4, 0.6, 100)))
    assert cost_to_reach(base.points, 0.2) == 10
    assert cost_to_reach(base.points, 0.4) == pytest.approx(10**1.5)  # between 10 and 100
    assert cost_to_reach(base.points, 0.7) is None
    mine = Curve("a", (pt(1, 0.4, 10), pt(2, 0.9, 20)))
    (first, r1), (_, r2) = efficiency(mine, base)
    assert first.budget == 1 and r1 == pytest.approx(10**0.5) and r2 is None
