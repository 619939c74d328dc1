"""A lab run's progress read from its store, for the live page (issue 18).

The lab writes each finished unit (a pool slice, or one strategy run at one budget) in one
transaction, so a read between two commits sees whole units: how many of the run's grid are
stored (the grid is planned again from the stored spec and problems, as a resume plans it),
the samples and results so far, their FLOPs (as `testtime lab ls` counts them), and each
problem's current leader: per pool, core's vote over the stored samples (their canonical
answers grouped as `store_data.grouped` groups them for the problem page); per arm, the answer
of its largest budget stored so far.

The page polls once a second while a run may hold 100k samples, so a poll does not read the
run again: each run followed keeps a `_Fold` (its pools' vote tallies, which sample slices
and results are stored, the last rowids read) and folds in only the rows stored since
(`Store.stored_after`). The fold checks itself against the run's row counts read in the same
snapshot and starts over on any difference (the store replaced, say); a few runs are kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testtime.core.answers import canonical
from testtime.core.voting import Group, leader
from testtime.lab.analysis.replay import canonicals
from testtime.lab.data.rows import Unit
from testtime.lab.data.spec import spec_from_dict, spec_key
from testtime.lab.data.store import Store
from testtime.lab.execution.runner import plan_units
from testtime.view import store_data

FINISHED = ("success", "error", "cancelled")
KEPT = 8  # runs whose folds are kept (a fold holds a tally per answer form per pool)

PoolKey = tuple[str, str, str, int, str]  # model, task, pool, seed, problem
ArmKey = tuple[str, str, str, int, str]  # model, task, arm, seed, problem


@dataclass
class _Tally:
    """One pool's vote so far: per canonical answer, [first idx, samples, correct samples]."""

    size: int = 0
    forms: dict[str, list[int]] = field(default_factory=dict)

    def add(self, idx: int, form: str | None, correct: Any) -> None:
        self.size += 1
        if form is None:
            return  # counted in the pool's size; never votes
        found = self.forms.get(form)
        if found is None:
            self.forms[form] = [idx, 1, 1 if correct else 0]
        else:
            found[0] = min(found[0], idx)  # first seen = lowest index, as the full read sorts
            found[1] += 1
            found[2] += 1 if correct else 0

    def top(self) -> tuple[str, int, int] | None:
        """Core's leader over the groups in first-seen order: (answer, votes, correct)."""
        firsts = sorted(self.forms.items(), key=lambda kv: kv[1][0])
        # leader reads each group's answer, weight and order; members: its first index only
        best = leader([Group(form, (t[0],), float(t[1])) for form, t in firsts])
        if best is None:
            return None
        _, votes, correct = self.forms[best.answer]
        return best.answer, votes, correct


@dataclass
class _Fold:
    """What a run's stored rows add up to, up to the last rowids read."""

    created: float
    canon: dict[str, Callable[[str], str]]
    sample_at: int = 0  # the last rowid folded in
    result_at: int = 0
    samples: int = 0  # rows folded in
    results: int = 0
    pools: dict[PoolKey, _Tally] = field(default_factory=dict)
    slices: dict[PoolKey, int] = field(default_factory=dict)  # bit i: sample idx i stored
    arms: dict[ArmKey, tuple[int, str | None, Any]] = field(default_factory=dict)
    stored: set[tuple[Any, ...]] = field(default_factory=set)  # result keys, as Store.done

    def add(self, samples: Iterable[tuple[Any, ...]], results: Iterable[tuple[Any, ...]]) -> None:
        for rowid, model, task, pool, seed, problem, idx, answer, correct in samples:
            key = (model, task, pool, seed, problem)
            form = None if answer is None else self.canon.get(task, canonical)(answer)
            self.pools.setdefault(key, _Tally()).add(idx, form, correct)
            self.slices[key] = self.slices.get(key, 0) | (1 << idx)
            self.sample_at, self.samples = max(self.sample_at, rowid), self.samples + 1
        for rowid, model, task, arm, budget, seed, problem, answer, correct in results:
            key = (model, task, arm, seed, problem)
            if key not in self.arms or budget > self.arms[key][0]:
                self.arms[key] = (budget, answer, correct)
            self.stored.add((model, task, arm, budget, seed, problem))
            self.result_at, self.results = max(self.result_at, rowid), self.results + 1

    def done(self, unit: Unit) -> bool:
        """Whether a unit is stored: all of its sample slice, or its result (as a resume
        skips it)."""
        if unit.pool is None:
            return (unit.model, unit.task, unit.arm, unit.budget, unit.seed, unit.problem) in (
                self.stored
            )
        mask = (1 << unit.count) - 1
        have = self.slices.get((unit.model, unit.task, unit.pool, unit.seed, unit.problem), 0)
        return (have >> unit.first) & mask == mask


_FOLDS: OrderedDict[tuple[str, str], _Fold] = OrderedDict()
_LOCK = threading.Lock()  # polls run in a thread pool: one folds in new rows at a time


def _folded(db: Store, run_id: str, rec: dict[str, Any]) -> _Fold:
    """The run's fold, brought up to what the store holds now."""
    where = (str(Path(db.path).resolve()), run_id)
    fold = _FOLDS.get(where)
    if fold is None or fold.created != rec["created"]:
        fold = _Fold(rec["created"], canonicals(db, run_id))
    samples, results, n_samples, n_results = db.stored_after(run_id, fold.sample_at, fold.result_at)
    fold.add(samples, results)
    if (fold.samples, fold.results) != (n_samples, n_results):  # not the rows it folded
        fold = _Fold(rec["created"], fold.canon)
        fold.add(*db.stored_after(run_id, 0, 0)[:2])
    _FOLDS[where] = fold
    _FOLDS.move_to_end(where)
    while len(_FOLDS) > KEPT:
        _FOLDS.popitem(last=False)
    return fold


def run_progress(db: Store, run_id: str) -> dict[str, Any]:
    """Units done of the grid, samples, results and FLOPs so far, and the leaders."""
    rec = store_data.record(db, run_id)
    totals = next(r for r in db.runs() if r["id"] == run_id)
    spec = spec_from_dict(rec["spec"])
    problems = {
        spec_key(t): [p.problem for p in db.problems(run_id, spec_key(t))] for t in spec.tasks
    }
    units = list(plan_units(spec, problems))
    with _LOCK:
        fold = _folded(db, run_id, rec)
        done = sum(1 for u in units if fold.done(u))
        found = _leaders(db, run_id, fold)
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
        "leaders": found,
    }


def leaders(db: Store, run_id: str) -> list[dict[str, Any]]:
    """Each problem's leader so far: one row per pool (its vote) and per arm (its answer at
    the largest budget stored), in the problems' order, then by model, pool or arm, seed."""
    with _LOCK:
        return _leaders(db, run_id, _folded(db, run_id, store_data.record(db, run_id)))


def _leaders(db: Store, run_id: str, fold: _Fold) -> list[dict[str, Any]]:
    rows: dict[tuple[str, str], list[tuple[tuple[Any, ...], dict[str, Any]]]] = {}
    for (model, task, pool, seed, problem), tally in fold.pools.items():
        top = tally.top()
        rows.setdefault((task, problem), []).append(((0, model, pool, seed), {
            "source": f"pool {pool}", "model": model, "seed": seed,
            "answer": top[0] if top else None, "votes": top[1] if top else 0, "of": tally.size,
            "correct": None if top is None else top[2] == top[1],
        }))  # fmt: skip
    for (model, task, arm, seed, problem), (budget, answer, correct) in fold.arms.items():
        rows.setdefault((task, problem), []).append(((1, model, arm, seed), {
            "source": f"{arm} at {budget}", "model": model, "seed": seed, "answer": answer,
            "votes": None, "of": None, "correct": None if correct is None else bool(correct),
        }))  # fmt: skip
    order = {
        (task, problem): (task, position)
        for task, problem, position in db.db.execute(
            "SELECT task, problem, position FROM problems WHERE run = ?", (run_id,)
        )
    }
    out: list[dict[str, Any]] = []
    for where in sorted(rows, key=lambda k: order.get(k, (k[0], 0))):
        for _, row in sorted(rows[where], key=lambda r: r[0]):
            out.append({"task": where[0], "problem": where[1], **row})
    return out
