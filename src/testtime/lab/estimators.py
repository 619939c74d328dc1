"""Expected accuracy of a selection rule on a uniformly random k-subset of one problem's
stored pool of n samples: the estimators behind "generate once, replay many".

pass@k is Chen et al. 2021's unbiased estimator; majority@k and best-of-k are exact
expectations over all C(n, k) subsets, computed by counting rather than enumerating
(ties are broken uniformly at random, which is what first-seen tie-breaking does when
the subset comes in random order). Rules with no closed form are estimated by Monte
Carlo over random subsets. Bootstrap intervals resample problems.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np

MAX_EXACT_POOL = 1000  # beyond this the majority counts overflow float64; use Monte Carlo


def _check(n: int, k: int) -> None:
    if not 1 <= k <= n:
        raise ValueError(f"k must be in 1..n (pool of {n}), got {k}")


def pass_at_k(n: int, c: int, k: int) -> float:
    """P(at least one of k samples drawn without replacement is correct), c of n correct."""
    _check(n, k)
    if not 0 <= c <= n:
        raise ValueError(f"c must be in 0..n ({n}), got {c}")
    if n - c < k:
        return 1.0
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def majority_curve(
    groups: Sequence[tuple[int, float]], unanswered: int, ks: Sequence[int]
) -> list[float]:
    """Exact majority@k for every k in `ks`: plurality vote over a random k-subset.

    `groups` are the answer groups as (count, credit): credit is the group's correctness
    in [0, 1]. Unanswered samples fill subset slots but never vote; a t-way tie for the
    lead gives each tied group 1/t of a win. For each group g and each count j it could
    have in the subset, a polynomial product over the other groups counts the subsets in
    which they all stay below j, with s of them tied at j (weighted 1/(s+1)).
    """
    counts = [c for c, _ in groups]
    n = sum(counts) + unanswered
    for k in ks:
        _check(n, k)
    if n > MAX_EXACT_POOL:
        raise ValueError(f"pool of {n} is too large for exact majority@k; use monte_carlo_at_k")
    top = max(ks)
    m = max(1, len(groups))
    ties = 1.0 / np.arange(1, m + 1)
    unans = np.array([math.comb(unanswered, y) for y in range(top + 1)], dtype=float)
    total = np.zeros(top + 1)
    for g, (size, credit) in enumerate(groups):
        if credit == 0:
            continue
        for j in range(1, min(size, top) + 1):
            ways = np.zeros((top + 1, m))  # [slots filled, groups tied at j]
            ways[:, 0] = unans
            for h, other in enumerate(counts):
                if h == g:
                    continue
                nxt = np.zeros_like(ways)
                for x in range(min(j - 1, other) + 1):
                    nxt[x:] += math.comb(other, x) * ways[: top + 1 - x]
                if other >= j:
                    nxt[j:, 1:] += math.comb(other, j) * ways[: top + 1 - j, :-1]
                ways = nxt
            total[j:] += credit * math.comb(size, j) * (ways @ ties)[: top + 1 - j]
    return [float(total[k] / math.comb(n, k)) for k in ks]


def majority_at_k(groups: Sequence[tuple[int, float]], unanswered: int, k: int) -> float:
    """Exact majority@k for one k (see majority_curve)."""
    return majority_curve(groups, unanswered, [k])[0]


def best_of_k_curve(
    scores: Sequence[float], correct: Sequence[float], ks: Sequence[int]
) -> list[float]:
    """Exact best-of-k for every k: the correctness of a random k-subset's top-scored sample.

    With h samples scored strictly higher than a block of m tied samples, the subset's
    best lies in that block with probability [C(n-h, k) - C(n-h-m, k)] / C(n, k); within
    it each tied sample is equally likely, so the block contributes its mean correctness.
    """
    n = len(scores)
    if len(correct) != n:
        raise ValueError(f"{n} scores but {len(correct)} correctness values")
    for k in ks:
        _check(n, k)
    blocks: dict[float, list[float]] = {}
    for s, c in zip(scores, correct, strict=True):
        blocks.setdefault(float(s), []).append(float(c))
    out = []
    for k in ks:
        value, above = 0.0, 0
        for s in sorted(blocks, reverse=True):
            block = blocks[s]
            ways = math.comb(n - above, k) - math.comb(n - above - len(block), k)
            value += ways / math.comb(n, k) * (sum(block) / len(block))
            above += len(block)
        out.append(value)
    return out


def best_of_k(scores: Sequence[float], correct: Sequence[float], k: int) -> float:
    """Exact best-of-k for one k (see best_of_k_curve)."""
    return best_of_k_curve(scores, correct, [k])[0]


def monte_carlo_at_k(
    select: Callable[[np.ndarray], float], n: int, k: int, draws: int = 2000, seed: int = 0
) -> float:
    """Mean of `select(idx)` over random k-subsets `idx` (distinct indices, random order).

    When C(n, k) <= draws every subset is taken once instead (each in a seeded random
    order), so small pools are exact over subsets.
    """
    _check(n, k)
    rng = np.random.default_rng(seed)
    if math.comb(n, k) <= draws:
        subsets = [rng.permutation(np.array(c)) for c in itertools.combinations(range(n), k)]
    else:
        subsets = [rng.permutation(n)[:k] for _ in range(draws)]
    return float(np.mean([select(idx) for idx in subsets]))


def bootstrap_ci_many(
    matrix: np.ndarray, level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap interval of the mean over problems (rows), for each column.

    Problems are resampled once for all columns, so the bands of one curve are consistent.
    """
    values = np.asarray(matrix, dtype=float)
    if values.ndim == 1:
        values = values[:, None]
    rows = values.shape[0]
    if rows <= 1:
        mean = values.mean(axis=0)
        return mean, mean
    idx = np.random.default_rng(seed).integers(0, rows, size=(resamples, rows))
    means = values[idx].mean(axis=1)
    tail = (1 - level) / 2 * 100
    return np.percentile(means, tail, axis=0), np.percentile(means, 100 - tail, axis=0)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of per-problem values."""
    lo, hi = bootstrap_ci_many(np.asarray(values, dtype=float)[:, None], level, resamples, seed)
    return float(lo[0]), float(hi[0])
