"""What a diffusion strategy is and what it is given: one problem, a metered denoiser,
sampler and reward, under a budget.

A strategy is a function `(ctx, params) -> Outcome`, written for ONE problem as the
paper's pseudo-code reads. It asks `ctx.grant` before each unit of work, `ctx.predict` /
`ctx.run` to denoise and `ctx.score` for rewards of decoded x0 estimates; the context
charges every call to one `Cost` ledger (NFE, FLOPs, seconds, reward calls).
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from testtime.core.budget import Budget
from testtime.core.cost import Cost
from testtime.core.errors import BudgetError, ConfigError
from testtime.core.registry import Params, Registry, Spec
from testtime.core.types import Candidate, Problem, Result
from testtime.diffusion.denoisers import Denoiser, Reward, Split, split
from testtime.diffusion.guard import Guard, UnitCost
from testtime.diffusion.samplers import SamplerName, step

Labeler = Callable[[Tensor, Problem], list[str | None]]  # what each image shows (a class)


@dataclass(frozen=True)
class DiffusionParams(Params):
    """Sampler settings every diffusion strategy shares."""

    steps: int = 20  # denoising steps of one full pass
    sampler: Literal["ddim", "ddpm", "euler"] = "ddim"
    eta: float = 0.0  # DDIM's noise (0: deterministic, 1: DDPM)

    def validate(self) -> None:
        self.positive("steps")
        if not 0.0 <= self.eta <= 1.0:
            raise ConfigError(f"parameter 'eta' must be in [0, 1], got {self.eta}")


@dataclass(frozen=True, slots=True)
class Outcome:
    """A strategy's result (candidates, rewards, trace, cost) and the candidates' images."""

    result: Result
    images: Tensor  # (len(result.candidates), *image shape), aligned with the candidates


class Context:
    """One problem's view of the world while a diffusion strategy runs on it."""

    def __init__(
        self,
        problem: Problem,
        denoiser: Denoiser,
        reward: Reward,
        *,
        spec: Spec,
        budget: Budget | None = None,
        seed: int = 0,
        judge: Labeler | None = None,
        max_batch: int = 256,
    ) -> None:
        params = spec.params
        if not isinstance(params, DiffusionParams):
            raise ConfigError(f"{spec.name!r} is not a diffusion strategy")
        self.problem, self.denoiser, self.reward, self.spec = problem, denoiser, reward, spec
        self.judge: Labeler = judge or reward.labels
        self.max_batch = max_batch
        self.sampler: SamplerName = params.sampler
        self.eta = params.eta
        self.times = denoiser.schedule.times(params.steps)
        self.steps = params.steps
        self.guard = Guard(budget)
        reward.check(denoiser.image_shape)
        self.condition, self.cost = denoiser.prepare(problem)
        self.noise_gen = torch.Generator().manual_seed(stream_seed(seed, problem.id, "noise"))
        self.rng = random.Random(stream_seed(seed, problem.id, "resample"))
        self.candidates: list[Candidate] = []
        self._images: list[Tensor] = []
        if self.grant(1, self.steps, scores=1, samples=1) == 0:
            raise BudgetError(
                f"budget {self.guard.budget} is smaller than one denoising pass ({self.steps} "
                f"steps = {self.steps * denoiser.evals_per_call} nfe plus one reward); raise "
                "the budget or lower the steps"
            )
        self.guard.exhausted = False

    # -- budget -------------------------------------------------------------------------
    def grant(self, n: int, evals: int, *, scores: int = 0, samples: int = 0) -> int:
        """How many of `n` units, each `evals` denoiser calls and `scores` rewards on one
        sample, fit under the budget."""
        d = self.denoiser
        nfe = evals * d.evals_per_call
        flops = nfe * d.flops_per_eval() + scores * self.score_flops()
        return self.guard.grant(self.cost, n, UnitCost(nfe, flops, samples, scores))

    def need(self, k: int, what: str, evals: int) -> int:
        """`k`, or a BudgetError when not even one unit of the strategy fits."""
        if k == 0:
            nfe = evals * self.denoiser.evals_per_call
            raise BudgetError(
                f"budget {self.guard.budget} is smaller than one {what} of {self.spec.name} "
                f"({nfe} nfe with its rewards); raise the budget or lower the steps"
            )
        return k

    def score_flops(self) -> float:
        return self.denoiser.decode_flops() + self.reward.flops_per_image()

    @property
    def exhausted(self) -> bool:
        return self.guard.exhausted

    # -- model ----------------------------------------------------------------------------
    def noise(self, n: int) -> Tensor:
        return torch.randn((n, *self.denoiser.shape), generator=self.noise_gen)

    def predict(self, x: Tensor, i: int) -> Split:
        """The (x0, eps) estimate at grid time i, charged as len(x) evaluations (the model
        is called on at most `max_batch` samples at once)."""
        d, t = self.denoiser, self.times[i]
        parts = []
        for chunk in chunks(x, self.max_batch):
            started = time.perf_counter()
            with torch.no_grad():
                out = d(chunk, t, self.condition)
            nfe = len(chunk) * d.evals_per_call
            self._charge(nfe=nfe, flops=nfe * d.flops_per_eval(), started=started, calls=1)
            parts.append(out)
        return split(d.prediction, torch.cat(parts), x, t, d.schedule)

    def step(self, x: Tensor, i: int, pred: Split) -> Tensor:
        """x at grid time i + 1 from x at grid time i."""
        t, s = self.times[i], self.times[i + 1]
        sched = self.denoiser.schedule
        return step(self.sampler, sched, x, pred, t, s, eta=self.eta, generator=self.noise_gen)

    def run(self, x: Tensor, start: int, stop: int) -> tuple[Tensor, Split | None]:
        """Denoise from grid index `start` to `stop`; the last x0 estimate with it."""
        pred = None
        for i in range(start, stop):
            pred = self.predict(x, i)
            x = self.step(x, i, pred)
        return x, pred

    def renoise(self, x: Tensor, i: int, j: int) -> Tensor:
        """x at grid time i pushed back to the noisier grid time j < i (forward process)."""
        z = torch.randn(x.shape, generator=self.noise_gen)
        return self.denoiser.schedule.noise_to(x, self.times[i], self.times[j], z)

    def score(self, x0: Tensor) -> tuple[Tensor, Tensor]:
        """Decoded images of clean estimates and their rewards (charged per image)."""
        started = time.perf_counter()
        with torch.no_grad():
            images = torch.cat([self.denoiser.decode(c) for c in chunks(x0, self.max_batch)])
            rewards = torch.cat([
                self.reward(c, self.problem) for c in chunks(images, self.max_batch)
            ]).to(torch.float64)  # fmt: skip
        self._charge(flops=len(x0) * self.score_flops(), started=started, scores=len(x0))
        return images, rewards

    def _charge(
        self, *, nfe: int = 0, flops: float, started: float, calls: int = 0, scores: int = 0
    ) -> None:
        seconds = time.perf_counter() - started
        self.cost += Cost(
            nfe=nfe, flops=flops, seconds=seconds, generator_calls=calls, verifier_calls=scores
        )
        self.guard.check(self.cost)

    # -- result ---------------------------------------------------------------------------
    def keep(
        self, images: Tensor, rewards: Tensor, parents: Sequence[int | None] | None = None
    ) -> list[Candidate]:
        """Record finished samples as candidates (each counts as one sample)."""
        labels = self.judge(images, self.problem)
        out = []
        for j, (image, r, label) in enumerate(zip(images, rewards.tolist(), labels, strict=True)):
            c = Candidate(
                "", label, {self.reward.name: float(r)}, parent=parents[j] if parents else None,
                id=len(self.candidates),
            )  # fmt: skip
            self.candidates.append(c)
            self._images.append(image)
            out.append(c)
        self.cost += Cost(samples=len(out))
        return out

    def reward_of(self, c: Candidate) -> float:
        return c.scores[self.reward.name]

    def best(self) -> Candidate | None:
        """The highest-reward candidate so far (the earliest among ties)."""
        name = self.reward.name
        return max(self.candidates, key=lambda c: (c.scores[name], -c.id), default=None)

    def finish(self, chosen: Candidate | None, trace: dict[str, Any]) -> Outcome:
        images = torch.stack(self._images) if self._images else torch.empty(0)
        answer = chosen.answer if chosen is not None else None
        result = Result(
            problem_id=self.problem.id,
            answer=answer,
            candidates=tuple(self.candidates),
            cost=self.cost,
            strategy=self.spec.to_dict(),
            chosen=chosen.id if chosen is not None else None,
            budget_exhausted=self.exhausted,
            correct=None if self.problem.answer is None else answer == self.problem.answer,
            trace={
                "nfe_per_pass": self.steps * self.denoiser.evals_per_call,
                "chosen_reward": self.reward_of(chosen) if chosen is not None else None,
                **trace,
            },
        )
        return Outcome(result, images)


def chunks(x: Tensor, size: int) -> list[Tensor]:
    """x cut along its first axis into pieces of at most `size`."""
    return [x[i : i + size] for i in range(0, len(x), size)]


def stream_seed(seed: int, problem_id: str, stream: str) -> int:
    """A seed per (run seed, problem, random stream): noises and resampling draw apart."""
    key = f"{seed}:{problem_id}:{stream}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


StrategyFn = Callable[[Context, Any], Outcome]
DIFFUSION_STRATEGIES: Registry[StrategyFn] = Registry("diffusion strategy")


def strategy(name: str, params: type[Params]) -> Callable[[StrategyFn], StrategyFn]:
    """Register a diffusion strategy under `name` with its parameter dataclass."""
    return DIFFUSION_STRATEGIES.register(name, params)
