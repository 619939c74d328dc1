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


def test_a_replayed_vote_groups_answers_as_the_task_does() -> None:
    from testtime.lab.analysis.pools import Pool, majority
    from testtime.strategies.run import build_task

    a = "def f(x):\n    return x + 1"
    b = "def f(x):  # one more\n    return (x + 1)"  # the same program, written otherwise
    c = "def f(x):\n    return x - 1"
    answers: list[str | None] = [a, b, c]
    by_text = Pool(answers=list(answers), correct=[1.0, 1.0, 0.0], tokens=[1] * 3)
    by_task = Pool(
        answers=list(answers), correct=[1.0, 1.0, 0.0], tokens=[1] * 3,
        canon=build_task("pyfunc", {"size": 1}).canonical,
    )  # fmt: skip
    assert by_task.canonical()[0] == by_task.canonical()[1]
    assert majority(by_task, [3]) == [1.0]  # two of three votes for the right program
    assert majority(by_text, [3]) == [2 / 3]  # three singletons: a tie, split evenly
