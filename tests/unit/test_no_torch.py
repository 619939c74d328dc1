"""The CLI and the lab without torch: only the parts that run a model need it. The commands
run in a fresh interpreter where torch, transformers and diffusers cannot be imported (as if
not installed), on a store made by the fake model and one made by the digit model."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

# Runs each argv (a JSON list of lists) through the CLI and prints each exit code, as JSON.
CLI = """
import json, sys
for name in ("torch", "transformers", "diffusers"):
    sys.modules[name] = None  # importing it now raises ModuleNotFoundError, as if absent
from testtime.cli import main
codes = []
for argv in json.loads(sys.argv[1]):
    sys.argv = ["testtime", *argv]
    try:
        main()
        codes.append(0)
    except SystemExit as e:
        codes.append(e.code if isinstance(e.code, int) else 1)
print("CODES", json.dumps(codes))
"""


def without_torch(*argvs: list[str], cwd: Path) -> tuple[list[int], str]:
    done = subprocess.run(
        [sys.executable, "-c", CLI, json.dumps(argvs)],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert "CODES" in done.stdout, done.stderr[-3000:]
    return json.loads(done.stdout.rsplit("CODES", 1)[1]), done.stdout + done.stderr


def test_listing_and_the_lab_on_the_fake_model_need_no_torch(tmp_path: Path) -> None:
    store = ["--store", str(tmp_path / "lab" / "store.sqlite")]
    run = ["lab", "run", "-m", "fake", "-n", "3", "--budgets", "1,2", "-s", "self_consistency",
           "--name", "nt", "--no-report", *store]  # fmt: skip
    listing = [["--help"], ["strategies"], ["verifiers"], ["tasks"], ["models"], ["lab", "--help"]]
    codes, output = without_torch(*listing, run, ["lab", "ls", *store], cwd=tmp_path)
    assert codes == [0] * 8, output
    assert "self_consistency" in output and "smollm2-135m" in output and "success" in output
    with sqlite3.connect(tmp_path / "lab" / "store.sqlite") as db:
        ((run_id,),) = db.execute("SELECT id FROM runs").fetchall()

    out = tmp_path / "report"
    codes, output = without_torch(
        ["lab", "report", run_id, *store, "--out", str(out)],
        ["lab", "across", run_id, *store],
        ["lab", "efficiency", run_id, "self_consistency", "-a", "self_consistency", *store],
        cwd=tmp_path,
    )
    assert codes == [0, 0, 0], output
    assert (out / "index.html").is_file() and "coverage" in output


def test_a_stored_diffusion_run_reports_without_torch(tmp_path: Path) -> None:
    from testtime.lab.data.store import open_store
    from testtime.lab.execution import diffusion as dlab

    data = {"kind": "diffusion", "name": "tiny", "digits": [3], "repeats": 2, "steps": 4,
            "budgets": [4], "strategies": ["best_of_n"]}  # fmt: skip
    path = tmp_path / "store.sqlite"
    with open_store(path) as db:
        run_id = dlab.run(db, dlab.parse_diffusion_spec(data), json.dumps(data))
    codes, output = without_torch(
        ["lab", "report", run_id, "--store", str(path), "--out", str(tmp_path / "r")],
        cwd=tmp_path,
    )
    assert codes == [0], output
    assert (tmp_path / "r" / "accuracy_nfe.png").is_file()
