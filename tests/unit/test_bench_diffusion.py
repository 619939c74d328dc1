"""bench/diffusion.py at a tiny size, so the bench cannot rot: both ways run, the single way
really calls the denoiser one particle at a time, and the two agree (no timing asserted)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

BENCH = Path(__file__).resolve().parents[2] / "bench" / "diffusion.py"


def _bench() -> ModuleType:
    module = sys.modules.get("bench_diffusion")
    if module is None:
        spec = importlib.util.spec_from_file_location("bench_diffusion", BENCH)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_diffusion"] = module  # dataclasses look their module up here
        spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("model", "strategy"),
    [("digits", "fk_steering"), ("digits", "best_of_n"), ("gmm", "fk_steering")],
)
def test_batched_and_single_agree_and_differ_only_in_call_size(model: str, strategy: str) -> None:
    particles, steps = 2, 2
    row = _bench().compare(model, strategy, particles, steps=steps, rounds=2)
    assert row.same_choice
    assert row.max_diff < 1e-5
    assert row.batched.nfe == row.single.nfe == particles * steps
    assert (row.batched.calls, row.single.calls) == (steps, particles * steps)
    assert len(row.ratios("wall")) == 2 and all(r > 0 for r in row.ratios("net"))


def test_outputs_that_differ_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = _bench()
    once = bench.once

    def other_seed_when_single(*args: object) -> object:  # a "single" way that samples apart
        name, strategy, particles, steps, max_batch, seed, guidance = args
        return once(name, strategy, particles, steps, max_batch, seed + (max_batch == 1), guidance)

    monkeypatch.setattr(bench, "once", other_seed_when_single)
    row = bench.compare("digits", "fk_steering", 4, steps=2, rounds=1)
    assert row.max_diff > 0.1
