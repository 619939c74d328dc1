"""Learning a compute-optimal policy from a lab run (Snell et al. 2024), and keeping it honest.

Every (arm, budget) of a training run is a configuration with a per-problem accuracy and
cost (replayed arms from their pool, the others from their stored results). Problems are
binned by predicted difficulty (from the first pilot samples of their pool, as
`compute_optimal` will draw them) or, for analysis, by oracle difficulty (their pool's pass
rate); each bin keeps the frontier of configurations that beat every cheaper one on it.
A policy is only evaluated on problems it was not trained on, of the same model and task.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from testtime.core.errors import ConfigError, DataError
from testtime.core.registry import Spec
from testtime.core.types import Candidate
from testtime.lab.analysis.pools import Pool, replays, rule, selection_flops
from testtime.lab.analysis.replay import DRAWS, alone, stored_pools
from testtime.lab.data.spec import ArmSpec, RunSpec, spec_from_dict, spec_key
from testtime.lab.data.store import Store
from testtime.lab.execution.work import at_budget, pool_key
from testtime.strategies.policy import (
    Axis,
    Choice,
    Feature,
    Pilot,
    Policy,
    difficulty,
    frontier,
)
from testtime.verifiers.base import named

SKIPPED = frozenset(named(lambda t: t.reads_gold))  # they may read the gold answer: lab-only


@dataclass(frozen=True, slots=True)
class Config:
    """One arm at one budget, with each training problem's accuracy and cost."""

    arm: ArmSpec
    budget: int
    accuracy: dict[str, float]  # problem -> accuracy (seeds averaged)
    cost: dict[str, float]  # problem -> cost on the axis


def allocate(
    store: Store,
    run_id: str,
    *,
    bins: int = 5,
    axis: Axis = "flops",
    pilot: int = 4,
    feature: Feature | None = None,
    verifier: str | None = None,
    model: str | None = None,
    task: str | None = None,
    min_bin: int = 4,
) -> Policy:
    """The compute-optimal policy of a stored run: bins' edges and per-bin frontiers."""
    if bins < 1 or pilot < 1:
        raise ConfigError(f"--bins and --pilot must be >= 1, got {bins} and {pilot}")
    record = store.run(run_id)
    spec = spec_from_dict(record["spec"])
    model = _one(model, spec.models, "model", "--model")
    task_spec = _task(spec, task)
    task = spec_key(task_spec)
    sampling, pools = _pilot_pools(store, run_id, spec, model, task)
    if min(p.size for ps in pools.values() for p in ps) < pilot:
        raise ConfigError(f"--pilot {pilot} is more than the stored pool holds; lower it")
    vspec = _pilot_verifier(spec, sampling, verifier)
    feature = feature or ("score+vote" if vspec else "vote")
    if feature in ("score", "score+vote") and vspec is None:
        raise ConfigError(f"difficulty {feature!r} needs a verifier scoring the pool: --verifier")
    key = spec_key(vspec) if vspec else None
    hard = {q: _difficulty(ps[0], pilot, feature, key) for q, ps in pools.items()}
    configs = [c for c in configurations(store, run_id, spec, model, task, axis) if c.accuracy]
    if not configs:
        raise DataError(f"run {run_id} has no graded results for {model} on {task} to learn from")
    problems = sorted(set.intersection(*(set(c.accuracy) for c in configs)) & set(hard))
    edges = merge_small(quantile_edges([hard[q] for q in problems], bins),
                        [hard[q] for q in problems], min_bin)  # fmt: skip
    members: dict[int, list[str]] = defaultdict(list)
    for q in problems:
        members[_bin(edges, hard[q])].append(q)
    everyone = _frontier(configs, problems)
    frontiers = tuple(_frontier(configs, members[b]) or everyone for b in range(len(edges) + 1))
    env = record["environment"]
    return Policy(
        model=model, fingerprint=str(env.get("models", {}).get(model, "")),
        n_params=int(env.get("n_params", {}).get(model, 0)), task=task_spec.to_dict(),
        run=run_id, trained_on=tuple(problems), max_tokens=spec.max_tokens, axis=axis,
        pilot=Pilot(pilot, sampling[0], sampling[1], feature,
                    _plain(vspec) if vspec and feature != "vote" else None, key),
        edges=tuple(edges), frontiers=frontiers,
        notes={"bin_sizes": [len(members[b]) for b in range(len(edges) + 1)],
               "skipped": sorted({c.arm.label for c in configs if not _usable(c.arm)})},
    )  # fmt: skip


def quantile_edges(values: Sequence[float], bins: int) -> list[float]:
    """The inner quantile edges of `values` for `bins` equal-size bins; ties stay together,
    so repeated edges merge (fewer, larger bins) rather than leave bins empty."""
    if not values:
        return []
    return sorted({float(np.quantile(values, i / bins)) for i in range(1, bins)})


def merge_small(edges: Sequence[float], values: Sequence[float], minimum: int) -> list[float]:
    """Edges with every bin holding at least `minimum` values: a small bin merges into its
    neighbour (the next one, or the previous for the last), so no choice rests on a few."""
    out = list(edges)
    while out:
        sizes = [sum(_bin(out, v) == b for v in values) for b in range(len(out) + 1)]
        small = next((b for b, n in enumerate(sizes) if n < minimum), None)
        if small is None:
            break
        del out[min(small, len(out) - 1)]
    return out


def _bin(edges: Sequence[float], x: float) -> int:
    return sum(e < x for e in edges)


def configurations(
    store: Store, run_id: str, spec: RunSpec, model: str, task: str, axis: Axis
) -> list[Config]:
    """Every (arm, budget) of the run with per-problem accuracy and cost on `axis`."""
    n_params = int(store.run(run_id)["environment"].get("n_params", {}).get(model, 0))
    pools = stored_pools(store, run_id)
    out: list[Config] = []
    for arm in spec.arms:
        key = (model, task, pool_key(arm.sampling))
        if arm.replay is not None and key in pools:
            out += _replayed(arm, pools[key], n_params, axis)
    results: dict[tuple[str, int], dict[str, list[tuple[float, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for m, t, label, budget, _seed, problem, correct, cost, prompt in store.results(run_id):
        if (m, t) == (model, task) and correct is not None:
            c = alone(json.loads(cost), prompt, n_params)
            results[(label, budget)][problem].append((float(correct), _on(c, axis)))
    for arm in spec.arms:
        for budget in arm.budgets if arm.replay is None else ():
            rows = results.get((arm.label, budget), {})
            acc = {q: float(np.mean([a for a, _ in v])) for q, v in rows.items()}
            cost = {q: float(np.mean([c for _, c in v])) for q, v in rows.items()}
            out.append(Config(arm, budget, acc, cost))
    return out


def _replayed(
    arm: ArmSpec, pools: dict[str, list[Pool]], n_params: int, axis: Axis
) -> list[Config]:
    record = {**arm.to_dict(), "verifier_key": spec_key(arm.verifier) if arm.verifier else ""}
    value, _ = rule(arm.replay or "", record, DRAWS, 0)
    selecting = selection_flops(arm.replay or "", record, DRAWS, 0)  # a judge's calls
    usable = replays(arm.replay or "", record)
    pools = {q: kept for q, ps in pools.items() if (kept := [p for p in ps if usable(p)])}
    if not pools:
        return []
    size = min(p.size for ps in pools.values() for p in ps)
    ks = [1] if arm.replay == "single" else [k for k in arm.budgets if k <= size]
    acc = {q: np.mean([value(p, ks) for p in ps], axis=0) for q, ps in pools.items()}
    out = []
    for j, k in enumerate(ks):
        cost = {q: float(np.mean([_pool_cost(p, k, arm, n_params, axis, selecting)
                                  for p in ps]))
                for q, ps in pools.items()}  # fmt: skip
        out.append(Config(arm, k, {q: float(a[j]) for q, a in acc.items()}, cost))
    return out


def _pool_cost(
    pool: Pool,
    k: int,
    arm: ArmSpec,
    n_params: int,
    axis: Axis,
    selecting: Callable[[Pool, int], float] = lambda pool, k: 0.0,
) -> float:
    """The replayed cost of k samples: the prompt once, k samples, k verifier passes (and a
    tournament's judge calls, `selecting`)."""
    if axis == "samples":
        return float(k)
    if axis == "tokens":
        return k * float(np.mean(pool.tokens))
    scored = spec_key(arm.verifier) if arm.verifier else None
    return pool.flops_at(k, n_params, scored) + selecting(pool, k)


def _on(cost: Mapping[str, Any], axis: Axis) -> float:
    return float(cost[{"samples": "samples", "tokens": "generated_tokens"}.get(axis, "flops")])


def _usable(arm: ArmSpec) -> bool:
    usable = arm.strategy.name != "compute_optimal"
    return usable and not (arm.verifier and arm.verifier.name in SKIPPED)


def _frontier(configs: Sequence[Config], problems: Sequence[str]) -> tuple[Choice, ...]:
    if not problems:
        return ()
    choices = []
    for c in configs:
        if _usable(c.arm) and all(q in c.accuracy for q in problems):
            strategy = at_budget(c.arm, c.budget)
            choices.append(Choice(
                c.arm.label, {"name": strategy.name, "params": strategy.to_dict()["params"]},
                _plain(c.arm.verifier) if c.arm.verifier else None, c.budget,
                float(np.mean([c.cost[q] for q in problems])),
                float(np.mean([c.accuracy[q] for q in problems])),
            ))  # fmt: skip
    return frontier(choices)


def _plain(spec: Spec) -> dict[str, Any]:
    d = spec.to_dict()
    return {"name": d["name"], "params": d["params"]}


def _difficulty(pool: Pool, pilot: int, feature: Feature, key: str | None) -> float:
    if feature == "oracle":
        return 1.0 - float(np.mean(pool.correct))
    cands = [Candidate("", a, id=i) for i, a in enumerate(pool.answers[:pilot])]
    scores = pool.score(key)[:pilot] if key and feature != "vote" else []
    return difficulty(cands, feature, scores)


def _one(given: str | None, names: Sequence[str], what: str, flag: str) -> str:
    if given is not None:
        if given not in names:
            raise ConfigError(f"the run has no {what} {given!r}; it has: {', '.join(names)}")
        return given
    if len(names) != 1:
        raise ConfigError(f"the run has several {what}s ({', '.join(names)}); pick one: {flag}")
    return names[0]


def _task(spec: RunSpec, name: str | None) -> Spec:
    keys = {spec_key(t): t for t in spec.tasks}
    return keys[_one(name, list(keys), "task", "--task")]


def _pilot_pools(
    store: Store, run_id: str, spec: RunSpec, model: str, task: str
) -> tuple[tuple[float, float], dict[str, list[Pool]]]:
    pools = stored_pools(store, run_id)
    found = [(s, pools[(model, task, pool_key(s))]) for s in spec.pools()
             if (model, task, pool_key(s)) in pools and s != (0.0, 1.0)]  # fmt: skip
    if not found:
        raise ConfigError(
            f"run {run_id} stores no sampled pool to predict difficulty from; add a replayed "
            "arm (e.g. self_consistency) to the training run"
        )
    return max(found, key=lambda f: min(p.size for ps in f[1].values() for p in ps))


def _pilot_verifier(spec: RunSpec, sampling: tuple[float, float], name: str | None) -> Spec | None:
    found = {spec_key(v): v for v in spec.pool_verifiers(sampling) if v.name not in SKIPPED}
    if name is None:
        return next(iter(found.values()), None)
    if name not in found:
        listing = ", ".join(found) or "(none)"
        raise ConfigError(
            f"--verifier {name!r} did not score the pool; it was scored by: {listing}"
        )
    return found[name]
