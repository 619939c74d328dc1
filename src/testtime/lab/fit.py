"""Fits and analyses of replayed curves: the coverage law, saturation, the imperfect-
verifier ceiling and the accuracy-vs-cost Pareto frontier."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from testtime.core.errors import ConfigError
from testtime.lab.curves import Ceiling, CoverageFit


def log_spaced(kmax: int, points: int = 40) -> list[int]:
    """Up to `points` distinct whole k from 1 to kmax, evenly spaced in log k."""
    if kmax < 1:
        return []
    return sorted({round(x) for x in np.geomspace(1, kmax, points)})


def fit_coverage(ks: Sequence[int], coverage: Sequence[float]) -> CoverageFit | None:
    """Brown et al. 2024's exponentiated power law, log c(k) = a * k**b (a, b < 0).

    Fitted with scipy's curve_fit on c(k) = exp(a k^b), as the paper does (on log-spaced
    k), starting from the straight line log(-log c) = log(-a) + b log k. None when fewer
    than three points lie strictly between 0 and 1 (nothing to fit).
    """
    k = np.asarray(ks, dtype=float)
    c = np.asarray(coverage, dtype=float)
    inner = (c > 0) & (c < 1)
    if inner.sum() < 3:
        return None
    try:
        from scipy.optimize import curve_fit
    except ImportError:
        raise ConfigError("fitting needs scipy: pip install 'testtime[lab]'") from None
    slope, intercept = np.polyfit(np.log(k[inner]), np.log(-np.log(c[inner])), 1)
    start = (-math.exp(intercept), min(slope, -1e-6))

    def law(x: np.ndarray, a: float, b: float) -> np.ndarray:
        return np.exp(a * x**b)

    try:
        (a, b), _ = curve_fit(law, k, c, p0=start, bounds=([-np.inf, -10.0], [0.0, 0.0]))
    except (RuntimeError, ValueError):
        a, b = start
    residual = float(np.sum((c - law(k, a, b)) ** 2))
    spread = float(np.sum((c - c.mean()) ** 2))
    r2 = 1.0 - residual / spread if spread > 0 else 1.0
    return CoverageFit(float(a), float(b), r2, tuple(int(x) for x in ks))


def saturation(ks: Sequence[int], values: Sequence[float], tolerance: float = 0.01) -> int | None:
    """The smallest measured k past which doubling the budget stops paying: every measured
    value at k' >= 2k exceeds the value at k by less than `tolerance` (absolute).
    None when no such k exists among those that have a k' >= 2k to compare against."""
    pairs = sorted(zip(ks, values, strict=True))
    for k, v in pairs:
        later = [w for k2, w in pairs if k2 >= 2 * k]
        if later and all(w - v < tolerance for w in later):
            return k
    return None


def verifier_ceiling(
    correct: Sequence[Sequence[bool]],
    scores: Sequence[Sequence[float]],
    verifier: str,
    threshold: float = 0.5,
) -> Ceiling:
    """Stroebl et al. 2024 (Inference Scaling fLaws): with false positives, best-of-k as
    k grows is bounded by p_c / (p_c + p_fp) per problem, where p_c is the share of samples
    correct and accepted (score >= threshold) and p_fp incorrect and accepted; a problem
    with nothing accepted contributes 0. Also the pooled true and false positive rates."""
    values, tp, fp, pos, neg = [], 0, 0, 0, 0
    for ok, sc in zip(correct, scores, strict=True):
        accepted = [s >= threshold for s in sc]
        good = sum(a and c for a, c in zip(accepted, ok, strict=True))
        bad = sum(a and not c for a, c in zip(accepted, ok, strict=True))
        values.append(good / (good + bad) if good + bad else 0.0)
        tp, fp = tp + good, fp + bad
        pos, neg = pos + sum(ok), neg + sum(not c for c in ok)
    return Ceiling(
        verifier=verifier,
        threshold=threshold,
        value=float(np.mean(values)) if values else 0.0,
        false_positive_rate=fp / neg if neg else 0.0,
        true_positive_rate=tp / pos if pos else 0.0,
    )


def pareto(points: Sequence[tuple[str, int, float, float]]) -> list[tuple[str, int]]:
    """(label, budget) of the points (label, budget, cost, accuracy) that no other point
    beats on both cost and accuracy (<= cost and >= accuracy, one strictly), by cost."""
    front = [
        p for p in points
        if not any(
            q[2] <= p[2] and q[3] >= p[3] and (q[2] < p[2] or q[3] > p[3]) for q in points
        )
    ]  # fmt: skip
    return [(label, budget) for label, budget, _, _ in sorted(front, key=lambda p: (p[2], -p[3]))]
