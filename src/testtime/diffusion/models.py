"""What a diffusion run needs, built from user options: the problem, the denoiser, the
reward and the judge of correctness. The embedded digit model or a local pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from testtime.core.errors import ConfigError
from testtime.core.types import Problem
from testtime.diffusion.base import Labeler
from testtime.diffusion.denoisers import Denoiser, Reward


@dataclass(frozen=True)
class Setup:
    problem: Problem
    denoiser: Denoiser
    reward: Reward
    judge: Labeler | None = None


def open_setup(
    *,
    digit: int | None = None,
    prompt: str | None = None,
    pipeline: Path | None = None,
    reward: Path | None = None,
    guidance: float | None = None,
    size: int | None = None,
    device: str | None = None,
) -> Setup:
    """The digit model (`digit`) or a diffusers pipeline with a CLIP reward (`prompt`)."""
    if (digit is None) == (prompt is None):
        raise ConfigError("give --digit N (the embedded model) or --prompt TEXT, one of the two")
    if digit is not None:
        if pipeline is not None or reward is not None or size is not None:
            raise ConfigError(
                "--pipeline, --reward and --size are for text-to-image pipelines; the digit "
                "model is 8x8 and ships its own reward. Drop them, or use --prompt"
            )
        return open_digits(digit, 1.0 if guidance is None else guidance)  # draw the digit asked
    if pipeline is None or reward is None:
        raise ConfigError(
            "--prompt needs --pipeline DIR (a local diffusers pipeline) and --reward DIR "
            "(a local CLIP model); nothing is downloaded"
        )
    from testtime.diffusion.pipelines import open_pipeline
    from testtime.diffusion.rewards import open_reward

    assert prompt is not None
    side = (size, size) if size is not None else None
    den = open_pipeline(pipeline, guidance=guidance, size=side, device=device)
    return Setup(Problem.from_prompt(prompt, id="prompt"), den, open_reward(reward, device=device))


def open_digits(digit: int, guidance: float = 0.0) -> Setup:
    """ "Draw a <digit>" with the embedded model, rewarded by the shipped classifier and
    judged by an independent one."""
    from testtime.diffusion import digits

    problem = digits.problem(digit)
    den = digits.DigitsDenoiser(guidance=guidance)
    return Setup(problem, den, digits.DigitReward(), digits.judge)
