"""What an analysis of a run is made of: curves of accuracy against compute, and fits.

Produced by `analysis.replay` from the store (never by generating), consumed by `lab.reports`.
A curve's x-axis can be samples, generated tokens or FLOPs per problem: every point carries
all three, so one curve is plotted against whichever axis is asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

Axis = Literal["samples", "tokens", "flops", "eflops"]
AXES: tuple[Axis, ...] = ("samples", "tokens", "flops")
MEMORY: Axis = "eflops"  # Kinetics's memory-aware cost, where the model's KV shape is known
AXIS_LABELS: dict[Axis, str] = {
    "samples": "samples per problem",
    "tokens": "generated tokens per problem",
    "flops": "FLOPs per problem",
    "eflops": "eFLOPs per problem (FLOPs + 562.5 x KV bytes, Kinetics)",
}


@dataclass(frozen=True, slots=True)
class Point:
    """One budget of one strategy: accuracy (mean over problems) with a CI, and its cost."""

    budget: int  # the budget k (samples) this point was replayed or run at
    accuracy: float
    lo: float  # bootstrap confidence interval over problems
    hi: float
    samples: float  # mean cost per problem, in the three units a curve can be plotted against
    tokens: float
    flops: float
    eflops: float = 0.0  # FLOPs + intensity x KV-cache bytes read (0: KV shape unknown)

    def x(self, axis: Axis) -> float:
        return float(getattr(self, axis))


@dataclass(frozen=True, slots=True)
class Curve:
    """Accuracy against budget for one strategy arm (or coverage, for the oracle)."""

    label: str  # e.g. "self_consistency" or "best_of_n[self_certainty]"
    points: tuple[Point, ...]
    # how the points were obtained: "exact" (closed form over all k-subsets of the pool),
    # "monte-carlo" (random k-subsets of the pool), or "run" (the strategy ran at each budget)
    estimator: Literal["exact", "monte-carlo", "run"] = "exact"
    replayed: bool = True  # True when every point came from one stored pool


@dataclass(frozen=True, slots=True)
class CoverageFit:
    """Brown et al. 2024's coverage law, log c(k) = a * k**b, fitted on log-spaced k."""

    a: float
    b: float
    r2: float  # coefficient of determination of the fit on the coverage values
    ks: tuple[int, ...]  # the k values the fit used

    def predict(self, k: float) -> float:
        return math.exp(self.a * k**self.b)


@dataclass(frozen=True, slots=True)
class Ceiling:
    """Stroebl et al.'s bound: best-of-k under an imperfect verifier cannot pass
    p_c / (p_c + p_fp) (accepted-and-correct over all accepted), averaged over problems."""

    verifier: str
    threshold: float  # a score >= threshold counts as accepted
    value: float
    false_positive_rate: float  # P(accepted | incorrect) over the pool
    true_positive_rate: float  # P(accepted | correct) over the pool


@dataclass(frozen=True, slots=True)
class Analysis:
    """Everything a report shows about one run, computed from the store alone."""

    run_id: str
    title: str
    problems: int
    curves: tuple[Curve, ...]
    coverage: Curve | None = None  # pass@k from the pool, the oracle upper bound
    fit: CoverageFit | None = None
    saturation: dict[str, int | None] = field(default_factory=dict)  # label -> k (None: not yet)
    ceilings: tuple[Ceiling, ...] = ()
    # axis -> the (label, budget) points on the accuracy-vs-cost Pareto frontier
    pareto: dict[Axis, tuple[tuple[str, int], ...]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # one line each: estimators used, CI method, etc.
