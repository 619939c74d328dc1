"""The shipped digit model (no download) through every diffusion strategy and the CLI:
search spends its NFE and raises the reward of "draw a 7" over one plain sample."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from testtime.cli import main
from testtime.core.budget import Budget
from testtime.diffusion.models import open_digits
from testtime.diffusion.run import fill, solve, strategy_spec

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_torch_thread")]
STRATEGIES = ("best_of_n", "zero_order", "path_search", "fk_steering")


@pytest.mark.parametrize("name", STRATEGIES)
def test_each_strategy_fills_an_nfe_budget_and_beats_one_sample(name: str) -> None:
    """At 160 NFE (8 passes of 20 steps) on digits 0-9, the mean reward of the chosen
    image beats a single sample's; the budget is never exceeded."""
    setup = {d: open_digits(d, guidance=0.0) for d in range(10)}
    spec = fill(strategy_spec(name), 160, 1)
    single = strategy_spec("best_of_n", {"n": 1})
    searched, plain = [], []
    for s in setup.values():
        out = solve(s.problem, spec, s.denoiser, s.reward, budget=Budget(nfe=160), judge=s.judge)
        base = solve(s.problem, single, s.denoiser, s.reward, judge=s.judge)
        assert out.result.cost.nfe <= 160 and out.result.chosen is not None
        searched.append(out.result.candidates[out.result.chosen].scores["digit_prob"])
        plain.append(base.result.candidates[0].scores["digit_prob"])
        assert json.loads(json.dumps(out.result.to_dict())) == out.result.to_dict()
    assert sum(searched) / 10 > sum(plain) / 10 + 0.2


def test_the_cli_draws_a_digit_and_writes_grid_and_trace(tmp_path: Path) -> None:
    png, trace = tmp_path / "seven.png", tmp_path / "seven.json"
    cmd = [sys.executable, "-m", "testtime", "diffuse", "--digit", "7", "-s", "fk_steering",
           "--budget", "80 nfe", "--out", str(png), "--trace", str(trace)]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert png.read_bytes()[:4] == b"\x89PNG"
    data = json.loads(trace.read_text())
    assert data["cost"]["nfe"] == 80 and len(data["trace"]["checkpoints"]) == 4
    assert "80 nfe" in res.stderr


def test_the_cli_refuses_bad_input_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for args, message in (
        (["--digit", "12"], "unknown digit 12"),
        (["--digit", "7", "--particles", "0"], "--particles must be a positive number"),
        (["--digit", "7", "--budget", "10 nfe"], "smaller than one denoising pass"),
        (["--digit", "7", "--pipeline", str(tmp_path)], "the digit model is 8x8"),
    ):
        out = tmp_path / "x.png"
        monkeypatch.setattr(sys, "argv", ["testtime", "diffuse", *args, "--out", str(out)])
        with pytest.raises(SystemExit) as done:
            main()
        err = capsys.readouterr().err
        assert done.value.code == 2 and message in err and "Traceback" not in err
        assert not out.exists()
