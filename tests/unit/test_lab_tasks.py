"""A run over several tasks draws a coverage curve for each, and fits the first one's."""

from __future__ import annotations

from pathlib import Path

from testtime.lab.analysis.replay import analyse
from testtime.lab.data.spec import parse_spec
from testtime.lab.data.store import open_store
from testtime.lab.execution import runner

SPEC = parse_spec({
    "name": "two-tasks", "model": "fake",
    "tasks": [
        {"name": "arithmetic", "params": {"size": 20, "seed": 1}},
        {"name": "arithmetic", "params": {"size": 20, "seed": 2}},
    ],
    "problems": 3, "budgets": [1, 2, 4], "pool": 4, "strategies": ["self_consistency"],
})  # fmt: skip


def test_each_task_has_its_coverage_and_the_fit_is_the_first_tasks(tmp_path: Path) -> None:
    with open_store(tmp_path / "s.db") as db:
        plan = runner.prepare(db, SPEC, "test")
        runner.execute(db, SPEC, plan, lambda: runner.run_local(db, SPEC, plan))
        analysis = analyse(db, plan.run_id)
    covers = [c.label for c in analysis.curves if "coverage" in c.label]
    assert len(covers) == 2 and all(label.startswith("fake/arithmetic") for label in covers)
    assert covers[0] != covers[1]
    first = next(c for c in analysis.curves if c.label == covers[0])
    assert analysis.coverage is not None and analysis.coverage.points == first.points
