"""A real `testtime lab run` on the embedded model, killed with SIGKILL mid-way and run
again: it resumes, keeps every row stored before the kill, and ends with exactly the
expected rows, none twice, in a store that passes SQLite's integrity check."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SPEC = """\
name: killed
model: smollm2-135m
task: arithmetic
problems: 6
budgets: [1, 2, 4, 8]
pool: 16
max_tokens: 64
concurrency: 2
strategies:
  - self_consistency
  - {name: adaptive_consistency, budgets: [4]}
"""
SAMPLES, RESULTS = 6 * 16, 6


def _count(path: Path, table: str) -> int:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    except sqlite3.Error:
        return 0  # not created yet


def _lab(spec: Path, store: Path) -> list[str]:
    exe = Path(sys.executable).parent / "testtime"
    return [str(exe), "lab", "run", str(spec), "--store", str(store), "--no-report"]


def test_sigkill_mid_run_then_resume(tmp_path: Path) -> None:
    spec, store = tmp_path / "spec.yaml", tmp_path / "store.sqlite"
    spec.write_text(SPEC)
    proc = subprocess.Popen(_lab(spec, store), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while _count(store, "samples") < 8 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _count(store, "samples")
    assert 8 <= before < SAMPLES, "the kill did not land mid-run"
    with sqlite3.connect(store) as db:
        kept = db.execute(
            "SELECT pool, problem, idx, text FROM samples ORDER BY 1, 2, 3"
        ).fetchall()
        assert db.execute("SELECT status FROM runs").fetchone()[0] == "started"

    done = subprocess.run(_lab(spec, store), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "resuming run killed-" in done.stderr
    with sqlite3.connect(store) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT status FROM runs").fetchone()[0] == "success"
        assert _count(store, "samples") == SAMPLES and _count(store, "results") == RESULTS
        keys = db.execute(
            "SELECT count(*) FROM (SELECT DISTINCT pool, seed, problem, idx FROM samples)"
        ).fetchone()[0]
        assert keys == SAMPLES  # no sample twice
        indices = db.execute(
            "SELECT problem, group_concat(idx) FROM (SELECT * FROM samples ORDER BY idx)"
            " GROUP BY problem"
        ).fetchall()
        assert all(ix == ",".join(map(str, range(16))) for _, ix in indices)  # none missing
        for row in kept:  # what was stored before the kill is untouched
            got = db.execute(
                "SELECT pool, problem, idx, text FROM samples WHERE pool = ? AND problem = ?"
                " AND idx = ?", row[:3],
            ).fetchone()  # fmt: skip
            assert tuple(got) == tuple(row)
