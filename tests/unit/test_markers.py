"""The suite splits in two: `-m "not integration"` (fakes, fast) and `-m integration` (the
real model, a real server, vLLM or Ray), each runnable on its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parents[1]


def collected(marker: str, folder: Path) -> str:
    """What pytest would run under `-m marker` in `folder` (collected, never run)."""
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    got = subprocess.run(
        [*command, "-m", marker, str(folder)], capture_output=True, text=True, timeout=120
    )
    return got.stdout


def test_not_integration_leaves_out_every_integration_test() -> None:
    got = collected("not integration", TESTS / "integration")
    assert "::" not in got and "no tests collected" in got and "deselected" in got, got
