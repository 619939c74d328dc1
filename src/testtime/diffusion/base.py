"""What a diffusion strategy is and what it is given: one problem, a metered denoiser,
sampler and reward, under a budget.

A strategy is a function `(ctx, params) -> Outcome`, written for ONE problem as the
paper's pseudo-code reads. It asks `ctx.grant` before each unit of work, `ctx.predict` /
`ctx.run` to denoise and `ctx.score` for rewards of decoded x0 estimates; the context keeps
its account in core's `Ledger`, as LLM strategies' contexts do: one grant rule, charge,
exhaustion, seeds and `Result`. Diffusion costs are exact (NFE x FLOPs per evaluation), so a
unit is granted at its true cost. Each strategy declares at registration which parameter
sets its width (`DiffusionTraits`), which an NFE budget fills.
"""

from __future__ import annotations

import random
import time
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from torch import Tensor

from testtime.core.budget import Budget
from testtime.core.cost import Cost, UnitCost
from testtime.core.errors import BudgetError, ConfigError
from testtime.core.ledger import Ledger
from testtime.core.registry import Params, Registry, Spec
from testtime.core.types import Candidate, Problem, Result
from testtime.diffusion.denoisers import Denoiser, Reward, Split, split
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
    # with `keep_scored`: the images and rewards of every `Context.score` call in order (the
    # intermediate x0 estimates a search rewarded; FK steering's are its checkpoints)
    scored: tuple[tuple[Tensor, Tensor], ...] = ()


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
        keep_scored: bool = False,
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
        if budget is not None and budget.tokens is not None:
            raise ConfigError(
                "a diffusion budget counts nfe, flops, samples or seconds; 'tokens' does not "
                "apply to image models. Write e.g. '64 nfe'"
            )
        # diffusion costs are known before each call: spending past a ceiling is a bug
        self.ledger = Ledger(budget, problem_id=problem.id, seed=seed, exact=True)
        reward.check(denoiser.image_shape)
        self.condition, prepared = denoiser.prepare(problem)  # e.g. a text encoder's pass
        if self.ledger.fits(1, self.unit(self.steps, scores=1, samples=1), prepared) == 0:
            raise BudgetError(
                f"budget {self.ledger.budget} is smaller than one denoising pass ({self.steps} "
                f"steps = {self.steps * denoiser.evals_per_call} nfe plus one reward); raise "
                "the budget or lower the steps"
            )
        self.ledger.charge(prepared)
        self.noise_gen = torch.Generator().manual_seed(self.ledger.stream_seed("noise"))
        self.rng = random.Random(self.ledger.stream_seed("resample"))
        self._images: list[Tensor] = []
        self._keep_scored = keep_scored  # for a trace's intermediate images (the viewer)
        self._scored: list[tuple[Tensor, Tensor]] = []

    # -- budget -------------------------------------------------------------------------
    def grant(self, n: int, evals: int, *, scores: int = 0, samples: int = 0) -> int:
        """How many of `n` units, each `evals` denoiser calls and `scores` rewards on one
        sample, fit under the budget (the budget marked exhausted when not all do)."""
        return self.ledger.grant(n, self.unit(evals, scores=scores, samples=samples))

    def unit(self, evals: int, *, scores: int = 0, samples: int = 0) -> UnitCost:
        """The exact cost of one unit of work: `evals` denoiser calls on one sample, `scores`
        rewards of its decoded estimates, `samples` finished images it yields."""
        d = self.denoiser
        nfe = evals * d.evals_per_call
        flops = nfe * d.flops_per_eval() + scores * self.score_flops()
        return UnitCost(Cost(nfe=nfe, flops=flops, samples=samples, verifier_calls=scores))

    def need(self, k: int, what: str, evals: int) -> int:
        """`k`, or a BudgetError when not even one unit of the strategy fits."""
        if k == 0:
            nfe = evals * self.denoiser.evals_per_call
            raise BudgetError(
                f"budget {self.ledger.budget} is smaller than one {what} of {self.spec.name} "
                f"({nfe} nfe with its rewards); raise the budget or lower the steps"
            )
        return k

    def score_flops(self) -> float:
        return self.denoiser.decode_flops() + self.reward.flops_per_image()

    @property
    def cost(self) -> Cost:
        """Everything spent on this problem so far."""
        return self.ledger.spent

    @property
    def exhausted(self) -> bool:
        return self.ledger.exhausted

    @property
    def candidates(self) -> Sequence[Candidate]:
        return self.ledger.candidates

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
        if self._keep_scored:
            self._scored.append((images.detach().cpu(), rewards.detach().cpu()))
        return images, rewards

    def _charge(
        self, *, nfe: int = 0, flops: float, started: float, calls: int = 0, scores: int = 0
    ) -> None:
        seconds = time.perf_counter() - started
        cost = Cost(nfe=nfe, flops=flops, seconds=seconds, generator_calls=calls)
        self.ledger.charge(replace(cost, verifier_calls=scores))

    # -- result ---------------------------------------------------------------------------
    def keep(
        self, images: Tensor, rewards: Tensor, parents: Sequence[int | None] | None = None
    ) -> list[Candidate]:
        """Record finished samples as candidates (each counts as one sample)."""
        labels = self.judge(images, self.problem)
        out = []
        for j, (image, r, label) in enumerate(zip(images, rewards.tolist(), labels, strict=True)):
            c = Candidate(
                "", label, {self.reward.name: float(r)}, parent=parents[j] if parents else None
            )
            out.append(self.ledger.add(c))
            self._images.append(image)
        self.ledger.charge(Cost(samples=len(out)))
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
        result = self.ledger.result(
            self.spec,
            chosen,
            correct=None if self.problem.answer is None else answer == self.problem.answer,
            trace={
                "nfe_per_pass": self.steps * self.denoiser.evals_per_call,
                "chosen_reward": self.reward_of(chosen) if chosen is not None else None,
                **trace,
            },
        )
        return Outcome(result, images, tuple(self._scored))


def chunks(x: Tensor, size: int) -> list[Tensor]:
    """x cut along its first axis into pieces of at most `size`."""
    return [x[i : i + size] for i in range(0, len(x), size)]


StrategyFn = Callable[[Context, Any], Outcome]
DIFFUSION_STRATEGIES: Registry[StrategyFn] = Registry("diffusion strategy")


@dataclass(frozen=True)
class DiffusionTraits:
    """What a diffusion strategy declares where it is registered."""

    width: str  # the integer parameter that sets how much it searches: an NFE budget fills it


def strategy(
    name: str, params: type[Params], traits: DiffusionTraits
) -> Callable[[StrategyFn], StrategyFn]:
    """Register a diffusion strategy under `name` with its parameter dataclass and traits."""
    if typing.get_type_hints(params).get(traits.width) is not int:
        raise ValueError(f"diffusion strategy {name!r}: its width {traits.width!r} is no int field")
    return DIFFUSION_STRATEGIES.register(name, params, traits)


def traits_of(name: str) -> DiffusionTraits:
    """A registered diffusion strategy's traits (an unknown name: a ConfigError listing the
    registered ones)."""
    traits = DIFFUSION_STRATEGIES.get(name).traits
    assert isinstance(traits, DiffusionTraits)  # `strategy` requires them
    return traits
