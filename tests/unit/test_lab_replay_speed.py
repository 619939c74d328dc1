"""A replay does per-pool and per-analysis work once, not once per k (issue 18: a run of 10^5
samples took 15 s to analyse), and gives the figures the per-k forms give."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from testtime.core.kinetics import KVShape, kv_bytes
from testtime.lab.analysis import estimators, pools
from testtime.lab.analysis.pools import Pool


def _row(i: int, tokens: int, score: float) -> tuple[object, ...]:
    """A stored sample row (Store.samples's column order)."""
    scores, costs = json.dumps({"v": score}), json.dumps({"v": 10.0 * i})
    return ("m", "t", "p", 0, "q", i, str(i % 3), i % 2, tokens, 100.0 + i, scores, 5.0, 40, costs)


def test_extend_parses_a_pools_json_cells_as_one_add_a_row_does() -> None:
    rows = [_row(i, 10 + i, 0.1 * i) for i in range(7)]
    one, bulk = Pool(), Pool()
    for r in rows:
        one.add(r)
    bulk.extend(rows)
    assert bulk == one and bulk.scores[3] == {"v": pytest.approx(0.3)}
    with pytest.raises(json.JSONDecodeError):  # a damaged cell still says so
        Pool().extend([rows[0], (*rows[1][:10], "{not json", *rows[1][11:])])


def test_a_pools_means_are_kept_across_k_and_forgotten_when_a_sample_is_added() -> None:
    pool, shape = Pool(), KVShape(layers=2, kv_heads=1, head_dim=4)
    pool.extend([_row(i, 10 + i, 0.5) for i in range(4)])
    calls = []
    real = pools.kv_bytes

    def counted(*args: object) -> float:
        calls.append(args)
        return real(*args)  # type: ignore[arg-type]

    pools.kv_bytes = counted  # type: ignore[assignment]
    try:
        first = [pool.mean_kv(shape) for _ in range(50)]
        assert len(calls) == 4  # once per sample, not once per k asked
        assert first[0] == float(np.mean([kv_bytes(shape, 40, t) for t in pool.tokens]))
        before = pool.flops_at(3, 1000, "v")
        pool.add(_row(4, 99, 0.5))
        assert pool.mean_kv(shape) > first[0] and pool.flops_at(3, 1000, "v") > before
    finally:
        pools.kv_bytes = real


def test_pass_at_k_for_every_k_is_chens_product_to_the_last_digit() -> None:
    rng = random.Random(3)
    for _ in range(200):
        n = rng.randint(1, 120)
        c = rng.randint(0, n)
        ks = list(range(1, n + 1))
        chen = [1.0 if n - c < k else 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))
                for k in ks]  # fmt: skip
        assert estimators.pass_at_k_curve(n, c, ks) == chen


def test_bootstrap_resamples_are_drawn_once_for_every_curve_of_the_same_problems(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    estimators._resampled.cache_clear()
    made = []
    real = np.random.default_rng

    def counted(seed: int) -> np.random.Generator:
        made.append(seed)
        return real(seed)

    monkeypatch.setattr(estimators.np.random, "default_rng", counted)
    values = np.arange(30, dtype=float).reshape(10, 3) % 7
    first = estimators.bootstrap_ci_many(values, 0.95, 500)
    again = estimators.bootstrap_ci_many(values[:, ::-1].copy(), 0.95, 500)
    assert len(made) == 1
    assert np.array_equal(first[0][::-1], again[0]) and np.array_equal(first[1][::-1], again[1])


def test_exact_majority_unpacks_its_counts_once_and_they_equal_every_subset_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import itertools

    unpacked = []
    real = estimators._unpack

    def counted(value: int, slots: int, size: int) -> list[int]:
        unpacked.append(slots)
        return real(value, slots, size)

    monkeypatch.setattr(estimators, "_unpack", counted)
    groups, unanswered = [(3, 1.0), (3, 0.0), (2, 0.5), (1, 0.0)], 2
    estimators._wins.cache_clear()
    got = estimators.majority_curve(groups, unanswered, range(1, 12))
    assert len(unpacked) == 2  # once per distinct winning group size, not once per level
    labels = [g for g, (c, _) in enumerate(groups) for _ in range(c)] + [None] * unanswered
    for k in range(1, 12):
        total = 0.0
        for subset in itertools.combinations(labels, k):
            votes = [subset.count(g) for g in range(len(groups))]
            top = max(votes)
            if top:
                tied = [g for g, v in enumerate(votes) if v == top]
                total += sum(groups[g][1] for g in tied) / len(tied)
        assert got[k - 1] == pytest.approx(total / math.comb(11, k), abs=1e-12)


CANONICALS = """
import sys
from testtime.lab.analysis import replay
from testtime.lab.data.spec import parse_spec, spec_key

def built(*args, **kwargs):
    raise AssertionError("a task was built to read its canonical")

replay.build_task = built
spec = parse_spec({"model": "fake", "tasks": ["arithmetic", "pyfunc", "instructions"],
                   "budgets": [1], "strategies": ["self_consistency"]})

class Stored:
    def run(self, run_id):
        return {"spec": spec.to_dict()}

canon = replay.canonicals(Stored(), "run")
arithmetic, pyfunc, instructions = (canon[spec_key(t)] for t in spec.tasks)
assert arithmetic("-0") == arithmetic("0.0") == "0", arithmetic("-0")
assert pyfunc("def f(x):\\n    return x  # same") == "def f(x):\\n    return x"
assert instructions("  Hello  ") == "Hello"
print(sorted(m for m in sys.modules if m.split(".")[0] == "reasoning_gym"))
"""


def test_canonicals_come_from_the_registrations_without_building_a_task_or_its_dataset() -> None:
    """A run page's first open regroups the stored answers by each task's canonical form;
    reading it must not build the tasks (arithmetic loads reasoning-gym, ~1 s, and makes its
    dataset) when the registration says which class, so which form, it builds."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", CANONICALS], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"  # reasoning_gym not imported


def test_every_registered_task_declares_the_class_its_factory_builds() -> None:
    """`canonical_of` trusts the class a registration names: it must be what is built."""
    from testtime.strategies.run import build_task
    from testtime.tasks.base import TASKS, canonical_of

    for name in TASKS.names():
        assert canonical_of(name) is not None, name
    for name in ("arithmetic", "pyfunc", "instructions"):  # built without files or network
        task = build_task(name, {"size": 2})
        assert type(task) is TASKS.get(name).traits
        assert canonical_of(name) is type(task).canonical


def test_best_of_k_makes_its_avoidance_products_once_per_pool_size_and_equals_enumeration() -> None:
    """Every pool of one size shares C(n-h, k)/C(n, k) (a 10^3-problem run asked for it
    10^3 times); the curve is still each k-subset's top-scored sample, ties split."""
    import itertools

    estimators._avoiding.cache_clear()
    rng = random.Random(3)
    ks = list(range(1, 8))
    for _ in range(5):
        scores = [rng.choice([0.1, 0.5, 0.9]) for _ in range(7)]
        correct = [float(rng.random() < 0.5) for _ in range(7)]
        got = estimators.best_of_k_curve(scores, correct, ks)
        for k in ks:
            total = 0.0
            for subset in itertools.combinations(range(7), k):
                top = max(scores[i] for i in subset)
                tied = [correct[i] for i in subset if scores[i] == top]
                total += sum(tied) / len(tied)
            assert got[k - 1] == pytest.approx(total / math.comb(7, k), abs=1e-12)
    assert estimators._avoiding.cache_info().misses == 1  # five pools of 7: made once
