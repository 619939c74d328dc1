"""Resampling and allocation, written once for every particle and tree method.

LLM particle filtering (Puri et al. 2025), REBASE's child allocation (Wu et al. 2024) and
diffusion FK steering (Singhal et al. 2025) all turn scores into weights and weights into
counts; they call these functions so the numerics (log-space normalisation, exact
expected counts) are decided in one place. Random draws take a `random.Random`, so a
seeded search is reproducible.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from testtime.core.errors import ConfigError


def normalize(log_weights: Sequence[float]) -> list[float]:
    """Probabilities from log-weights, stably (max subtracted). -inf entries get 0; all
    -inf (no particle has any weight) gives the uniform distribution."""
    if not log_weights:
        raise ConfigError("cannot normalise an empty set of weights")
    if any(math.isnan(w) or w == math.inf for w in log_weights):
        raise ConfigError(f"log-weights must be finite or -inf, got {list(log_weights)}")
    top = max(log_weights)
    if top == -math.inf:
        return [1.0 / len(log_weights)] * len(log_weights)
    raw = [math.exp(w - top) for w in log_weights]
    total = math.fsum(raw)
    return [r / total for r in raw]


def softmax(values: Sequence[float], temperature: float = 1.0) -> list[float]:
    """exp(v / T) normalised; T -> 0 puts all mass on the best (ties shared)."""
    if temperature < 0 or math.isnan(temperature):
        raise ConfigError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        best = max(values)
        winners = [v == best for v in values]
        return [w / sum(winners) for w in winners]
    return normalize([v / temperature for v in values])


def ess(weights: Sequence[float]) -> float:
    """Effective sample size 1 / sum(w_i^2) of normalised weights (n when uniform, 1 when
    one particle holds all the mass)."""
    return 1.0 / math.fsum(w * w for w in weights)


def multinomial(weights: Sequence[float], n: int, rng: random.Random) -> list[int]:
    """n indices drawn independently with probabilities `weights` (sorted)."""
    _check(weights, n)
    return sorted(rng.choices(range(len(weights)), weights=weights, k=n))


def systematic(weights: Sequence[float], n: int, rng: random.Random) -> list[int]:
    """n indices by systematic resampling: one uniform offset, n evenly spaced pointers.
    Each index i appears floor(n w_i) or ceil(n w_i) times, with expectation n w_i."""
    _check(weights, n)
    u = rng.random() / n
    out, cumulative, i = [], weights[0], 0
    for j in range(n):
        point = u + j / n
        while point > cumulative and i < len(weights) - 1:
            i += 1
            cumulative += weights[i]
        out.append(i)
    return out


def allocate(weights: Sequence[float], n: int) -> list[int]:
    """Split a budget of n children over nodes in proportion to `weights`, deterministically
    (largest remainders; REBASE's allocation). The counts sum to n."""
    _check(weights, n)
    exact = [w * n for w in weights]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    return counts


def rebase_allocate(scores: Sequence[float], width: int, temperature: float) -> list[int]:
    """REBASE's allocation (Wu et al. 2024): visiting nodes from the best score down, node j
    gets ceil(B * exp(R_j / T) / sum_{l >= j} exp(R_l / T)) of the width B still unspent.
    Counts are in the input's order and sum to `width` (the last node takes the rest)."""
    if width < 0 or temperature <= 0:
        raise ConfigError(f"need width >= 0 and temperature > 0, got {width}, {temperature}")
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    top = max(scores, default=0.0)
    mass = [math.exp((scores[i] - top) / temperature) for i in order]
    counts, left = [0] * len(scores), width
    for j, i in enumerate(order):
        share = mass[j] / math.fsum(mass[j:])
        counts[i] = min(left, math.ceil(left * share - 1e-12))
        left -= counts[i]
    return counts


def top_k(scores: Sequence[float], k: int) -> list[int]:
    """Indices of the k highest scores, best first; ties keep the earlier index."""
    if k < 0:
        raise ConfigError(f"cannot keep a negative number ({k})")
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]


def _check(weights: Sequence[float], n: int) -> None:
    if n < 0:
        raise ConfigError(f"cannot draw a negative number of particles ({n})")
    if not weights or any(w < 0 or math.isnan(w) for w in weights):
        raise ConfigError(f"weights must be non-negative and non-empty, got {list(weights)}")
    if abs(math.fsum(weights) - 1.0) > 1e-6:
        raise ConfigError(f"weights must sum to 1 (normalise them first), got {math.fsum(weights)}")
