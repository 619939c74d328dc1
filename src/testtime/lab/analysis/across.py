"""Across-problem allocation replayed on a run's stored pools, against uniform allocation at
equal total FLOPs.

Uniform: k samples on every problem, majority vote (exact majority@k over the pool).
Adaptive: the same total FLOPs spent by `strategies.across.Allocator`, one sample at a time,
on a random order of each pool (each problem's prompt charged once, as the prefix cache
serves later requests); averaged over `draws` orders. Intervals: bootstrap over problems.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from testtime.core.errors import ConfigError
from testtime.lab.analysis import estimators
from testtime.lab.analysis.pools import Pool, majority
from testtime.lab.analysis.replay import CI_LEVEL, RESAMPLES, stored_pools
from testtime.lab.data.spec import spec_from_dict
from testtime.lab.data.store import Store
from testtime.strategies.across import Allocator


@dataclass(frozen=True, slots=True)
class AcrossPoint:
    """One total budget: k uniform samples per problem's FLOPs, spent both ways."""

    k: int
    flops: float  # total FLOPs per problem (the budget both spend)
    uniform: tuple[float, float, float]  # accuracy, CI low, CI high
    adaptive: tuple[float, float, float]
    adaptive_flops: float  # what the adaptive allocation actually spent, per problem
    allocation: tuple[float, ...]  # mean samples per problem (in `problems` order)


@dataclass(frozen=True, slots=True)
class Across:
    pool: str
    problems: tuple[str, ...]  # sorted by oracle pass rate, hardest first
    pass_rate: tuple[float, ...]
    points: tuple[AcrossPoint, ...]


def replay_across(
    store: Store,
    run_id: str,
    *,
    ks: tuple[int, ...] | None = None,
    initial: int = 2,
    threshold: float = 0.95,
    draws: int = 20,
    seed: int = 0,
) -> Across:
    """Uniform against adaptive allocation at each k's total FLOPs, on the run's largest
    sampled pool (first model and task, first seed)."""
    spec = spec_from_dict(store.run(run_id)["spec"])
    n_params = int(store.run(run_id)["environment"].get("n_params", {}).get(spec.models[0], 0))
    pools = {k: v for k, v in stored_pools(store, run_id).items() if not k[2].startswith("T0-")}
    if not pools:
        raise ConfigError(f"run {run_id} has no sampled pool to replay allocation on")
    key = max(pools, key=lambda k: min(ps[0].size for ps in pools[k].values()))
    by_problem = {q: ps[0] for q, ps in pools[key].items()}
    size = min(p.size for p in by_problem.values())
    ks = ks or tuple(2**i for i in range(size.bit_length()) if 2**i <= size // 2)
    order = sorted(by_problem, key=lambda q: (float(np.mean(by_problem[q].correct)), q))
    pools_ = [by_problem[q] for q in order]
    prompt = [p.flops_at(0, n_params) for p in pools_]  # each prompt prefilled once
    points = []
    for k in ks:
        uniform = np.array([[majority(p, [k])[0]] for p in pools_])
        total = sum(p.flops_at(k, n_params) for p in pools_)
        runs = [_adaptive(pools_, prompt, total, min(initial, k), threshold, random.Random(
            f"{seed}:{k}:{d}")) for d in range(draws)]  # fmt: skip
        acc = np.mean([r[0] for r in runs], axis=0)[:, None]
        points.append(AcrossPoint(
            k, total / len(pools_), _ci(uniform), _ci(acc),
            float(np.mean([r[2] for r in runs])) / len(pools_),
            tuple(float(x) for x in np.mean([r[1] for r in runs], axis=0)),
        ))  # fmt: skip
    rates = tuple(float(np.mean(p.correct)) for p in pools_)
    return Across(key[2], tuple(order), rates, tuple(points))


def _ci(acc: np.ndarray) -> tuple[float, float, float]:
    lo, hi = estimators.bootstrap_ci_many(acc, CI_LEVEL, RESAMPLES)
    return float(acc.mean()), float(lo[0]), float(hi[0])


def _adaptive(
    pools: list[Pool], prompt: list[float], budget: float, initial: int, threshold: float,
    rng: random.Random,
) -> tuple[list[float], list[int], float]:  # fmt: skip
    """One replay: per-problem correctness, samples drawn, and FLOPs spent."""
    orders = [rng.sample(range(p.size), p.size) for p in pools]
    alloc = Allocator(len(pools), threshold, cap=min(p.size for p in pools))
    spent = sum(prompt)

    def take(i: int) -> bool:
        nonlocal spent
        j = orders[i][len(alloc.answers[i])]
        cost = pools[i].flops[j]
        if spent + cost > budget:
            return False
        spent += cost
        alloc.add(i, pools[i].canonical()[j], cost)
        return True

    for _ in range(initial):
        for i in range(len(pools)):
            take(i)
    broke: set[int] = set()  # problems whose next sample no longer fits
    while chosen := [i for i in alloc.next(len(pools)) if i not in broke][:1]:
        if not take(chosen[0]):
            broke.add(chosen[0])
    correct = []
    for i, pool in enumerate(pools):
        drawn = orders[i][: len(alloc.answers[i])]
        correct.append(_vote(pool, drawn))
    return correct, [len(a) for a in alloc.answers], spent


def _vote(pool: Pool, drawn: list[int]) -> float:
    """Plurality over the drawn samples in drawn order (ties: first seen); its correctness."""
    canon = pool.canonical()
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for j in drawn:
        a = canon[j]
        if a is not None:
            counts[a] = counts.get(a, 0) + 1
            first.setdefault(a, j)
    if not counts:
        return 0.0
    top = max(counts, key=lambda a: (counts[a], -drawn.index(first[a])))
    return pool.correct[first[top]]
