"""What a diffusion or flow model is to a strategy: a denoiser, a decoder, a reward.

A `Denoiser` predicts noise (eps), the clean sample (x0), diffusers' v (alpha eps -
sigma x0) or a flow's velocity (dx/dt) from (x_t, t, condition); `split` turns any of
them into the (x0, eps) pair every sampler works with. A `Reward` scores decoded images.
Both report their FLOPs, so the ledger counts real compute, not just calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from torch import Tensor

from testtime.core.cost import Cost
from testtime.core.errors import ConfigError
from testtime.core.types import Problem
from testtime.diffusion.schedule import Schedule

Prediction = Literal["eps", "x0", "v", "velocity"]
PREDICTIONS: tuple[Prediction, ...] = ("eps", "x0", "v", "velocity")


class Denoiser(Protocol):
    """A model of p(x0 | condition) run backwards from noise."""

    @property
    def name(self) -> str: ...

    @property
    def schedule(self) -> Schedule: ...

    @property
    def prediction(self) -> Prediction: ...

    @property
    def shape(self) -> tuple[int, ...]:
        """One latent sample's shape."""
        ...

    @property
    def image_shape(self) -> tuple[int, ...]:
        """One decoded image's shape (channels, height, width)."""
        ...

    @property
    def evals_per_call(self) -> int:
        """Function evaluations per sample per call (2 with classifier-free guidance)."""
        ...

    def prepare(self, problem: Problem) -> tuple[Any, Cost]:
        """The model-ready condition for a problem (a class, prompt embeddings) and its cost."""
        ...

    def __call__(self, x: Tensor, t: float, condition: Any) -> Tensor:
        """The model's prediction for a batch `x` at time t."""
        ...

    def flops_per_eval(self) -> float:
        """FLOPs of one function evaluation on one sample."""
        ...

    def decode(self, x0: Tensor) -> Tensor:
        """Images in [0, 1], (batch, channels, height, width), from clean latents."""
        ...

    def decode_flops(self) -> float:
        """FLOPs of decoding one sample (0 for pixel-space models)."""
        ...


class Reward(Protocol):
    """Scores decoded images for a problem; higher is better."""

    @property
    def name(self) -> str: ...

    def check(self, image_shape: tuple[int, ...]) -> None:
        """Raise ConfigError when the reward cannot score images of this shape."""
        ...

    def __call__(self, images: Tensor, problem: Problem) -> Tensor:
        """One reward per image, shape (batch,)."""
        ...

    def labels(self, images: Tensor, problem: Problem) -> list[str | None]:
        """What each image shows, when the reward can tell (a class); else None each."""
        ...

    def flops_per_image(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Split:
    """A prediction turned into the clean-sample and noise estimates at time t."""

    x0: Tensor
    eps: Tensor


def split(prediction: Prediction, out: Tensor, x: Tensor, t: float, schedule: Schedule) -> Split:
    """(x0, eps) from a model output, using x = alpha x0 + sigma eps."""
    a, s = schedule.alpha(t), schedule.sigma(t)
    if prediction == "eps":
        return Split((x - s * out) / a, out)
    if prediction == "x0":
        return Split(out, (x - a * out) / s)
    if prediction == "v":  # v = alpha eps - sigma x0, for alpha^2 + sigma^2 = 1
        return Split(a * x - s * out, s * x + a * out)
    if prediction == "velocity":  # u = alpha' x0 + sigma' eps
        da, ds = schedule.d_alpha(t), schedule.d_sigma(t)
        det = a * ds - s * da
        return Split((ds * x - s * out) / det, (a * out - da * x) / det)
    raise ConfigError(f"unknown prediction {prediction!r}; allowed: {', '.join(PREDICTIONS)}")
