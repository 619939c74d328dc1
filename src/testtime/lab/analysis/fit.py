"""Fits and analyses of replayed curves: Brown et al.'s coverage law, where doubling the
budget stops paying, Stroebl et al.'s imperfect-verifier ceiling, and the
accuracy-vs-cost Pareto frontier."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

from testtime.core.errors import ConfigError
from testtime.lab.analysis.curves import Axis, Ceiling, CoverageFit, Curve, Point

_EPS = 1e-12


def log_spaced(kmax: int, points: int = 40) -> list[int]:
    """Distinct whole k from 1 to kmax, roughly evenly spaced in log k (Brown et al. 2024
    fit their law on 40 log-spaced k); fewer than `points` where small k collide."""
    if kmax < 1 or points < 1:
        raise ValueError(f"need kmax >= 1 and points >= 1, got {kmax} and {points}")
    if points == 1:
        return [kmax]
    return sorted({1, kmax} | {round(float(x)) for x in np.geomspace(1, kmax, points)})


def fit_coverage(ks: Sequence[int], coverage: Sequence[float]) -> CoverageFit | None:
    """Brown et al. 2024's exponentiated power law log c(k) = a * k**b (a, b < 0; Eq. 2-3).

    Fitted with scipy's curve_fit on c(k) = exp(a * k**b) over all the given points,
    started from the straight line log(-log c) = log(-a) + b log k fitted by least
    squares to the points with 0 < c < 1. None when fewer than three such points exist
    (coverage all 0 or all 1: nothing to fit). r2 is measured on the coverage values. If
    curve_fit does not converge, the straight-line estimate is returned.
    """
    k = np.asarray(ks, dtype=float)
    c = np.asarray(coverage, dtype=float)
    if k.shape != c.shape or k.ndim != 1:
        raise ValueError(f"{k.size} k values but {c.size} coverage values")
    if np.any(k < 1) or not np.all(np.isfinite(c)):
        raise ValueError("k must be >= 1 and coverage finite")
    inner = (c > 0) & (c < 1)
    if int(inner.sum()) < 3:
        return None
    load_fitter()
    from scipy.optimize import OptimizeWarning, curve_fit

    clamped = np.clip(c[inner], _EPS, 1 - _EPS)
    slope, intercept = np.polyfit(np.log(k[inner]), np.log(-np.log(clamped)), 1)
    start = (-math.exp(float(intercept)), float(slope))

    def law(x: np.ndarray, a: float, b: float) -> np.ndarray:
        return np.exp(a * x**b)

    try:
        with warnings.catch_warnings(), np.errstate(over="ignore", under="ignore"):
            warnings.simplefilter("ignore", OptimizeWarning)
            params, _ = curve_fit(law, k, c, p0=start, maxfev=10_000)
        a, b = float(params[0]), float(params[1])
    except RuntimeError:
        a, b = start
    residual = float(np.sum((c - law(k, a, b)) ** 2))
    spread = float(np.sum((c - c.mean()) ** 2))
    r2 = 1.0 - residual / spread if spread > 0 else float(residual == 0)
    return CoverageFit(a, b, r2, tuple(int(x) for x in ks))


def load_fitter() -> None:
    """Import scipy's optimizer, which `fit_coverage` fits with: imported at the first fit
    (~0.3 s), or ahead of it by a program that has time to spare (the viewer at start-up)."""
    try:
        import scipy.optimize  # noqa: F401
    except ImportError:
        raise ConfigError(
            "fitting the coverage law needs scipy: pip install 'testtime[lab]'"
        ) from None


def saturation(ks: Sequence[int], values: Sequence[float], tolerance: float = 0.01) -> int | None:
    """Where doubling the budget stops paying.

    A measured k is flat when every measured value at k' >= 2k exceeds the value at k by
    less than `tolerance` (absolute; a drop counts as flat). Only the k that have some
    measured k' >= 2k are judged. The saturation point is the smallest judged k such that
    it and every larger judged k are flat; None when the largest judged k is not flat
    (the curve still gains >= tolerance per doubling at the end) or no k can be judged.
    Requiring the whole tail to be flat keeps one noisy high point from ending the climb.
    """
    if len(ks) != len(values):
        raise ValueError(f"{len(ks)} k values but {len(values)} values")
    pairs = sorted(zip(ks, values, strict=True))
    if len({k for k, _ in pairs}) != len(pairs):
        raise ValueError("k values must be distinct")
    found: int | None = None
    for k, v in pairs:
        later = [w for k2, w in pairs if k2 >= 2 * k]
        if not later:
            break
        flat = max(later) - v < tolerance
        if not flat:
            found = None
        elif found is None:
            found = k
    return found


def verifier_ceiling(
    correct: Sequence[Sequence[bool]],
    scores: Sequence[Sequence[float]],
    verifier: str,
    threshold: float = 0.5,
) -> Ceiling:
    """Stroebl et al. 2024 ("Inference Scaling fLaws"): with false positives, best-of-k
    accuracy as k grows is bounded by p_c / (p_c + p_fp) per problem, where p_c is the
    share of samples correct and accepted (score >= threshold) and p_fp the share
    incorrect and accepted; a problem with nothing accepted contributes 0. The value is
    the mean over problems; the pooled rates are P(accepted | correct) and
    P(accepted | incorrect) over all samples (0.0 where nothing conditions them)."""
    if len(correct) != len(scores):
        raise ValueError(f"{len(correct)} problems of correctness but {len(scores)} of scores")
    if not correct:
        raise ValueError("the verifier ceiling needs at least one problem")
    values: list[float] = []
    tp = fp = pos = neg = 0
    for ok, sc in zip(correct, scores, strict=True):
        if len(ok) != len(sc):
            raise ValueError(f"a problem has {len(ok)} correctness values but {len(sc)} scores")
        accepted = [s >= threshold for s in sc]
        good = sum(1 for a, c in zip(accepted, ok, strict=True) if a and c)
        bad = sum(1 for a, c in zip(accepted, ok, strict=True) if a and not c)
        values.append(good / (good + bad) if good + bad else 0.0)
        tp, fp = tp + good, fp + bad
        pos += sum(1 for c in ok if c)
        neg += sum(1 for c in ok if not c)
    return Ceiling(
        verifier=verifier,
        threshold=threshold,
        value=math.fsum(values) / len(values),
        false_positive_rate=fp / neg if neg else 0.0,
        true_positive_rate=tp / pos if pos else 0.0,
    )


def pareto(points: Sequence[tuple[str, int, float, float]]) -> list[tuple[str, int]]:
    """(label, budget) of the points (label, budget, cost, accuracy) on the accuracy-vs-
    cost Pareto frontier: no other point has cost <= and accuracy >= with one strictly.
    Sorted by cost; exact duplicates of a frontier point are all kept, in input order."""
    ranked = sorted(points, key=lambda p: (p[2], -p[3]))  # stable: input order on ties
    front: list[tuple[str, int]] = []
    best: tuple[float, float] | None = None  # (cost, accuracy) of the last frontier point
    for label, budget, cost, accuracy in ranked:
        if best is None or accuracy > best[1] or (cost, accuracy) == best:
            front.append((label, budget))
            best = (cost, accuracy)
    return front


def cost_to_reach(points: Sequence[Point], accuracy: float, axis: Axis = "flops") -> float | None:
    """The least cost at which a curve reaches `accuracy` (its best-so-far envelope,
    interpolated linearly in log cost between points); None when it never does."""
    pts = sorted((p.x(axis), p.accuracy) for p in points if p.x(axis) > 0)
    best_x, best_acc = None, -1.0
    for x, acc in pts:
        if acc >= accuracy:
            if best_x is None:
                return x
            t = (accuracy - best_acc) / (acc - best_acc)
            return float(np.exp(np.log(best_x) + t * (np.log(x) - np.log(best_x))))
        if acc > best_acc:
            best_x, best_acc = x, acc
    return None


def efficiency(a: Curve, b: Curve, axis: Axis = "flops") -> list[tuple[Point, float | None]]:
    """For each point of `a`: how many times its cost `b` needs to reach the same accuracy
    (Snell et al.'s efficiency at equal accuracy); None when `b` never reaches it."""
    out = []
    for p in a.points:
        need = cost_to_reach(b.points, p.accuracy, axis)
        out.append((p, None if need is None else need / p.x(axis)))
    return out
