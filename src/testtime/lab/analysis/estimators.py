"""Expected accuracy of a selection rule on a uniformly random k-subset of one problem's
stored pool of n samples: the estimators behind "generate once, replay every budget".

pass@k is Chen et al. 2021's unbiased estimator. majority@k and best-of-k are exact
expectations over all C(n, k) subsets, computed by counting rather than enumerating; a tie
is broken uniformly at random, which is what first-seen tie-breaking does when the subset
comes in random order (the sampling order is random). Rules without a closed form
(weighted vote, best-of-majority) use Monte Carlo over random subsets. Bootstrap intervals
resample problems. Every function here is for one problem; the lab averages over problems.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np

# Exact majority@k is polynomial and exact at any size; beyond this many samples its big
# integers make it slow enough (seconds per problem) that callers may prefer Monte Carlo.
MAX_EXACT_POOL = 4096


def _check(n: int, k: int) -> None:
    if not 1 <= k <= n:
        raise ValueError(f"k must be in 1..n (pool of {n}), got {k}")


def _check_all(n: int, ks: Sequence[int]) -> None:
    """`_check` on every k (one comparison each when all are in range: curves ask for
    every k of 10^3 pools)."""
    if ks and not (min(ks) >= 1 and max(ks) <= n):
        for k in ks:
            _check(n, k)


def pass_at_k(n: int, c: int, k: int) -> float:
    """P(some one of k samples drawn without replacement is correct), c of n correct:
    1 - C(n-c, k)/C(n, k) in Chen et al. 2021's stable product form."""
    return pass_at_k_curve(n, c, [k])[0]


def pass_at_k_curve(n: int, c: int, ks: Sequence[int]) -> list[float]:
    """pass@k (see pass_at_k) for every k in `ks`, the products for all k taken at once."""
    if not 0 <= c <= n:
        raise ValueError(f"c must be in 0..n (pool of {n}), got {c}")
    _check_all(n, ks)
    at = np.asarray(ks, dtype=float)[:, None]
    terms = np.ones((len(ks), c + 1))  # 1, then each factor in order: the product from 1
    terms[:, 1:] = 1.0 - at / np.arange(n - c + 1, n + 1, dtype=float)
    none = np.cumprod(terms, axis=1)[:, -1]  # a running product: the same roundings
    return [1.0 if n - c < k else 1.0 - float(p) for k, p in zip(ks, none, strict=True)]


def _pack(coefficients: Sequence[int], size: int) -> int:
    """A polynomial as one integer, `size` bytes per coefficient (Kronecker substitution)."""
    return int.from_bytes(b"".join(c.to_bytes(size, "little") for c in coefficients), "little")


def _unpack(value: int, slots: int, size: int) -> list[int]:
    data = value.to_bytes(slots * size, "little")
    return [int.from_bytes(data[i * size : (i + 1) * size], "little") for i in range(slots)]


def _level(others: list[tuple[int, int]], j: int, binom: dict[int, list[int]]) -> list[list[int]]:
    """rows[t][r]: the ways the `others` groups (count, how many) can all stay at or below
    j samples in a subset, t of them exactly at j and r samples among those below j."""
    bound = 1  # every coefficient is at most the sum of all of them
    for c, m in others:
        bound *= sum(binom[c][: j + 1]) ** m
    size = bound.bit_length() // 8 + 1
    ties, rows, cols = _ties(others, j, binom, size)
    flat = _unpack(ties, rows * cols, size)
    return [flat[t * cols : (t + 1) * cols] for t in range(rows)]


def _ties(
    others: list[tuple[int, int]], j: int, binom: dict[int, list[int]], size: int
) -> tuple[int, int, int]:
    """`_level`'s counts packed, `size` bytes a coefficient (enough for the largest: the
    sum of them all), row t after row t-1: (packed, rows, columns a row)."""
    factors = sum(m for _, m in others)
    cols = (j - 1) * factors + 1
    shift = 8 * size * cols  # a tie moves the product one row up
    ties = 1
    for c, m in others:
        below, at = _below(c, j, size), binom[c][j]
        for _ in range(m):  # one group at a time: a big times a small product is cheapest
            ties = ties * below + ((ties * at) << shift)
    return ties, factors + 1, cols


@lru_cache(maxsize=4096)
def _below(c: int, j: int, size: int) -> int:
    """The polynomial sum_{i<j} C(c, i) x^i packed (`_pack`): a group of c staying below j;
    the same for every pool, so packed once."""
    return _pack([math.comb(c, i) for i in range(j)], size)


@lru_cache(maxsize=4096)
def _wins(profile: tuple[tuple[int, int], ...], unanswered: int, target: int) -> tuple[float, ...]:
    """For k = 0..n, the chance that one given group of `target` samples wins the
    plurality vote of a random k-subset (a t-way tie counts 1/t): exact integer counts,
    scaled by L = lcm(1..groups), divided by L * C(n, k) once at the end.

    `profile` holds (count, number of groups with that count). For each count j the
    target can have in the subset, the other groups stay below j or tie at j (`_level`);
    a tie with t others weighs L/(t+1). Groups that cannot reach j and the unanswered
    samples add a full binomial (1+x)^s, applied once per run of j between two distinct
    counts, Horner-style. Polynomials are multiplied as packed integers.
    """
    n = unanswered + sum(c * m for c, m in profile)
    lcm = math.lcm(*range(1, sum(m for _, m in profile) + 1))
    size = (n + lcm.bit_length()) // 8 + 1  # every final coefficient is < L * 2^n
    slot = 8 * size
    binom = {c: [math.comb(c, i) for i in range(c + 1)] for c, _ in profile}
    spans: list[tuple[int, int]] = []  # (packed span, samples in groups that cannot reach j)
    lo = 0
    for hi in sorted(binom):  # the levels j in (lo, hi] share the groups that can reach j
        if hi > target:
            break
        others = [(c, m - (c == target)) for c, m in profile if c >= hi and m > (c == target)]
        span = 0  # packed as the total is: no coefficient ever reaches L * 2^n
        for j in range(lo + 1, hi + 1):
            g = math.comb(target, j)
            if not others:
                span += (g * lcm) << (slot * j)
                continue
            ties, rows, cols = _ties(others, j, binom, size)  # each row moved, not unpacked
            mask = (1 << (slot * cols)) - 1
            for t in range(rows):
                row = (ties >> (slot * cols * t)) & mask
                if row:
                    span += (row * (g * (lcm // (t + 1)))) << (slot * j * (t + 1))
        small = unanswered + sum(c * m for c, m in profile if c < hi)
        spans.append((span, small))
        lo = hi
    one_x = (1 << (8 * size)) + 1  # the packed polynomial 1 + x
    total, above = 0, spans[-1][1]
    for packed, small in reversed(spans):
        total = total * pow(one_x, above - small) + packed
        above = small
    wins = _unpack(total * pow(one_x, above), n + 1, size)
    return tuple(w / (lcm * math.comb(n, k)) for k, w in enumerate(wins))


def majority_curve(
    groups: Sequence[tuple[int, float]], unanswered: int, ks: Sequence[int]
) -> list[float]:
    """Exact majority@k (self-consistency) for every k in `ks`.

    `groups` are the answer groups as (count, credit), credit being the group's
    correctness in [0, 1]; `unanswered` samples take subset slots but never vote. A t-way
    tie for the lead gives each tied group credit/t (first-seen under a random order); a
    subset with no answer scores 0. Exact integer counts, divided by C(n, k) at the end.
    """
    if unanswered < 0 or any(c < 0 for c, _ in groups):
        raise ValueError("group sizes and the unanswered count must be >= 0")
    if any(not 0.0 <= w <= 1.0 for _, w in groups):
        raise ValueError("group credits must be in [0, 1]")
    n = sum(c for c, _ in groups) + unanswered
    _check_all(n, ks)
    sizes: dict[int, int] = {}
    credit: dict[int, float] = {}
    for c, w in groups:
        if c > 0:
            sizes[c] = sizes.get(c, 0) + 1
            credit[c] = credit.get(c, 0.0) + float(w)
    profile = tuple(sorted(sizes.items()))
    chances = [(w, _wins(profile, unanswered, c)) for c, w in credit.items() if w > 0]
    if len(chances) == 1:  # the usual case: fsum of one term is that term
        w, p = chances[0]
        return [min(1.0, w * p[k]) for k in ks]
    return [min(1.0, math.fsum(w * p[k] for w, p in chances)) for k in ks]


def majority_at_k(groups: Sequence[tuple[int, float]], unanswered: int, k: int) -> float:
    """Exact majority@k for one k (see majority_curve; the counts are cached per pool)."""
    return majority_curve(groups, unanswered, [k])[0]


def best_of_k_curve(
    scores: Sequence[float], correct: Sequence[float], ks: Sequence[int]
) -> list[float]:
    """Exact best-of-N accuracy for every k: the correctness of a random k-subset's
    top-scored sample, ties broken uniformly at random.

    With h samples scored strictly higher than a block of m tied ones, the subset's best
    lies in the block with probability [C(n-h, k) - C(n-h-m, k)] / C(n, k), and is then
    any of the block's samples alike: the block adds its mean correctness times that.
    C(n-h, k)/C(n, k) = prod_{i<h} (n-k-i)/(n-i) is computed as a stable product.
    """
    n = len(scores)
    if len(correct) != n:
        raise ValueError(f"{n} scores but {len(correct)} correctness values")
    if any(math.isnan(s) for s in scores):
        raise ValueError("scores must not be NaN")
    _check_all(n, ks)
    blocks: dict[float, list[float]] = {}
    for s, c in zip(scores, correct, strict=True):
        blocks.setdefault(float(s), []).append(float(c))
    levels = [blocks[s] for s in sorted(blocks, reverse=True)]
    sizes = np.array([len(b) for b in levels])
    means = np.array([math.fsum(b) / len(b) for b in levels])
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    none = _avoiding(n, tuple(ks))
    hit = np.ascontiguousarray(none[:, starts] - none[:, starts + sizes])  # rows contiguous
    return [float(np.dot(row, means)) for row in hit]


@lru_cache(maxsize=64)
def _avoiding(n: int, ks: tuple[int, ...]) -> np.ndarray:
    """none[j, h] = P(a ks[j]-subset of n avoids the h top-ranked samples) = C(n-h, k) /
    C(n, k), as a stable running product; the same for every pool of n (made once)."""
    i = np.arange(n)
    at = np.asarray(ks)[:, None]
    none = np.ones((len(ks), n + 1))
    none[:, 1:] = np.cumprod(np.maximum(n - at - i, 0) / (n - i), axis=1)
    none.setflags(write=False)
    return none


def best_of_k(scores: Sequence[float], correct: Sequence[float], k: int) -> float:
    """Exact best-of-k for one k (see best_of_k_curve)."""
    return best_of_k_curve(scores, correct, [k])[0]


def monte_carlo_at_k(
    select: Callable[[np.ndarray], float], n: int, k: int, draws: int = 2000, seed: int = 0
) -> float:
    """Mean of `select(idx)` over random k-subsets: `idx` holds k distinct indices in
    uniformly random order (so first-seen tie-breaking is random). Deterministic by seed.

    Exact where enumeration fits in `draws`: every ordered k-subset once when there are at
    most `draws` of them, otherwise every k-subset once (each in a seeded random order)
    when C(n, k) <= draws; otherwise `draws` random subsets.
    """
    _check(n, k)
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    rng = np.random.default_rng(seed)
    if math.comb(n, k) <= draws and math.perm(n, k) <= draws:
        subsets = [np.array(p) for p in itertools.permutations(range(n), k)]
    elif math.comb(n, k) <= draws:
        subsets = [rng.permutation(np.array(c)) for c in itertools.combinations(range(n), k)]
    else:
        subsets = [rng.permutation(n)[:k] for _ in range(draws)]
    return math.fsum(float(select(idx)) for idx in subsets) / len(subsets)


def bootstrap_ci_many(
    matrix: np.ndarray, level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap interval of the mean over problems (rows), for each column
    (budget). Problems are resampled once for all columns, so a curve's band is one set
    of resampled problem sets; a column whose values are all equal gets (v, v)."""
    values = np.asarray(matrix, dtype=float)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2 or values.shape[0] == 0:
        raise ValueError("bootstrap needs a (problems x budgets) matrix with >= 1 problem")
    if not 0.0 < level < 1.0 or resamples < 1:
        raise ValueError(f"need 0 < level < 1 and resamples >= 1, got {level}, {resamples}")
    rows = values.shape[0]
    means = [counts @ values / rows for counts in _resampled(rows, resamples, seed)]
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(np.concatenate(means), [tail, 1.0 - tail], axis=0)
    flat = np.all(values == values[0], axis=0)
    return np.where(flat, values[0], lo), np.where(flat, values[0], hi)


@lru_cache(maxsize=4)
def _resampled(rows: int, resamples: int, seed: int) -> tuple[np.ndarray, ...]:
    """How often each of `rows` problems is drawn in each resample, chunk by chunk (to bound
    memory), as floats (exact; what each product with the values would convert them to,
    once): a function of its arguments alone, so every curve of an analysis (one set of
    problems) shares one set of resampled problem sets, drawn once."""
    rng = np.random.default_rng(seed)
    chunk = max(1, (1 << 22) // rows)
    out = []
    for start in range(0, resamples, chunk):
        r = min(chunk, resamples - start)
        idx = rng.integers(0, rows, size=(r, rows)) + rows * np.arange(r)[:, None]
        counts = np.bincount(idx.ravel(), minlength=r * rows).reshape(r, rows).astype(float)
        counts.setflags(write=False)
        out.append(counts)
    return tuple(out)


def bootstrap_ci(
    values: np.ndarray | Sequence[float], level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of per-problem values (one per problem)."""
    lo, hi = bootstrap_ci_many(np.asarray(values, dtype=float)[:, None], level, resamples, seed)
    return float(lo[0]), float(hi[0])
