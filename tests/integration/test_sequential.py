"""Sequential scaling on the real embedded model: budget forcing with its end-of-turn token,
revision chains, and a compute-optimal policy learned in the lab and applied to held-out
problems."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from testtime.core.errors import ConfigError
from testtime.lab.data.spec import parse_spec
from testtime.lab.data.store import open_store
from testtime.lab.execution import runner
from testtime.lab.policy.allocate import allocate
from testtime.strategies.base import STRATEGIES
from testtime.strategies.policy import save_policy
from testtime.strategies.run import build_task, build_verifier, solve_many

pytestmark = pytest.mark.integration


def test_budget_forcing_refuses_the_end_of_turn_and_forces_the_answer(generator) -> None:
    task = build_task("arithmetic", {"size": 3})
    spec = STRATEGIES.spec(
        "budget_forcing", {"n": 2, "thinking_tokens": 48, "ignore": 2, "temperature": 0.8}
    )
    results = asyncio.run(solve_many(task.problems(), spec, generator, task=task))
    for r in results:
        assert r.trace is not None and r.trace["think_end"] == "eos"  # no </think> in SmolLM2
        for chain in r.trace["chains"]:
            assert chain["thinking_tokens"] <= 48 and chain["waits"] <= 2
            if chain["ended"] == "model":  # it ended by itself: only after every Wait was used
                assert chain["waits"] == 2 or chain["thinking_tokens"] >= 48
        answers = [c for c in r.candidates if "\n\nFinal answer:" in c.text]
        assert len(answers) == 2 and all(c.parent is not None for c in answers)
        assert r.correct is not None and r.cost.samples >= 4


def test_revisions_and_refinement_continue_the_models_own_attempts(generator) -> None:
    task = build_task("arithmetic", {"size": 3})
    revise = STRATEGIES.spec("revise", {"n": 4, "sequential": 2})
    refine = STRATEGIES.spec("refine", {"n": 3, "sequential": 3})
    problems = task.problems()
    plain = asyncio.run(solve_many(problems, revise, generator, task=task))
    guided = asyncio.run(
        solve_many(problems, refine, generator, task=task, verifier=build_verifier("step_check"))
    )
    for r in plain:
        assert r.trace is not None and [len(c) for c in r.trace["chains"]] == [2, 2]
        assert r.cost.samples == 4
    for r in guided:
        assert r.cost.samples == 3 and all("step_check" in c.scores for c in r.candidates)
        second = r.candidates[1]
        assert second.parent == 0 and second.completion is not None
        # the revision was prompted with the first attempt and its score
        assert second.completion.prompt_tokens > r.candidates[0].completion.prompt_tokens + 5


def test_a_policy_learned_in_the_lab_runs_on_held_out_problems(tmp_path: Path) -> None:
    store = tmp_path / "s.db"
    task = {"name": "arithmetic", "params": {"size": 6, "seed": 0}}
    train = parse_spec({
        "name": "train", "task": task, "pool": 4, "budgets": [1, 2, 4], "max_tokens": 64,
        "strategies": ["self_consistency", {"name": "best_of_n", "verifier": "step_check"},
                       {"name": "revise", "budgets": [2]}],
    })  # fmt: skip
    with open_store(store) as db:
        plan = runner.prepare(db, train, "test")
        runner.execute(db, train, plan, lambda: runner.run_local(db, train, plan))
        policy = allocate(db, plan.run_id, bins=2, pilot=2)
    save_policy(policy, tmp_path / "policy.json")
    assert policy.model == "smollm2-135m" and len(policy.trained_on) == 6
    arm = {"name": "compute_optimal", "params": {"policy": str(tmp_path / "policy.json")},
           "budgets": [100_000_000_000]}  # fmt: skip
    held = {"name": "arithmetic", "params": {"size": 4, "seed": 1}}
    spec = parse_spec({"name": "eval", "task": held, "max_tokens": 64, "strategies": [arm]})
    with open_store(store) as db:
        same = parse_spec({"name": "eval", "task": task, "max_tokens": 64, "strategies": [arm]})
        with pytest.raises(ConfigError, match="held-out"):
            runner.prepare(db, same, "test")
        plan = runner.prepare(db, spec, "test")
        runner.execute(db, spec, plan, lambda: runner.run_local(db, spec, plan))
        rows = db.db.execute("SELECT trace, cost FROM results WHERE run = ?", (plan.run_id,))
        got = [(json.loads(t), json.loads(c)) for t, c in rows]
    assert len(got) == 4
    labels = {c.label for f in policy.frontiers for c in f}
    for trace, cost in got:
        assert trace["bin"] in (0, 1) and len(trace["pilot"]) == 2
        assert trace["choice"] is not None and trace["choice"]["label"] in labels
        assert cost["samples"] > 2 and cost["flops"] <= 100_000_000_000
