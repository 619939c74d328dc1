"""Generate once, replay many: a run's curves, fits and frontiers, from the store alone.

Replayed arms get a point at every k up to the pool size (exact estimators) or at powers
of two and their budgets (Monte Carlo); per-budget arms get their measured points. Each
point's accuracy is the mean over problems (seeds averaged within a problem) with a
percentile-bootstrap interval over problems; its cost is the expected cost per problem
at that k: the prompt prefilled once, k samples, and k verifier passes when scored (a
tournament: the judge calls that subset's tournament makes, each at its stored cost).
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from testtime.core.answers import canonical
from testtime.core.cost import flops
from testtime.core.errors import ConfigError, DataError
from testtime.core.kinetics import INTENSITY, KVShape
from testtime.lab.analysis import estimators, fit
from testtime.lab.analysis.costs import exchange_lines, kv_shape
from testtime.lab.analysis.curves import AXES, MEMORY, Analysis, Ceiling, Curve, Point
from testtime.lab.analysis.pools import (
    Pool,
    Verdicts,
    coverage,
    replays,
    rule,
    selection_flops,
)
from testtime.lab.data.arms import JUDGED, run_reason
from testtime.lab.data.spec import ArmSpec, RunSpec, spec_from_dict, spec_key
from testtime.lab.data.store import Store
from testtime.lab.execution.work import pool_key
from testtime.strategies.run import build_task
from testtime.tasks.base import canonical_of

CI_LEVEL = 0.95
RESAMPLES = 2000
DRAWS = 500  # Monte Carlo subsets per (problem, k)

PoolKey = tuple[str, str, str]  # model, task, pool
Pools = dict[PoolKey, dict[str, list[Pool]]]  # -> problem -> one pool per seed


def analyse(store: Store, run_id: str, *, draws: int = DRAWS, seed: int = 0) -> Analysis:
    """The analysis of a stored run (complete or not: whatever is stored is used)."""
    record = store.run(run_id)
    spec = spec_from_dict(record["spec"])
    n_params = _n_params(record)
    pools = _pools(store, run_id)
    curves: list[Curve] = []
    shapes = {m: kv_shape(m) for m in spec.models}
    several = len(spec.models) > 1 or len(spec.tasks) > 1
    for model, task in sorted({(m, t) for m, t, _ in pools} | _result_pairs(store, run_id)):
        prefix = f"{model}/{task}/" if several else ""
        for arm in spec.arms:
            key = (model, task, pool_key(arm.sampling))
            if arm.replay is not None and key in pools:
                curves.append(_replayed(
                    arm, pools[key], n_params.get(model, 0), prefix, draws, seed, shapes[model]
                ))  # fmt: skip
        curves += _measured(
            store, run_id, spec, model, task, prefix, n_params.get(model, 0), shapes[model]
        )
    main = _main_pool(pools, spec)
    cover = _coverage(main, n_params.get(main[0][0], 0) if main else 0) if main else None
    if several:  # every model and task its own coverage; the fit is the first one's
        for model, task in sorted({(m, t) for m, t, _ in pools}):
            own = _main_pool({k: v for k, v in pools.items() if k[:2] == (model, task)}, spec)
            found = _coverage(own, n_params.get(model, 0)) if own else None
            if found is not None:
                curves.append(dataclasses.replace(found, label=f"{model}/{task}/{found.label}"))
    law = None
    if cover is not None:  # on log-spaced k, as Brown et al. fit it
        spaced = set(fit.log_spaced(len(cover.points)))
        used = [p for p in cover.points if p.budget in spaced]
        law = fit.fit_coverage([p.budget for p in used], [p.accuracy for p in used])
    return Analysis(
        run_id=run_id,
        title=f"{spec.name}: {', '.join(spec.models)} on {', '.join(t.name for t in spec.tasks)}",
        problems=max((len(v) for v in pools.values()), default=_result_problems(store, run_id)),
        curves=tuple(c for c in curves if c.points),
        coverage=cover,
        fit=law,
        saturation={
            c.label: fit.saturation([p.budget for p in c.points], [p.accuracy for p in c.points])
            for c in ([*curves, cover] if cover else curves)
            if len(c.points) > 1
        },
        ceilings=_ceilings(main[1]) if main else (),
        pareto={
            axis: tuple(
                fit.pareto(
                    [(c.label, p.budget, p.x(axis), p.accuracy) for c in curves for p in c.points]
                )
            )
            for axis in (*AXES, MEMORY)
            if axis != MEMORY or any(p.eflops > 0 for c in curves for p in c.points)
        },
        notes=(
            "majority@k, best-of-k and pass@k: exact expectations over all k-subsets of each "
            "problem's stored pool (Chen et al. 2021 for pass@k; ties split evenly)",
            f"weighted vote and best-of-majority: Monte Carlo over {draws} random k-subsets "
            "per problem and k",
            f"intervals: {CI_LEVEL:.0%} percentile bootstrap over problems "
            f"({RESAMPLES} resamples); seeds are averaged within a problem",
            "cost per problem at k: prompt once + k samples (+ k verifier passes if scored; "
            "+ the judge calls its tournament makes, replayed from stored verdicts)",
            *arm_lines(spec),
            "eFLOPs (Kinetics): FLOPs + 562.5 x KV-cache bytes read while decoding, each "
            "sample with its own copy of the prompt's cache (core/kinetics.py)",
            *exchange_lines(n_params),
        ),
    )


def arm_lines(spec: RunSpec) -> tuple[str, ...]:
    """Which arms were replayed from stored pools (by which rule) and which ran at each
    budget, and why: a report says where each curve came from."""
    replayed = [f"{a.label} ({a.replay})" for a in spec.arms if a.replay is not None]
    run = [f"{a.label} ({run_reason(a.strategy, a.verifier)})" for a in spec.arms
           if a.replay is None]  # fmt: skip
    lines = []
    if replayed:
        lines.append("replayed from stored pools: " + "; ".join(replayed))
    if run:
        lines.append("run at each budget: " + "; ".join(run))
    if any(a.replay == JUDGED for a in spec.arms):
        lines.append(
            "tournament: replayed from the judge's stored verdicts on every pair of the pool "
            "(both orders), through the strategy's own bracket (Monte Carlo over subsets)"
        )
    return tuple(lines)


def stored_pools(store: Store, run_id: str) -> Pools:
    """Every stored pool of a run: (model, task, pool) -> problem -> one Pool per seed."""
    return _pools(store, run_id)


def _pools(store: Store, run_id: str) -> Pools:
    canon = canonicals(store, run_id)
    rows: dict[tuple[str, str, str, int, str], list[tuple[Any, ...]]] = {}
    for row in store.samples(run_id):
        rows.setdefault(row[:5], []).append(row)
    found = {where: Pool(canon=canon.get(where[1], canonical)) for where in rows}
    for where, stored in found.items():
        stored.extend(rows[where])
    out: Pools = defaultdict(lambda: defaultdict(list))
    for row in store.judged_texts(run_id):  # judged pools: texts tell entrants apart
        found[row[:5]].texts.append(row[6])
    for row in store.verdicts(run_id):
        where = (row[0], row[1], row[2], row[4], row[5])
        if where in found:
            found[where].judged.setdefault(row[3], Verdicts()).add(row)
    for (model, task, pool, _seed, problem), p in found.items():
        out[(model, task, pool)][problem].append(p)
    return out


def canonicals(store: Store, run_id: str) -> dict[str, Callable[[str], str]]:
    """Each task's `canonical` (what one vote is), by its key in the store: the one its
    registration declares (no task is built, no dataset loaded), else the built task's; a
    task that is neither votes by core's form, which every task's refines."""
    try:
        tasks = spec_from_dict(store.run(run_id)["spec"]).tasks
    except (ConfigError, DataError, KeyError):
        return {}
    out: dict[str, Callable[[str], str]] = {}
    for t in tasks:
        try:
            out[spec_key(t)] = canonical_of(t.name) or build_task(t).canonical
        except (ConfigError, DataError):
            continue
    return out


def _points(
    pools: dict[str, list[Pool]],
    ks: Sequence[int],
    value: Callable[[Pool, Sequence[int]], list[float]],
    cost: Callable[[Pool, np.ndarray], np.ndarray],
) -> tuple[Point, ...]:
    """Mean over problems at each k (seeds averaged first), with bootstrap bands. `cost`
    gives a pool's costs at every k at once: one row per k, one column per axis."""
    problems = sorted(pools)
    at = np.asarray(ks, dtype=float)
    acc = np.array([_seed_mean([value(p, ks) for p in pools[q]]) for q in problems])
    costs = np.array([_seed_mean([cost(p, at) for p in pools[q]]) for q in problems])
    lo, hi = estimators.bootstrap_ci_many(acc, CI_LEVEL, RESAMPLES)
    mean, c = acc.mean(axis=0), costs.mean(axis=0)
    return tuple(
        Point(k, float(mean[j]), float(lo[j]), float(hi[j]), *map(float, c[j]))
        for j, k in enumerate(ks)
    )


def _seed_mean(rows: Sequence[Any]) -> np.ndarray:
    """The mean of a problem's seeds' rows; one seed's row as it is (the mean of one value
    is that value), without numpy's mean per problem."""
    return np.asarray(rows[0], dtype=float) if len(rows) == 1 else np.mean(rows, axis=0)


def _replay_ks(pools: dict[str, list[Pool]], arm: ArmSpec, estimator: str) -> list[int]:
    size = min(p.size for ps in pools.values() for p in ps)
    if arm.replay == "single":
        return [1]
    if estimator == "exact":
        return list(range(1, size + 1))
    powers = {2**i for i in range(size.bit_length()) if 2**i <= size}
    return sorted(powers | {b for b in arm.budgets if b <= size} | {size})


def _replayed(
    arm: ArmSpec,
    pools: dict[str, list[Pool]],
    n_params: int,
    prefix: str,
    draws: int,
    seed: int,
    shape: KVShape | None = None,
) -> Curve:
    record = {**arm.to_dict(), "verifier_key": spec_key(arm.verifier) if arm.verifier else ""}
    value, estimator = rule(arm.replay or "", record, draws, seed)
    scored = spec_key(arm.verifier) if arm.verifier else None
    selecting = selection_flops(arm.replay or "", record, draws, seed)  # a judge's calls
    usable = replays(arm.replay or "", record)
    judged = arm.replay == JUDGED
    pools = {q: kept for q, ps in pools.items() if (kept := [p for p in ps if usable(p)])}
    if not pools:  # e.g. a tournament whose pools were not judged yet
        return Curve(prefix + arm.label, (), "monte-carlo", True)

    def cost(pool: Pool, ks: np.ndarray) -> np.ndarray:
        total = flops(n_params, pool.prompt_tokens) + ks * pool.flops_per(scored)
        if judged:
            total = total + [selecting(pool, int(k)) for k in ks]
        return np.stack([ks, ks * pool.mean_tokens(), total, _eflops(pool, ks, total, shape)], 1)

    ks = _replay_ks(pools, arm, estimator)
    points = _points(pools, ks, value, cost)
    if estimator == "exact":
        return Curve(prefix + arm.label, points, "exact", True)
    return Curve(prefix + arm.label, points, "monte-carlo", True)


def alone(cost: dict[str, Any], prompt: int, n_params: int) -> dict[str, Any]:
    """A run arm's stored cost on the replayed arms' footing: its recomputed prompt FLOPs
    (which depend on what else shared the prefix cache during the run) replaced by one
    prefill of the `prompt` tokens, as if the strategy had run alone."""
    cost["flops"] += flops(n_params, prompt - cost["prompt_tokens"])
    return cost


def _eflops(pool: Pool, ks: np.ndarray, total: np.ndarray, shape: KVShape | None) -> np.ndarray:
    """Kinetics's cost of k samples, at each k: FLOPs plus the KV traffic of k mean samples."""
    if shape is None:
        return np.zeros_like(ks)
    return total + INTENSITY * ks * pool.mean_kv(shape)


def _coverage(main: tuple[PoolKey, dict[str, list[Pool]]], n_params: int) -> Curve | None:
    pools = main[1]
    size = min(p.size for ps in pools.values() for p in ps)
    if size < 2:
        return None

    def cost(pool: Pool, ks: np.ndarray) -> np.ndarray:
        total = flops(n_params, pool.prompt_tokens) + ks * pool.flops_per()
        return np.stack([ks, ks * pool.mean_tokens(), total], 1)

    points = _points(pools, list(range(1, size + 1)), coverage, cost)
    return Curve(f"coverage ({main[0][2]})", points, "exact", True)


def _main_pool(pools: Pools, spec: RunSpec) -> tuple[PoolKey, dict[str, list[Pool]]] | None:
    """The largest pool of the spec's first model and task that has one: the one coverage
    (and its fit) is measured on."""
    if not pools:
        return None
    order = [(m, spec_key(t)) for m in spec.models for t in spec.tasks]
    first = min({k[:2] for k in pools}, key=lambda mt: order.index(mt) if mt in order else 1 << 30)
    mine = [k for k in pools if k[:2] == first]
    key = max(mine, key=lambda k: (min(p.size for ps in pools[k].values() for p in ps), k))
    return key, pools[key]


def _ceilings(pools: dict[str, list[Pool]]) -> tuple[Ceiling, ...]:
    """Stroebl et al.'s ceiling for each verifier whose scores are probabilities."""
    flat = [p for ps in pools.values() for p in ps]
    names = sorted({name for p in flat for s in p.scores for name in s})
    out = []
    for name in names:
        scores = [p.score(name) for p in flat]
        if all(0.0 <= v <= 1.0 for s in scores for v in s):
            correct = [[c >= 0.5 for c in p.correct] for p in flat]
            out.append(fit.verifier_ceiling(correct, scores, name))
    return tuple(out)


def _measured(
    store: Store,
    run_id: str,
    spec: RunSpec,
    model: str,
    task: str,
    prefix: str,
    n_params: int,
    shape: KVShape | None = None,
) -> list[Curve]:
    """Curves of the arms that ran at each budget, from their stored results.

    FLOPs are put on the replayed arms' footing: the policy's recomputed prompt FLOPs in
    the ledger (which depend on what else shared the prefix cache during the run) are
    replaced by one prefill of the prompt, as if the strategy had run alone.
    """
    rows: dict[str, dict[int, dict[str, list[tuple[float, dict[str, Any]]]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    kv = store.kv_terms(run_id) if shape is not None else {}
    for m, t, arm, budget, seed, problem, correct, cost, prompt in store.results(run_id):
        if (m, t) == (model, task):
            c = alone(json.loads(cost), prompt, n_params)
            terms = kv.get((m, t, arm, budget, seed, problem), 0.0)
            per_token = shape.bytes_per_token if shape is not None else 0
            c["eflops"] = c["flops"] + INTENSITY * per_token * terms if shape else 0.0
            rows[arm][budget][problem].append((float(correct or 0), c))
    curves = []
    for arm in spec.arms:
        if arm.replay is not None or arm.label not in rows:
            continue
        points = []
        for budget in sorted(rows[arm.label]):
            by_problem = rows[arm.label][budget]
            acc = np.array([[np.mean([a for a, _ in v])] for v in by_problem.values()])
            lo, hi = estimators.bootstrap_ci_many(acc, CI_LEVEL, RESAMPLES)
            costs = [c for v in by_problem.values() for _, c in v]
            per = len(costs)
            points.append(Point(
                budget, float(acc.mean()), float(lo[0]), float(hi[0]),
                sum(c["samples"] for c in costs) / per,
                sum(c["generated_tokens"] for c in costs) / per,
                sum(c["flops"] for c in costs) / per,
                sum(c["eflops"] for c in costs) / per,
            ))  # fmt: skip
        curves.append(Curve(prefix + arm.label, tuple(points), "run", False))
    return curves


def _result_pairs(store: Store, run_id: str) -> set[tuple[str, str]]:
    return {(r[0], r[1]) for r in store.results(run_id)}


def _result_problems(store: Store, run_id: str) -> int:
    return len({r[5] for r in store.results(run_id)})


def _n_params(record: dict[str, Any]) -> dict[str, int]:
    return {m: int(v) for m, v in record["environment"].get("n_params", {}).items()}
