"""The code keeps its shape: DESIGN.md's layers (import-linter), ruff and mypy clean."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; run `make install`")
    return found


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_layers_import_only_downwards() -> None:
    res = _run(_tool("lint-imports"))
    assert res.returncode == 0, res.stdout + res.stderr


def test_ruff_clean() -> None:
    res = _run(_tool("ruff"), "check", "src", "tests", "bench")
    assert res.returncode == 0, res.stdout + res.stderr


def test_mypy_strict_clean() -> None:
    res = _run(_tool("mypy"))
    assert res.returncode == 0, res.stdout + res.stderr


def test_no_test_module_name_is_used_twice() -> None:
    """pytest imports test modules by basename (rootdir-relative, no packages): two
    modules of one name under tests/ stop a full run at collection ("import file
    mismatch"), which no run of a single directory shows."""
    seen: dict[str, Path] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        assert path.name not in seen, f"{path} and {seen[path.name]} share a name; rename one"
        seen[path.name] = path
