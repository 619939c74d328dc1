"""Learned probes: logistic regression fitted exactly, saved and loaded whole, trained from
a lab run through the CLI, and used as a process verifier."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np
import pytest

from testtime.cli import main
from testtime.core.errors import ConfigError, DataError
from testtime.core.types import Candidate, Problem
from testtime.generators.fake import FakeGenerator
from testtime.strategies.run import build_verifier
from testtime.verifiers.probe import Probe, fit_probe


def test_fit_separates_and_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    y = (x[:, 0] - 0.5 * x[:, 2] + rng.normal(scale=0.3, size=400) > 0).astype(float)
    probe = fit_probe(x, y, meta={"model": "m"})
    assert ((probe.predict(x) >= 0.5) == y).mean() > 0.9
    assert probe.w[0] > 0 > probe.w[2]
    path = tmp_path / "p.npz"
    probe.save(path)
    back = Probe.load(path)
    assert np.allclose(back.predict(x), probe.predict(x)) and back.meta == {"model": "m"}
    assert [p.name for p in tmp_path.iterdir()] == ["p.npz"]
    with pytest.raises(DataError, match="both correct and incorrect"):
        fit_probe(x, np.ones(400))
    (tmp_path / "junk.npz").write_bytes(b"nope")
    with pytest.raises(DataError, match="not a probe file"):
        Probe.load(tmp_path / "junk.npz")


def _cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(sys, "argv", ["testtime", *args])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = int(e.code or 0)
    got = capsys.readouterr()
    return code, got.out + got.err


def test_train_a_probe_from_a_run_and_score_steps_with_it(monkeypatch, capsys, tmp_path) -> None:
    store, out = tmp_path / "s.db", tmp_path / "probe.npz"
    code, text = _cli(monkeypatch, capsys, "lab", "run", "-m", "fake", "-n", "20", "--pool", "16",
                      "-s", "self_consistency", "--budgets", "1,16", "--no-report",
                      "--store", str(store))  # fmt: skip
    assert code == 0, text
    run_id = next(line.split()[2].rstrip(":") for line in text.splitlines() if "run " in line)
    code, text = _cli(monkeypatch, capsys, "verifiers", "train-probe", run_id, "--store",
                      str(store), "--out", str(out))  # fmt: skip
    assert code == 0, text
    assert "probe trained on 320 samples" in text
    verifier = build_verifier("probe", {"path": str(out)}, generator=FakeGenerator())
    problem = Problem.from_prompt("What is 3 + 4?", answer="7", id="q")
    got = asyncio.run(verifier.score_steps(problem, [Candidate("3 + 4 = 7\n\nAnswer: 7")]))
    assert len(got.values[0]) == 2 and all(0 < s < 1 for s in got.values[0])
    assert got.cost.verifier_calls == 2
    other = FakeGenerator()
    other.name = "another-model"
    with pytest.raises(ConfigError, match="trained on model 'fake'"):
        build_verifier("probe", {"path": str(out)}, generator=other)
    code, text = _cli(
        monkeypatch, capsys, "verifiers", "train-probe", "nope", "--store", str(store)
    )
    assert code == 2 and "no run 'nope'" in text
    code, text = _cli(monkeypatch, capsys, "verifiers")
    assert code == 0 and "step_check" in text and "probe" in text
