"""Diffusion plumbing: NFE budgets and costs, schedules and prediction types, the digit
model's files and errors, reproducible training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from testtime.core.budget import Budget
from testtime.core.cost import Cost
from testtime.core.errors import ConfigError, ModelNotFoundError
from testtime.diffusion import digits
from testtime.diffusion.denoisers import split
from testtime.diffusion.schedule import VP, Discrete, Flow
from testtime.diffusion.train import TrainConfig, train


def test_budgets_read_nfe_and_costs_add_it() -> None:
    assert Budget.parse("64 nfe") == Budget(nfe=64)
    assert Budget.parse("nfe=128, 30 s") == Budget(nfe=128, seconds=30.0)
    assert str(Budget(nfe=8)) == "8 nfe"
    assert Budget(nfe=8).exhausted(Cost(nfe=8)) and not Budget(nfe=8).exhausted(Cost(nfe=7))
    assert (Cost(nfe=3, flops=1.0) + Cost(nfe=4)).nfe == 7
    assert Cost(nfe=2).to_dict()["nfe"] == 2
    with pytest.raises(ConfigError, match="whole number"):
        Budget.parse("2.5 nfe")
    with pytest.raises(ConfigError, match="positive"):
        Budget(nfe=0)


@pytest.mark.parametrize("schedule", [VP(), Flow(), Discrete(torch.linspace(0.999, 0.01, 50))])
@pytest.mark.parametrize("prediction", ["eps", "x0", "v", "velocity"])
def test_every_prediction_type_recovers_x0_and_eps(schedule, prediction) -> None:  # type: ignore[no-untyped-def]
    if prediction == "v" and isinstance(schedule, Flow):
        pytest.skip("v-prediction is defined for variance-preserving schedules")
    g = torch.Generator().manual_seed(0)
    x0, eps, t = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g), 0.4
    a, s = schedule.alpha(t), schedule.sigma(t)
    da, ds = schedule.d_alpha(t), schedule.d_sigma(t)
    out = {"eps": eps, "x0": x0, "v": a * eps - s * x0, "velocity": da * x0 + ds * eps}
    got = split(prediction, out[prediction], a * x0 + s * eps, t, schedule)
    assert torch.allclose(got.x0, x0, atol=1e-4) and torch.allclose(got.eps, eps, atol=1e-4)


def test_forward_noising_has_the_schedule_marginal() -> None:
    sched, g = VP(), torch.Generator().manual_seed(0)
    x0 = torch.full((200_000, 1), 2.0)
    xt = sched.alpha(0.3) * x0 + sched.sigma(0.3) * torch.randn(x0.shape, generator=g)
    xs = sched.noise_to(xt, 0.3, 0.7, torch.randn(x0.shape, generator=g))
    assert abs(float(xs.mean()) - 2.0 * sched.alpha(0.7)) < 0.01
    assert abs(float(xs.std()) - sched.sigma(0.7)) < 0.01


def test_digit_problems_and_rewards_refuse_what_they_cannot_do() -> None:
    assert digits.problem(7).answer == "7"
    with pytest.raises(ConfigError, match="unknown digit 12; the digit model draws 0 to 9"):
        digits.problem(12)
    with pytest.raises(ConfigError, match="1x8x8 grayscale images; this model makes 3x64x64"):
        digits.DigitReward().check((3, 64, 64))
    with pytest.raises(ConfigError, match="guidance must be in"):
        digits.DigitsDenoiser(guidance=-1.0)


def test_a_missing_or_foreign_weights_file_says_how_to_rebuild_it(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="testtime diffuse train"):
        digits.load(tmp_path / "none.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ModelNotFoundError, match="testtime diffuse train"):
        digits.load(bad)


def test_the_shipped_weights_are_small_and_carry_their_record() -> None:
    from testtime.diffusion.train import WEIGHTS

    assert WEIGHTS.stat().st_size < 2_000_000
    meta = digits.shipped().meta
    assert meta["classifier_test_accuracy"] > 0.95 and meta["config"]["seed"] == 0


def test_training_is_seeded_and_repeats_bit_for_bit(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    cfg = TrainConfig(denoiser_steps=20, classifier_steps=20, batch=32, width=16, blocks=1)
    train(cfg, tmp_path / "a.npz", log=lambda _: None)
    train(cfg, tmp_path / "b.npz", log=lambda _: None)
    a, b = digits.load(tmp_path / "a.npz"), digits.load(tmp_path / "b.npz")
    for x, y in zip(
        a.denoiser.state_dict().values(), b.denoiser.state_dict().values(), strict=True
    ):
        assert torch.equal(x, y)
    assert (tmp_path / "a.npz").read_bytes() != b"" and not list(tmp_path.glob(".*.tmp"))
