"""A diffusion run in the lab store, shaped for the viewer: its report and each problem's
stored results.

The table, plots and A-minus-B comparison are `lab.reports.diffusion`'s (what `testtime
diffuse report RUN` prints and draws): its points, its cells as it formats them, its axis
labels; nothing here computes a figure of its own. A problem's "samples" are what a diffusion
result stores for each arm and budget: every finished image's judged label, its reward and
its parent, the chosen one marked, and the unit's cost. The store keeps no image (no pixels
and no file path), so the viewer shows none.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from testtime.lab.data.spec import DIFFUSION
from testtime.lab.data.store import Store
from testtime.lab.reports import diffusion as report
from testtime.view.store_data import UnknownRun


def analysis(db: Store, run_id: str) -> dict[str, Any]:
    """The run's report as `testtime diffuse report` makes it, as JSON-ready data: points
    (mean, lo, hi of accuracy and reward per arm and NFE budget), the table's cells, the
    plots' axis labels, the run's arms and models, and each problem with its results."""
    points = report.analyse(db, run_id)
    spec = db.run(run_id)["spec"]
    return {
        "title": report.title(run_id),
        "caption": report.CAPTION,
        "headers": list(report.HEADERS),
        "table": [list(row) for row in report.table_rows(points)],
        "points": [dataclasses.asdict(p) for p in points],
        "axes": dict(report.AXES),
        "arms": [arm["label"] for arm in spec.get("arms", [])],
        "models": [m for (m,) in db.db.execute(
            "SELECT DISTINCT model FROM results WHERE run = ? ORDER BY model", (run_id,))],
        "difference_headers": list(report.DIFFERENCE_HEADERS),
        "problems": problems(db, run_id),
    }  # fmt: skip


def compare(db: Store, run_id: str, a: str, b: str) -> dict[str, Any]:
    """Arm a minus arm b, paired by problem (`diffuse report --compare a,b`): its cells."""
    rows = report.compare(db, run_id, a, b)
    return {
        "run": run_id,
        "a": a,
        "b": b,
        "title": f"{a} minus {b}, paired by problem",
        "caption": report.CAPTION,
        "headers": list(report.DIFFERENCE_HEADERS),
        "table": [list(cells) for cells in report.comparison_rows(rows)],
    }


def problems(db: Store, run_id: str) -> list[dict[str, Any]]:
    """Each problem in order with its prompt, gold label, stored results and how many of
    them the judge called correct."""
    rows = db.db.execute(
        "SELECT p.task, p.problem, p.position, p.prompt, p.answer, count(r.problem),"
        " coalesce(sum(r.correct), 0) FROM problems p LEFT JOIN results r"
        " ON r.run = p.run AND r.task = p.task AND r.problem = p.problem"
        " WHERE p.run = ? GROUP BY p.task, p.problem ORDER BY p.task, p.position",
        (run_id,),
    ).fetchall()
    keys = ("task", "problem", "position", "prompt", "gold", "results", "correct")
    return [{**dict(zip(keys, row, strict=True)), "prompt": _prompt(row[3])} for row in rows]


def with_report(db: Store, view: dict[str, Any]) -> dict[str, Any]:
    """A run's page data (`store_data.run_view`) with, for a diffusion run, its report under
    "diffusion"; any other run as it is."""
    if view["kind"] != DIFFUSION:
        return view
    found = analysis(db, view["id"])
    tasks = sorted({p["task"] for p in found["problems"]})
    brief = {**view["brief"], "models": found["models"], "tasks": tasks}
    return {**view, "brief": brief, "diffusion": found}


def problem_view(db: Store, rec: dict[str, Any], task: str, problem: str) -> dict[str, Any]:
    """One problem of a diffusion run (`rec`, its stored record): its prompt and gold label,
    and each stored result (arm, NFE budget, seed) with its chosen label and reward, cost
    and every finished image's label, reward and parent."""
    run_id = rec["id"]
    gold = next((p for p in db.problems(run_id, task) if p.problem == problem), None)
    found = db.problem_results(run_id, task, problem, traces=True)
    if gold is None and not found:
        tasks = ", ".join(sorted({t for t, *_ in db.problem_totals(run_id)})) or "(none)"
        raise UnknownRun(
            f"run {run_id!r} has no problem {problem!r} of task {task!r}; its tasks: {tasks} "
            "(pick one from the run's page)"
        )
    order = {arm["label"]: i for i, arm in enumerate(rec["spec"].get("arms", []))}
    found.sort(key=lambda r: (order.get(r["arm"], len(order)), r["arm"], r["budget"], r["seed"]))
    return {
        "kind": "diffusion",
        "run": run_id,
        "name": rec["name"],
        "task": task,
        "problem": problem,
        "gold": gold.answer if gold else None,
        "prompt": _prompt(gold.prompt) if gold else None,
        "results": [_result(r) for r in found],
    }


def _result(row: dict[str, Any]) -> dict[str, Any]:
    trace = json.loads(row["trace"]) if row["trace"] else {}
    candidates = json.loads(row["candidates"])
    return {
        **{k: row[k] for k in ("model", "arm", "budget", "seed", "answer", "chosen")},
        "correct": None if row["correct"] is None else bool(row["correct"]),
        "exhausted": bool(row["exhausted"]),
        "cost": row["cost"],
        "reward": trace.get("chosen_reward"),
        "trace": trace,
        "samples": [
            {"idx": i, "chosen": i == row["chosen"], **c} for i, c in enumerate(candidates)
        ],
    }


def _prompt(stored: str) -> str:
    """A stored prompt as text (the lab writes a diffusion prompt as a JSON string)."""
    try:
        value = json.loads(stored)
    except ValueError:
        return stored
    return value if isinstance(value, str) else json.dumps(value)
