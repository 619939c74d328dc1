"""bench/sandbox.py at a tiny size, so the bench cannot rot: both ways run every solution
and give the same verdicts (no timing asserted). Needs bwrap, like the attack tests."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

if os.environ.get("TESTTIME_NO_SANDBOX_TESTS") == "1":
    pytest.skip("TESTTIME_NO_SANDBOX_TESTS=1: sandbox tests left out", allow_module_level=True)

BENCH = Path(__file__).resolve().parents[2] / "bench" / "sandbox.py"


def _bench() -> ModuleType:
    module = sys.modules.get("bench_sandbox")
    if module is None:
        spec = importlib.util.spec_from_file_location("bench_sandbox", BENCH)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_sandbox"] = module  # dataclasses look their module up here
        spec.loader.exec_module(module)
    return module


def test_sandbox_and_bare_subprocess_agree_on_every_solution() -> None:
    bench = _bench()
    row = bench.compare("sequential", rounds=1, repeat=1)
    assert row.agree, row.mismatch
    assert row.executions == len(bench.SOLUTIONS)
    assert len(row.wall["sandbox"]) == len(row.wall["bare"]) == 1
    verdicts = [bench.outcome(bench.bare(code, cases))[0] for _, code, cases in bench.SOLUTIONS]
    assert sorted(set(verdicts)) == ["failed", "passed"]  # the wrong and the raising one fail


def test_the_execution_share_measures_the_scoring_spans() -> None:
    bench = _bench()
    assert bench.covered([(0.0, 2.0), (1.0, 3.0), (5.0, 6.0)]) == 4.0  # overlaps count once
    row = bench.share("public_tests", 2, "fake", "pyfunc")
    assert row.problems == 2 and row.wall > 0 and 0 <= row.scoring <= row.wall
