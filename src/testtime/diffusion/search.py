"""Noise and path search (Ma et al. 2025, "Inference-Time Scaling for Diffusion Models
beyond Scaling Denoising Steps"): spend more function evaluations on finding a better
sample of the same model, with a reward as the verifier.

- best_of_n (random search): N initial noises, each denoised fully; keep the best.
- zero_order: from a pivot noise, N neighbours at cosine similarity lam; move the pivot
  to the best neighbour when it improves; repeat.
- path_search: N beams denoised part way; each is pushed back by forward noise and
  re-denoised further along M times; the top N of the N x M branches, by the reward of
  their x0 estimate, go on; until the end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from testtime.core.errors import ConfigError
from testtime.diffusion.base import Context, DiffusionParams, DiffusionTraits, Outcome, strategy


@dataclass(frozen=True)
class BestOfNParams(DiffusionParams):
    n: int = 4  # N noises

    def validate(self) -> None:
        super().validate()
        self.positive("n")


@strategy("best_of_n", BestOfNParams, DiffusionTraits(width="n"))
def best_of_n(ctx: Context, p: BestOfNParams) -> Outcome:
    """Random search over initial noise (Ma et al. 2025, G1): best of N full samples."""
    k = ctx.grant(p.n, ctx.steps, scores=1, samples=1)
    x, _ = ctx.run(ctx.noise(k), 0, ctx.steps)
    images, rewards = ctx.score(x)
    ctx.keep(images, rewards)
    return ctx.finish(ctx.best(), {"rewards": rewards.tolist()})


@dataclass(frozen=True)
class ZeroOrderParams(DiffusionParams):
    neighbours: int = 4  # N
    iterations: int = 4  # K
    lam: float = 0.95  # cosine similarity of a neighbour to the pivot

    def validate(self) -> None:
        super().validate()
        self.positive("neighbours", "iterations")
        if not 0.0 < self.lam < 1.0:
            raise ConfigError(f"parameter 'lam' must be in (0, 1), got {self.lam}")


@strategy("zero_order", ZeroOrderParams, DiffusionTraits(width="iterations"))
def zero_order(ctx: Context, p: ZeroOrderParams) -> Outcome:
    """Zero-order search (Ma et al. 2025, G2): hill-climb on the noise through neighbours
    x' = |x| (lam u + sqrt(1 - lam^2) w), u = x / |x|, w a random unit vector orthogonal
    to u; the pivot moves to the best neighbour only when its reward is higher."""
    pivot = ctx.noise(1)
    x, _ = ctx.run(pivot, 0, ctx.steps)
    images, rewards = ctx.score(x)
    (best,) = ctx.keep(images, rewards)
    history: list[dict[str, Any]] = []
    for _ in range(p.iterations):
        k = ctx.grant(p.neighbours, ctx.steps, scores=1, samples=1)
        if k == 0:
            break  # the budget is spent: keep the best so far
        near = neighbours(pivot, k, p.lam, ctx.noise_gen)
        x, _ = ctx.run(near, 0, ctx.steps)
        images, rewards = ctx.score(x)
        found = ctx.keep(images, rewards, parents=[best.id] * k)
        j = int(torch.argmax(rewards))
        moved = float(rewards[j]) > ctx.reward_of(best)
        history.append({"pivot": best.id, "rewards": rewards.tolist(), "moved": moved})
        if moved:
            pivot, best = near[j : j + 1], found[j]
    return ctx.finish(ctx.best(), {"iterations": history})


def neighbours(x: Tensor, n: int, lam: float, generator: torch.Generator) -> Tensor:
    """n noises at cosine similarity `lam` to x (one sample), with the same norm."""
    flat = x.reshape(1, -1).to(torch.float64)
    norm = flat.norm()
    u = flat / norm
    z = torch.randn((n, flat.shape[1]), generator=generator, dtype=torch.float64)
    w = z - (z @ u.T) * u
    w = w / w.norm(dim=1, keepdim=True)
    out = norm * (lam * u + math.sqrt(1 - lam * lam) * w)
    shaped: Tensor = out.reshape(n, *x.shape[1:]).to(x.dtype)
    return shaped


@dataclass(frozen=True)
class PathParams(DiffusionParams):
    n: int = 2  # N beams kept
    branches: int = 4  # M branches per beam and round
    start: float = 0.3  # fraction of the steps denoised before the search begins
    back: int = 2  # steps each branch is pushed back by forward noising
    forward: int = 4  # steps each branch is then denoised (> back: net progress)

    def validate(self) -> None:
        super().validate()
        self.positive("n", "branches", "back", "forward")
        if not 0.0 <= self.start < 1.0:
            raise ConfigError(f"parameter 'start' must be in [0, 1), got {self.start}")
        if self.forward <= self.back:
            raise ConfigError(
                f"parameter 'forward' ({self.forward}) must exceed 'back' ({self.back}), or "
                "the search never reaches the end"
            )


@strategy("path_search", PathParams, DiffusionTraits(width="n"))
def path_search(ctx: Context, p: PathParams) -> Outcome:
    """Search over paths (Ma et al. 2025, G3): denoise N beams to an intermediate level;
    each round, re-noise every beam back `back` steps M times, denoise each branch
    `forward` steps, and keep the N branches whose x0 estimates score best."""
    first, rounds = path_plan(ctx.steps, p)
    evals = first + p.branches * sum(stop - start for start, stop in rounds)
    k = ctx.grant(p.n, evals, scores=p.branches * len(rounds), samples=p.branches)
    ctx.need(k, "beam", evals)
    x, _ = ctx.run(ctx.noise(k), 0, first)
    beams, i, history = list(range(k)), first, []
    for start, stop in rounds:
        parents = [b for b in beams for _ in range(p.branches)]
        branch = ctx.renoise(x.repeat_interleave(p.branches, 0), i, start)
        branch, pred = ctx.run(branch, start, stop)
        assert pred is not None
        images, rewards = ctx.score(pred.x0)
        keep = torch.argsort(rewards, descending=True, stable=True)[:k].tolist()
        history.append({"step": stop, "t": ctx.times[stop], "parents": parents,
                        "rewards": rewards.tolist(), "kept": keep})  # fmt: skip
        if stop == ctx.steps:
            ctx.keep(images, rewards)
        x, beams, i = branch[keep], keep, stop
    return ctx.finish(ctx.best(), {"start": first, "rounds": history})


def path_plan(steps: int, p: PathParams) -> tuple[int, list[tuple[int, int]]]:
    """The step where search begins, and each round's (re-noised index, reached index)."""
    first = min(steps - 1, round(p.start * steps))
    rounds, i = [], first
    while i < steps:
        start = max(0, i - p.back)
        stop = min(steps, start + p.forward)
        rounds.append((start, stop))
        i = stop
    return first, rounds
