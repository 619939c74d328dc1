"""The embedded default: 8x8 digits, a shipped denoiser and classifier, no download.

`load()` reads the weights from inside the package (`weights/digits.npz`, written by
`testtime diffuse train`). The denoiser is class-conditional with classifier-free
guidance: guidance 1 samples p(x | digit), 0 ignores the digit (so only the reward steers),
and other values mix the two at 2 function evaluations per sample per step. The reward
of an image for "draw a 7" is the classifier's probability of 7; `judge` grades with an
independent classifier (an RBF SVM fitted on the same digits) so accuracy is not
measured by the reward being optimised.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from testtime.core.cost import Cost
from testtime.core.errors import ConfigError, ModelNotFoundError
from testtime.core.types import Message, Problem
from testtime.diffusion.denoisers import Prediction
from testtime.diffusion.nets import NULL, DigitClassifier, DigitDenoiser, linear_flops
from testtime.diffusion.schedule import VP
from testtime.diffusion.train import WEIGHTS

IMAGE = (1, 8, 8)


@dataclass(frozen=True)
class DigitModels:
    denoiser: DigitDenoiser
    classifier: DigitClassifier
    meta: dict[str, Any]


def load(path: Path = WEIGHTS) -> DigitModels:
    """The shipped (or a freshly trained) digit denoiser and classifier."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: torch.from_numpy(f[k].copy()) for k in f.files}
    except (OSError, ValueError, KeyError) as e:
        raise ModelNotFoundError(
            f"cannot read the digit model at {path} ({e}); rebuild it with `testtime diffuse train`"
        ) from None
    meta = json.loads(bytes(arrays.pop("meta").numpy()).decode())
    den = DigitDenoiser(**meta["denoiser"])
    clf = DigitClassifier(**meta["classifier"])
    try:
        den.load_state_dict({k[9:]: v for k, v in arrays.items() if k.startswith("denoiser.")})
        clf.load_state_dict({k[11:]: v for k, v in arrays.items() if k.startswith("classifier.")})
    except RuntimeError as e:
        raise ModelNotFoundError(f"{path} does not hold the digit model: {e}") from None
    return DigitModels(den.eval(), clf.eval(), meta)


@cache
def shipped() -> DigitModels:
    return load()


def problem(digit: int) -> Problem:
    """'draw a 7': the problem whose gold answer is the digit."""
    if isinstance(digit, bool) or not isinstance(digit, int) or not 0 <= digit <= 9:
        raise ConfigError(f"unknown digit {digit!r}; the digit model draws 0 to 9")
    return Problem(
        (Message("user", f"draw a {digit}"),), answer=str(digit), id=f"digit-{digit}",
        metadata={"digit": digit},
    )  # fmt: skip


def digit_of(p: Problem) -> int:
    digit = p.metadata.get("digit")
    if not isinstance(digit, int) or not 0 <= digit <= 9:
        raise ConfigError(
            f"problem {p.id!r} names no digit (0-9) for the digit model; make it with "
            "testtime.diffusion.digits.problem(d) or pass --digit"
        )
    return digit


class DigitsDenoiser:
    """The shipped denoiser as a `Denoiser`, with classifier-free guidance."""

    name = "digits"
    prediction: Prediction = "eps"
    shape = IMAGE
    image_shape = IMAGE

    def __init__(self, models: DigitModels | None = None, guidance: float = 1.0) -> None:
        if not 0.0 <= guidance <= 10.0:
            raise ConfigError(f"guidance must be in [0, 10], got {guidance}")
        self.net = (models or shipped()).denoiser
        self.guidance = guidance
        self.schedule = VP()
        self.evals_per_call = 1 if guidance in (0.0, 1.0) else 2
        self._flops = linear_flops(self.net)

    def prepare(self, problem: Problem) -> tuple[Any, Cost]:
        return (NULL if self.guidance == 0.0 else digit_of(problem)), Cost()

    def __call__(self, x: Tensor, t: float, condition: Any) -> Tensor:
        times = torch.full((len(x),), t, dtype=torch.float32)
        x = x.float()
        if self.evals_per_call == 1:
            out: Tensor = self.net(x, times, torch.full((len(x),), condition, dtype=torch.long))
            return out
        labels = torch.cat([torch.full((len(x),), condition), torch.full((len(x),), NULL)])
        both: Tensor = self.net(torch.cat([x, x]), torch.cat([times, times]), labels)
        cond, uncond = both[: len(x)], both[len(x) :]
        return uncond + self.guidance * (cond - uncond)

    def flops_per_eval(self) -> float:
        return self._flops

    def decode(self, x0: Tensor) -> Tensor:
        return ((x0.float() + 1.0) / 2.0).clamp(0.0, 1.0)

    def decode_flops(self) -> float:
        return 0.0


class DigitReward:
    """r(image) = the classifier's probability of the problem's digit."""

    name = "digit_prob"

    def __init__(self, models: DigitModels | None = None) -> None:
        self.net = (models or shipped()).classifier

    def check(self, image_shape: tuple[int, ...]) -> None:
        if tuple(image_shape) != IMAGE:
            raise ConfigError(
                f"the digit reward scores 1x8x8 grayscale images; this model makes "
                f"{'x'.join(map(str, image_shape))} images. Use a CLIP reward (--reward DIR) "
                "for text-to-image pipelines"
            )

    def probs(self, images: Tensor) -> Tensor:
        return torch.softmax(self.net(images.float() * 2.0 - 1.0), dim=1)

    def __call__(self, images: Tensor, problem: Problem) -> Tensor:
        return self.probs(images)[:, digit_of(problem)]

    def labels(self, images: Tensor, problem: Problem) -> list[str | None]:
        return [str(int(i)) for i in self.probs(images).argmax(1)]

    def flops_per_image(self) -> float:
        return linear_flops(self.net)


@cache
def _svm() -> Any:
    from sklearn.datasets import load_digits
    from sklearn.svm import SVC

    data = load_digits()
    return SVC(gamma=0.001).fit(data.data, data.target)


def judge(images: Tensor, problem: Problem) -> list[str | None]:
    """Labels from an RBF SVM fitted on all 1797 digits (independent of the reward)."""
    try:
        svm = _svm()
    except ImportError:
        raise ConfigError(
            "the digit judge needs scikit-learn: pip install 'testtime[diffusion]'"
        ) from None
    pixels = (images.float().reshape(len(images), 64) * 16.0).numpy()
    return [str(int(v)) for v in svm.predict(pixels)]
