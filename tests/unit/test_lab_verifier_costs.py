"""Each replayed arm is charged its own verifier's FLOPs, not those of every verifier that
scored the same pool (store schema 3), and a store written before that still replays."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from testtime.core.cost import flops
from testtime.lab.analysis.replay import analyse
from testtime.lab.data.spec import parse_spec
from testtime.lab.data.store import SCHEMA_VERSION, open_store
from testtime.lab.execution import runner

CHEAP = {"name": "fake", "params": {"n_params": 1000, "tokens_per_candidate": 10}}
DEAR = {"name": "fake", "params": {"n_params": 1000, "tokens_per_candidate": 500, "seed": 1}}
SPEC = parse_spec({
    "name": "costs", "model": "fake", "task": {"name": "arithmetic", "params": {"size": 20}},
    "problems": 3, "budgets": [1, 2, 4], "pool": 4,
    "strategies": [
        "self_consistency",
        {"name": "best_of_n", "verifier": CHEAP},
        {"name": "best_of_n", "verifier": DEAR},
    ],
})  # fmt: skip


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("costs") / "s.db"
    with open_store(path) as db:
        plan = runner.prepare(db, SPEC, "test")
        runner.execute(db, SPEC, plan, lambda: runner.run_local(db, SPEC, plan))
    return path


def _flops(path: Path) -> dict[str, dict[int, float]]:
    """Each arm's replayed FLOPs per problem at each budget."""
    with open_store(path, readonly=True) as db:
        curves = analyse(db, SPEC.run_id).curves
    return {c.label: {p.budget: p.flops for p in c.points} for c in curves}


def test_each_sample_stores_each_verifiers_flops(stored: Path) -> None:
    with sqlite3.connect(stored) as db:
        rows = db.execute("SELECT verifier_flops, verifier_costs FROM samples").fetchall()
    assert rows
    for total, costs in rows:
        per = json.loads(costs)
        assert sorted(per.values()) == [flops(1000, 10), flops(1000, 500)]
        assert total == pytest.approx(sum(per.values()))


def test_a_replayed_arm_pays_its_own_verifier_alone(stored: Path) -> None:
    sc, cheap, dear = _flops(stored).values()
    assert sc.keys() == cheap.keys() == dear.keys() and 4 in sc
    for k, s in sc.items():
        assert cheap[k] - s == pytest.approx(k * flops(1000, 10))
        assert dear[k] - s == pytest.approx(k * flops(1000, 500))


def test_a_schema_2_store_upgrades_and_charges_the_pools_verifiers_together(
    stored: Path, tmp_path: Path
) -> None:
    """Rows written before per-verifier costs keep the sum they stored (all that is known)."""
    old = tmp_path / "old.db"
    with sqlite3.connect(stored) as src, sqlite3.connect(old) as dst:
        src.backup(dst)
    with sqlite3.connect(old) as db:
        db.execute("ALTER TABLE samples DROP COLUMN verifier_costs")
        db.execute("PRAGMA user_version = 2")
    with open_store(old):  # a writable open migrates
        pass
    with sqlite3.connect(old) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert {r[0] for r in db.execute("SELECT verifier_costs FROM samples")} == {"{}"}
    sc, cheap, dear = _flops(old).values()
    both = flops(1000, 10) + flops(1000, 500)
    assert cheap[1] - sc[1] == pytest.approx(both) and dear[1] - sc[1] == pytest.approx(both)
