"""The budget guard of diffusion strategies: grant work only when its full cost fits.

A strategy asks for whole units (a denoising pass, a branch, a neighbour) before it starts
them; the guard grants as many as fit under every ceiling (NFE, FLOPs, finished samples,
seconds) given their exact cost, so a search never spends past its budget and stops with
its best so far. Diffusion costs are known before the call (NFE x FLOPs per evaluation),
so, unlike token budgets, no worst case is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

from testtime.core.budget import Budget
from testtime.core.cost import Cost
from testtime.core.errors import ConfigError


@dataclass(frozen=True, slots=True)
class UnitCost:
    """The cost of one unit of work, per sample."""

    nfe: int  # denoiser function evaluations
    flops: float
    samples: int = 0  # finished images it produces
    scores: int = 0  # reward evaluations


class Guard:
    """Grants work under a `Budget`, given what was spent so far."""

    def __init__(self, budget: Budget | None) -> None:
        self.budget = budget or Budget()
        if self.budget.tokens is not None:
            raise ConfigError(
                "a diffusion budget counts nfe, flops, samples or seconds; 'tokens' does not "
                "apply to image models. Write e.g. '64 nfe'"
            )
        self.exhausted = False  # the budget refused something

    def grant(self, spent: Cost, n: int, unit: UnitCost) -> int:
        """How many of `n` units fit (0..n); marks the guard exhausted when not all do."""
        b = self.budget
        k = n
        if b.seconds is not None and spent.seconds >= b.seconds:
            k = 0
        k = _fit(k, b.nfe, spent.nfe, unit.nfe)
        k = _fit(k, b.flops, spent.flops, unit.flops)
        k = _fit(k, b.samples, spent.samples, unit.samples)
        if k < n:
            self.exhausted = True
        return max(0, k)

    def check(self, spent: Cost) -> None:
        """An internal invariant: nothing was spent past a ceiling."""
        b = self.budget
        over = (b.nfe is not None and spent.nfe > b.nfe) or (
            b.flops is not None and spent.flops > b.flops * (1 + 1e-9)
        )
        if over:
            raise AssertionError(f"spent {spent} past the budget {b}")


def _fit(k: int, ceiling: float | None, spent: float, per: float) -> int:
    if ceiling is None or per <= 0:
        return k
    return min(k, int((ceiling - spent) // per))
