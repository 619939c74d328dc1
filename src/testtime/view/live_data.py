"""A lab run's progress read from its store, for the live page (issue 18).

The lab writes each finished unit (a pool slice, or one strategy run at one budget) in one
transaction, so a read between two commits sees whole units: how many of the run's grid are
stored (the grid is planned again from the stored spec and problems, as a resume plans it),
the samples and results so far, their FLOPs (as `testtime lab ls` counts them), and each
problem's current leader: per pool, core's vote over the stored samples (`store_data.grouped`,
as the problem page groups them); per arm, the answer of its largest budget stored so far.
"""

from __future__ import annotations

from typing import Any

from testtime.core.answers import canonical
from testtime.lab.analysis.replay import canonicals
from testtime.lab.data.spec import spec_from_dict, spec_key
from testtime.lab.data.store import Store
from testtime.lab.execution.runner import _stored, plan_units
from testtime.view import store_data

FINISHED = ("success", "error", "cancelled")


def run_progress(db: Store, run_id: str) -> dict[str, Any]:
    """Units done of the grid, samples, results and FLOPs so far, and the leaders."""
    rec = store_data.record(db, run_id)
    totals = next(r for r in db.runs() if r["id"] == run_id)
    spec = spec_from_dict(rec["spec"])
    problems = {
        spec_key(t): [p.problem for p in db.problems(run_id, spec_key(t))] for t in spec.tasks
    }
    units = list(plan_units(spec, problems))
    samples, results = db.done(run_id)
    done = sum(1 for u in units if _stored(u, samples, results))
    return {
        "run": run_id,
        "name": rec["name"],
        "status": totals["status"],
        "finished": totals["status"] in FINISHED,
        "error": rec["error"],
        "units_done": done,
        "units_total": len(units),
        "samples": totals["samples"],
        "results": totals["results"],
        "flops": totals["flops"],
        "seconds": totals["seconds"],
        "leaders": leaders(db, run_id),
    }


def leaders(db: Store, run_id: str) -> list[dict[str, Any]]:
    """Each problem's leader so far: one row per pool (its vote) and per arm (its answer at
    the largest budget stored), in the problems' order."""
    canon = canonicals(db, run_id)
    pools: dict[tuple[str, str, str, str, int], list[dict[str, Any]]] = {}
    for task, problem, model, pool, seed, answer, correct in db.db.execute(
        "SELECT task, problem, model, pool, seed, answer, correct FROM samples WHERE run = ?"
        " ORDER BY idx",
        (run_id,),
    ):
        pools.setdefault((task, problem, model, pool, seed), []).append(
            {"answer": answer, "correct": correct}
        )
    rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for (task, problem, model, pool, seed), found in pools.items():
        shaped = store_data.grouped(found, canon.get(task, canonical))
        top = next((g for g in shaped["groups"] if g["leader"]), None)
        rows.setdefault((task, problem), []).append({
            "source": f"pool {pool}", "model": model, "seed": seed,
            "answer": top["answer"] if top else None,
            "votes": top["count"] if top else 0, "of": shaped["size"],
            "correct": None if top is None else top["correct"] == top["count"],
        })  # fmt: skip
    best: dict[tuple[str, str, str, str, int], tuple[Any, ...]] = {}
    for task, problem, model, arm, budget, seed, answer, correct in db.db.execute(
        "SELECT task, problem, model, arm, budget, seed, answer, correct FROM results"
        " WHERE run = ?",
        (run_id,),
    ):
        key = (task, problem, model, arm, seed)
        if key not in best or budget > best[key][0]:
            best[key] = (budget, answer, correct)
    for (task, problem, model, arm, seed), (budget, answer, correct) in best.items():
        rows.setdefault((task, problem), []).append({
            "source": f"{arm} at {budget}", "model": model, "seed": seed, "answer": answer,
            "votes": None, "of": None, "correct": None if correct is None else bool(correct),
        })  # fmt: skip
    order = {
        (task, problem): (task, position)
        for task, problem, position in db.db.execute(
            "SELECT task, problem, position FROM problems WHERE run = ?", (run_id,)
        )
    }
    out: list[dict[str, Any]] = []
    for where in sorted(rows, key=lambda k: order.get(k, (k[0], 0))):
        out.extend({"task": where[0], "problem": where[1], **row} for row in rows[where])
    return out
