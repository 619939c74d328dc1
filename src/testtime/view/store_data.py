"""The lab store, shaped for the viewer's JSON APIs: runs, a run's analysis, one problem.

Nothing here computes a metric of its own: a run's curves, intervals, frontier and notes are
`lab.analysis.replay.analyse` (what `testtime lab report` shows), sent as they are; samples
are grouped by the task's canonical form and ordered by core's `leader`, as the vote grouped
them. A store is opened read-only for each request, so a run in progress shows its latest.

A run's analysis is kept (by the run's row counts and status, so a changed run is replayed
again), and `warm` replays the newest runs' in the background from `testtime view`'s start
until a page asks for one: a page asking for the run being replayed waits for that replay.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from testtime.core.answers import canonical
from testtime.core.errors import ConfigError, DataError, TesttimeError
from testtime.core.types import Candidate
from testtime.core.voting import group, leader
from testtime.lab.analysis import fit
from testtime.lab.analysis.curves import AXIS_LABELS
from testtime.lab.analysis.replay import analyse, canonicals
from testtime.lab.data.spec import DIFFUSION, run_kind
from testtime.lab.data.store import Store, open_store
from testtime.lab.reports.llm import HEADERS, PARETO_KEY, summary, table_rows
from testtime.lab.reports.plots import COVERAGE_LABEL

CACHED = 8  # analyses kept in memory (a replay of a large run takes seconds)
log = logging.getLogger(__name__)


class UnknownRun(DataError):
    """A run id (or a run's problem) the store does not hold."""

    http_status = 404


@contextmanager
def opened(path: Path | None) -> Iterator[Store]:
    """The store, read-only; a viewer started without one is told how to give it."""
    if path is None:
        raise ConfigError(
            "no lab store opened; start the viewer as `testtime view --store FILE` "
            "(the lab's default is testtime-lab/store.sqlite)"
        )
    with open_store(path, readonly=True) as db:
        yield db


def record(db: Store, run_id: str) -> dict[str, Any]:
    """The run's stored record; an unknown id raises `UnknownRun` with the runs it has."""
    try:
        return db.run(run_id)
    except DataError as e:
        if str(e).startswith("no run "):
            raise UnknownRun(str(e)) from None
        raise


def runs(db: Store) -> list[dict[str, Any]]:
    """Every run, newest first: status, cost, spec in brief, created, seconds."""
    out = []
    for r in reversed(db.runs()):
        rec = db.run(r["id"])
        spec = rec["spec"]
        out.append({
            **r,
            "name": rec["name"],
            "kind": run_kind(spec),
            "error": rec["error"],
            "spec": brief(spec),
        })  # fmt: skip
    return out


def brief(spec: dict[str, Any]) -> dict[str, Any]:
    """A spec's gist for a list: models, tasks, arms, budgets, pool, problems, seeds."""
    arms = spec.get("arms", [])
    return {
        "models": list(spec.get("models", [])),
        "tasks": [t.get("name", "?") for t in spec.get("tasks", [])],
        "arms": [a.get("label", "?") for a in arms],
        "budgets": sorted({b for a in arms for b in a.get("budgets", [])}),
        "pool": spec.get("pool"),
        "problems": spec.get("problems"),
        "seeds": spec.get("seeds"),
    }


_cache: dict[tuple[Any, ...], dict[str, Any]] = {}
_running: dict[tuple[Any, ...], threading.Event] = {}  # analyses under way: set when done
_asked = [0]  # analyses pages have asked for: warming stops at the first
_lock = threading.Lock()


def _version(db: Store, run_id: str) -> tuple[Any, ...]:
    """What changes when a run's stored rows change: its counts and status."""
    found = next((r for r in db.runs() if r["id"] == run_id), {})
    return (str(db.path.resolve()), run_id, found.get("samples"), found.get("results"),
            found.get("status"))  # fmt: skip


def run_view(db: Store, run_id: str) -> dict[str, Any]:
    """A run's record and its analysis (the one `lab report` makes), as JSON-ready data."""
    rec = record(db, run_id)
    base = {
        "id": rec["id"],
        "name": rec["name"],
        "status": rec["status"],
        "created": rec["created"],
        "seconds": rec["seconds"],
        "error": rec["error"],
        "source": rec["source"],
        "spec": rec["spec"],
        "brief": brief(rec["spec"]),
        "environment": rec["environment"],
        "kind": run_kind(rec["spec"]),
        "totals": next((r for r in db.runs() if r["id"] == run_id), {}),
    }
    if base["kind"] == DIFFUSION:  # its report is view.diffusion_data's (with_report)
        return {**base, "analysis": None}
    with _lock:
        _asked[0] += 1
    return {**base, "analysis": cached_analysis(db, run_id)}


def cached_analysis(db: Store, run_id: str) -> dict[str, Any]:
    """`analysis_json`, kept for the run's current rows; one replay at a time per run and
    rows: a second asker waits for the first's (the warm-up's) instead of replaying too."""
    key = _version(db, run_id)
    while True:
        with _lock:
            if key in _cache:
                return _cache[key]
            running = _running.get(key)
            if running is None:
                done = _running[key] = threading.Event()
                break
        running.wait()  # then kept, or failed there: replayed here
    try:
        found = analysis_json(db, run_id)
        with _lock:
            if len(_cache) >= CACHED:
                _cache.pop(next(iter(_cache)))
            _cache[key] = found
        return found
    finally:
        with _lock:
            del _running[key]
        done.set()


def warm(path: Path) -> threading.Thread:
    """Start replaying, in a background thread, what a run's first open needs: the fitting
    library's import, then the analyses of the newest runs (as many as are kept), until a
    page asks for an analysis (its request then has the CPU). A page opened before is still
    exact: it waits for its run's replay under way or makes its own."""
    with _lock:
        asked = _asked[0]

    def work() -> None:
        fit.load_fitter()
        try:
            with opened(path) as db:
                for r in list(reversed(db.runs()))[:CACHED]:
                    with _lock:
                        if _asked[0] != asked:
                            return
                    if run_kind(db.run(r["id"])["spec"]) != DIFFUSION:
                        cached_analysis(db, r["id"])
        except (TesttimeError, sqlite3.Error) as e:  # the page asking for it will say so
            log.debug("warming %s stopped: %s", path, e)

    thread = threading.Thread(target=work, name="testtime-view-warm", daemon=True)
    thread.start()
    return thread


def analysis_json(db: Store, run_id: str) -> dict[str, Any]:
    """`analyse(db, run_id)` as plain data, with `lab report`'s table (its columns and its
    cells, at the run's budgets), the summary lines and the axes' labels."""
    found = analyse(db, run_id)
    spec = db.run(run_id)["spec"]
    data = dataclasses.asdict(found)
    data["pareto"] = {axis: [list(p) for p in pts] for axis, pts in found.pareto.items()}
    data["summary"] = summary(found)
    data["headers"] = list(HEADERS)
    data["pareto_key"] = PARETO_KEY if found.pareto.get("flops") else ""
    data["coverage_label"] = COVERAGE_LABEL
    data["axes"] = dict(AXIS_LABELS)
    data["budgets"] = sorted(
        {b for arm in spec.get("arms", []) for b in arm.get("budgets", [])}
        | ({spec["pool"]} if spec.get("pool") else set())
    )
    data["table"] = [list(row) for row in table_rows(found, data["budgets"])]  # lab report's cells
    return data


def problems(db: Store, run_id: str) -> list[dict[str, Any]]:
    """Each problem of a run with its gold answer and how many stored samples are correct."""
    record(db, run_id)
    keys = ("task", "problem", "position", "gold", "samples", "correct", "results")
    return [dict(zip(keys, row, strict=True)) for row in db.problem_totals(run_id)]


def problem_view(db: Store, run_id: str, task: str, problem: str) -> dict[str, Any]:
    """One problem: its pools (per model, pool and seed), each pool's samples grouped as the
    vote groups them (the task's canonical answer; the leader first, then by size), the
    judge's verdicts and the arms' results where stored."""
    rec = record(db, run_id)
    gold = next((p for p in db.problems(run_id, task) if p.problem == problem), None)
    samples = db.problem_samples(run_id, task, problem)
    if gold is None and not samples:
        listing = ", ".join(sorted({t for t, *_ in db.problem_totals(run_id)})) or "(none)"
        raise UnknownRun(
            f"run {run_id!r} has no problem {problem!r} of task {task!r}; its tasks: {listing} "
            "(pick one from the run's page)"
        )
    canon = canonicals(db, run_id).get(task, canonical)
    pools: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for s in samples:
        pools.setdefault((s["model"], s["pool"], s["seed"]), []).append(s)
    return {
        "run": run_id,
        "name": rec["name"],
        "task": task,
        "problem": problem,
        "gold": gold.answer if gold else None,
        "prompt": gold.prompt if gold else None,
        "pools": [
            {"model": m, "pool": p, "seed": seed, **grouped(rows, canon)}
            for (m, p, seed), rows in pools.items()
        ],
        "verdicts": db.problem_verdicts(run_id, task, problem),
        "results": db.problem_results(run_id, task, problem),
    }


def grouped(rows: list[dict[str, Any]], canon: Callable[[str], str]) -> dict[str, Any]:
    """A pool's samples in vote groups: core's `group` over the canonical answers (as
    `lab.analysis.pools` replays a vote), the `leader` first, then the larger groups; samples
    with no answer last, in a group of their own."""
    forms = [None if s["answer"] is None else canon(s["answer"]) for s in rows]
    groups = group([Candidate("", f, id=i) for i, f in enumerate(forms)], None, _same)
    top = leader(groups)
    order = sorted(groups, key=lambda g: (g is not top, -len(g.members), g.members[0]))
    out = [
        {
            "answer": g.answer,
            "leader": g is top,
            "count": len(g.members),
            "correct": sum(1 for i in g.members if rows[i]["correct"]),
            "samples": [rows[i] for i in g.members],
        }
        for g in order
    ]
    unanswered = [s for s, f in zip(rows, forms, strict=True) if f is None]
    if unanswered:
        out.append({"answer": None, "leader": False, "count": len(unanswered),
                    "correct": 0, "samples": unanswered})  # fmt: skip
    return {"size": len(rows), "groups": out}


def _same(a: str, b: str) -> bool:
    return a == b
