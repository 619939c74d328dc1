"""`testtime lab` on the fake model: run, resume, ls, report, repeat, and one-line errors."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

from testtime.cli import main
from testtime.cli.lab import ray_flag


@pytest.fixture
def lab(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path):
    store = tmp_path / "lab" / "store.sqlite"

    def call(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["testtime", "lab", *args, "--store", str(store)])
        code = 0
        try:
            main()
        except SystemExit as e:
            code = int(e.code or 0)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    call.store = store  # type: ignore[attr-defined]
    return call


FLAGS = ("run", "-m", "fake", "-n", "5", "--budgets", "1,2,4", "-s", "self_consistency",
         "-s", "best_of_n@self_certainty", "-s", "single:temperature=0",
         "-s", "adaptive_consistency")  # fmt: skip


def test_run_resume_ls_report_repeat(lab, tmp_path: Path) -> None:
    code, out, err = lab(*FLAGS)
    assert code == 0, err
    assert "starting run" in err
    assert "self_consistency" in out and "coverage" in out and "best_of_n[self_certainty]" in out
    reports = lab.store.parent / "reports"
    (run_dir,) = list(reports.iterdir())
    assert (run_dir / "index.html").is_file() and (run_dir / "coverage.png").is_file()
    run_id = run_dir.name

    code, out, err = lab(*FLAGS)  # the same command again: resumes, generates nothing
    assert code == 0 and f"resuming run {run_id}" in err and "0 already" not in err
    assert " units in " not in err  # no unit was generated

    code, out, _ = lab("ls")
    assert code == 0 and "success" in out

    html = run_dir / "index.html"
    html.unlink()
    code, out, _ = lab("report", run_id, "--out", str(tmp_path / "again"))
    assert code == 0 and (tmp_path / "again" / "index.html").is_file()

    code, _, err = lab("run", "--repeat", run_id, "--no-report")
    assert code == 0 and f"{run_id}-r1" in err
    q = "SELECT pool, seed, problem, idx, text FROM samples WHERE run = ? ORDER BY 1, 2, 3, 4"
    with sqlite3.connect(lab.store) as db:
        assert db.execute(q, (run_id,)).fetchall() == db.execute(q, (f"{run_id}-r1",)).fetchall()


def test_yaml_spec(lab, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: mine\nmodel: fake\ntask: {name: arithmetic}\nproblems: 3\nbudgets: [1, 2]\n"
        "strategies:\n  - self_consistency\n  - {name: weighted_majority, verifier: fake}\n"
    )
    code, out, err = lab("run", str(spec))
    assert code == 0, err
    assert "mine-" in err and "weighted_majority[fake]" in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("run", "-m", "fake", "--budgets", "0,4"), ">= 1"),
        (("run", "-m", "fake", "--budgets", "x"), "whole numbers"),
        (("run", "-m", "fake", "-s", "magic"), "unknown strategy 'magic'"),
        (("run", "-m", "no-such-model", "-n", "2"), "no-such-model"),
        (("report", "nope"), "no experiment store"),
        (("run", "missing.yaml"), "cannot read the run spec"),
        (("run", "--repeat", "nope"), "no experiment store"),
    ],
)
def test_bad_input_is_one_line(lab, args: tuple[str, ...], needle: str) -> None:
    code, out, err = lab(*args)
    assert code == 2, out + err
    assert needle in err and "Traceback" not in out + err


def test_bad_yaml_and_unknown_run(lab, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    code, _, err = lab("run", str(bad))
    assert code == 2 and "not valid YAML" in err
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("model: fake\nstrategies: [self_consistency]\nbudget: 4\n")
    code, _, err = lab("run", str(unknown))
    assert code == 2 and "unknown key(s) ['budget']" in err
    assert not lab.store.exists()  # nothing was written for a spec that does not validate
    assert lab("run", *FLAGS[1:5], "--no-report")[0] == 0
    code, _, err = lab("report", "nope")
    assert code == 2 and "no run 'nope'" in err


def test_ray_flag_alone_means_local() -> None:
    assert ray_flag(["lab", "run", "--ray"]) == ["lab", "run", "--ray", "local"]
    assert ray_flag(["lab", "run", "--ray", "--workers", "2"])[3] == "local"
    assert ray_flag(["lab", "run", "--ray", "10.0.0.1:6379"])[3] == "10.0.0.1:6379"
