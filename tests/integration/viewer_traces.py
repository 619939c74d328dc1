"""Traces for the trace viewer's tests (issue 18), made the user's way: `testtime run ...
--trace FILE` on the fake model and verifiers, `testtime diffuse --trace FILE` on the
embedded digit model (10 steps, 4 particles: well under a second), and a lab store whose
results rows hold a beam search's trace. Shared by tests/unit/test_view_trace_api.py and
tests/integration/test_view_traces.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any
from unittest import mock

from testtime.cli import main
from testtime.lab.data.spec import parse_spec
from testtime.lab.data.store import open_store
from testtime.lab.execution import runner

RUNS = {
    "beam_search": ["-s", "beam_search", "-p", "n=4", "-p", "width=2", "-v", "step_check"],
    "mcts": ["-s", "mcts", "-p", "iterations=6", "-p", "expand=2", "-v", "step_check"],
    "particle_filtering": ["-s", "particle_filtering", "-p", "particles=4", "-v", "step_check"],
    "self_consistency": ["-s", "self_consistency", "-p", "n=6"],
    "tournament": ["-s", "tournament", "-p", "n=5"],
}
FK = ["diffuse", "--digit", "7", "-s", "fk_steering", "--particles", "4", "--steps", "10"]
STORED_SPEC = {
    "name": "viewer", "model": "fake", "task": {"name": "arithmetic"}, "problems": 2,
    "budgets": [4], "strategies": [
        {"name": "beam_search", "verifier": {"name": "step_check"}, "params": {"width": 2}},
    ],
}  # fmt: skip


def cli(*args: str) -> None:
    """Run `testtime ARGS` in this process; a non-zero exit fails the test."""
    with mock.patch.object(sys, "argv", ["testtime", *args]):
        try:
            main()
        except SystemExit as e:
            assert not e.code, f"testtime {' '.join(args)} exited with {e.code}"


def make_traces(folder: Path) -> dict[str, Path]:
    """Every kind of trace file, by strategy name (fk_steering: the diffusion run)."""
    out = {}
    for name, args in RUNS.items():
        out[name] = folder / f"{name}.json"
        cli("run", "--model", "fake", "--task", "arithmetic", "-n", "2", *args,
            "--trace", str(out[name]))  # fmt: skip
    out["fk_steering"] = folder / "fk_steering.json"
    cli(*FK, "--out", str(folder / "fk.png"), "--trace", str(out["fk_steering"]))
    return out


def make_store(folder: Path) -> tuple[Path, str]:
    """A lab store with a beam search's results (two problems) and its run id."""
    path = folder / "store.db"
    spec = parse_spec(STORED_SPEC)
    with open_store(path) as db:
        plan = runner.prepare(db, spec, json.dumps(STORED_SPEC))
        runner.execute(db, spec, plan, lambda: runner.run_local(db, spec, plan))
        run_id = str(db.runs()[-1]["id"])
    return path, run_id


def load(path: Path) -> Any:
    return json.loads(path.read_text())
