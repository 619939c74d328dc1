"""The lab on a local Ray instance: the same stored rows as a local run, even when a
worker dies mid-run (its units are redone elsewhere, never stored twice)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from pathlib import Path

import pytest

from testtime.lab.data.rows import Unit
from testtime.lab.data.spec import parse_spec
from testtime.lab.data.store import open_store
from testtime.lab.execution import runner
from testtime.lab.execution.ray import Worker, run_ray

ray = pytest.importorskip("ray")

SPEC = parse_spec({
    "name": "ray", "model": "fake", "task": "arithmetic", "problems": 8, "budgets": [1, 4],
    "pool": 16,
    "strategies": ["self_consistency", {"name": "best_of_n", "verifier": "self_certainty"},
                   {"name": "adaptive_consistency", "budgets": [4]}],
})  # fmt: skip
ROWS = (
    "SELECT model, task, pool, seed, problem, idx, text, answer, correct, scores FROM samples"
    " ORDER BY 1, 2, 3, 4, 5, 6",
    "SELECT model, task, arm, budget, seed, problem, answer, correct, candidates FROM results"
    " ORDER BY 1, 2, 3, 4, 5, 6",
)


def test_an_address_that_does_not_answer_is_one_clear_error(tmp_path: Path) -> None:
    if ray.is_initialized():
        pytest.skip("a Ray instance is already up in this process")
    from testtime.core.errors import ConfigError

    with open_store(tmp_path / "s.db") as db:
        plan = runner.prepare(db, SPEC, "test")
        with pytest.raises(ConfigError, match="no Ray cluster answers"):
            asyncio.run(run_ray(db, SPEC, plan, "127.0.0.1:1", 1))


class DiesOnce(Worker):
    """A worker that kills its own process on its first batch, once per test run."""

    marker = ""

    async def run(self, units: list[Unit]):  # type: ignore[no-untyped-def]
        if not os.path.exists(self.marker):
            Path(self.marker).write_text("died")
            os._exit(1)
        return await super().run(units)


@pytest.fixture(scope="module")
def local_ray():
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # ship DiesOnce to workers
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _rows(path: Path) -> list[list[tuple]]:
    with sqlite3.connect(path) as db:
        return [db.execute(q).fetchall() for q in ROWS]


def _run(path: Path, work) -> None:  # type: ignore[no-untyped-def]
    with open_store(path) as db:
        plan = runner.prepare(db, SPEC, "test")
        runner.execute(db, SPEC, plan, lambda: work(db, plan))


def test_ray_stores_what_a_local_run_stores(local_ray, tmp_path: Path) -> None:
    _run(tmp_path / "local.db", lambda db, plan: runner.run_local(db, SPEC, plan))
    _run(tmp_path / "ray.db", lambda db, plan: run_ray(db, SPEC, plan, "local", 2, batch=3))
    local, remote = _rows(tmp_path / "local.db"), _rows(tmp_path / "ray.db")
    assert len(local[0]) == 8 * 16 and len(local[1]) == 8
    assert remote == local


def test_a_lost_worker_is_replaced_and_nothing_is_duplicated(local_ray, tmp_path: Path) -> None:
    DiesOnce.marker = str(tmp_path / "died")
    _run(tmp_path / "local.db", lambda db, plan: runner.run_local(db, SPEC, plan))
    _run(
        tmp_path / "ray.db",
        lambda db, plan: run_ray(db, SPEC, plan, "local", 2, worker=DiesOnce, batch=4),
    )
    assert Path(DiesOnce.marker).read_text() == "died"
    assert _rows(tmp_path / "ray.db") == _rows(tmp_path / "local.db")
