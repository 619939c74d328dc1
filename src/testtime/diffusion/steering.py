"""Feynman-Kac steering (Singhal et al. 2025): particles, potentials, resampling.

k particles start from independent noises and follow the model's stochastic sampler (the
proposal). At checkpoint steps every `interval` steps (and always the last), each
particle's x0 estimate is rewarded and weighted by a potential:

    max:   G = exp(lam * max(r_t, r_prev))   (r_prev: the particle's best so far)
    diff:  G = exp(lam * (r_t - r_prev))     (r_prev: its last reward, 0 at first)
    sum:   G = exp(lam * (r_t + r_prev))     (r_prev: its running sum)
    rt:    G = exp(lam * r_t)

and the population is resampled through core's resampling (the same functions LLM
particle filtering calls) when the ESS falls below `ess_threshold` x k (1.0: at every
checkpoint). At the last step, max, sum and rt are corrected by the product of the
potentials a lineage was given, so every choice targets p(x0) exp(lam r(x0)) / Z.

Unlike the reference code, unresampled weights accumulate (standard SMC) instead of being
dropped, so adaptive resampling keeps the target exact. The final population is resampled
once more (the trace's `final_ancestors`: a sample of the tilted target); the answer is
the highest-reward final particle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from testtime.core import resampling
from testtime.core.errors import ConfigError
from testtime.diffusion.base import Context, DiffusionParams, DiffusionTraits, Outcome, strategy
from testtime.diffusion.samplers import stochastic


@dataclass(frozen=True)
class FKParams(DiffusionParams):
    sampler: Literal["ddim", "ddpm", "euler"] = "ddpm"
    particles: int = 4  # k
    lam: float = 10.0  # lambda: how hard the reward tilts the target
    potential: Literal["max", "diff", "sum", "rt"] = "max"
    interval: int = 5  # steps between checkpoints (the last step always is one)
    ess_threshold: float = 1.0  # resample when ESS < threshold x k (1.0: every checkpoint)
    resample: Literal["multinomial", "systematic"] = "multinomial"

    def validate(self) -> None:
        super().validate()
        self.positive("particles", "interval")
        if not 0.0 <= self.ess_threshold <= 1.0:
            raise ConfigError(
                f"parameter 'ess_threshold' must be in [0, 1], got {self.ess_threshold}"
            )
        if not stochastic(self.sampler, self.eta):
            raise ConfigError(
                "fk_steering resamples particles, which a deterministic sampler cannot branch "
                f"apart again; use sampler='ddpm' (or 'ddim' with eta > 0), not {self.sampler!r}"
            )


@strategy("fk_steering", FKParams, DiffusionTraits(width="particles"))
def fk_steering(ctx: Context, p: FKParams) -> Outcome:
    """FK steering (Singhal et al. 2025): k particles resampled by reward potentials."""
    checkpoints, history = _checkpoints(ctx.steps, p.interval), []
    k = ctx.grant(p.particles, ctx.steps, scores=len(checkpoints), samples=1)
    ctx.need(k, "particle", ctx.steps)
    x = ctx.noise(k)
    prev = torch.zeros(k, dtype=torch.float64)  # r_prev per particle (max / diff / sum)
    applied = torch.zeros(k, dtype=torch.float64)  # log of potentials given to each lineage
    log_w = torch.zeros(k, dtype=torch.float64)  # weights since the last resampling
    images = rewards = None
    for i in range(ctx.steps):
        pred = ctx.predict(x, i)
        x = ctx.step(x, i, pred)
        if i not in checkpoints:
            continue
        images, rewards = ctx.score(pred.x0)
        r = rewards.to(torch.float64)
        log_g, prev = _potential(p.potential, p.lam, r, prev)
        if i == ctx.steps - 1 and p.potential != "diff":
            log_g = p.lam * r - applied  # the product of potentials becomes exp(lam r)
        log_w, applied = log_w + log_g, applied + log_g
        weights = resampling.normalize(log_w.tolist())
        ess = resampling.ess(weights)
        record: dict[str, Any] = {
            "step": i, "t": ctx.times[i + 1], "rewards": r.tolist(), "log_weights": log_w.tolist(),
            "ess": ess, "resampled": False,
        }  # fmt: skip
        last = i == ctx.steps - 1
        if not last and (p.ess_threshold >= 1.0 or ess < p.ess_threshold * k):
            idx = _draw(p, weights, k, ctx)
            x, prev, applied = x[idx], prev[idx], applied[idx]
            log_w = torch.zeros(k, dtype=torch.float64)
            record |= {"resampled": True, "ancestors": idx}
        history.append(record)
    assert images is not None and rewards is not None  # the last step is a checkpoint
    final = resampling.normalize(log_w.tolist())
    kept = ctx.keep(images, rewards)
    trace = {"checkpoints": history, "final_weights": final,
             "final_ancestors": _draw(p, final, k, ctx)}  # fmt: skip
    return ctx.finish(ctx.best() if kept else None, trace)


def _checkpoints(steps: int, interval: int) -> set[int]:
    """Steps whose x0 estimate is rewarded: every `interval`-th, and the last."""
    return {i for i in range(steps) if (i + 1) % interval == 0} | {steps - 1}


def _potential(
    kind: str, lam: float, r: torch.Tensor, prev: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(log G, the new r_prev) for each particle."""
    if kind == "max":
        best = torch.maximum(r, prev)
        return lam * best, best
    if kind == "diff":
        return lam * (r - prev), r
    if kind == "sum":
        total = r + prev
        return lam * total, total
    return lam * r, r


def _draw(p: FKParams, weights: list[float], k: int, ctx: Context) -> list[int]:
    draw = resampling.systematic if p.resample == "systematic" else resampling.multinomial
    return draw(weights, k, ctx.rng)
