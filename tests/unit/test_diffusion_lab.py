"""Diffusion runs in the lab store: specs validated up front, every unit stored once, a
crashed run resumes without losing or repeating a unit, reports rebuilt from the store."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from testtime.cli import main
from testtime.core.errors import ConfigError
from testtime.lab.data.rows import Unit
from testtime.lab.data.store import open_store
from testtime.lab.execution import diffusion as dlab
from testtime.lab.reports import diffusion as rep

SPEC = {
    "kind": "diffusion", "name": "tiny", "digits": [3, 7], "repeats": 2, "steps": 5,
    "budgets": [5, 10], "strategies": ["best_of_n", {"name": "fk_steering", "label": "fk"}],
}  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "llm"}, "kind: diffusion"),
        ({"pool": 4}, r"unknown key\(s\) \['pool'\]"),
        ({"digits": [1, 10]}, "digits 0-9"),
        ({"budgets": [0]}, "positive whole numbers of nfe"),
        ({"budgets": [4]}, "best_of_n needs at least 5 nfe per problem"),
        ({"strategies": ["best_of_n", "best_of_n"]}, "labels must be unique"),
        ({"strategies": [{"name": "fk_steering", "params": {"particles": 0}}]}, "'particles'"),
        ({"strategies": []}, "at least one diffusion strategy"),
    ],
)
def test_bad_specs_are_refused_before_anything_runs(change, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        dlab.parse_diffusion_spec({**SPEC, **change})


def test_a_crashed_run_resumes_with_every_unit_stored_once(tmp_path: Path) -> None:
    spec = dlab.parse_diffusion_spec(SPEC)
    total = dlab.units(spec)
    assert total == 4 * 2 * 2  # problems x budgets x arms
    done: list[Unit] = []

    def crash(unit: Unit) -> None:
        done.append(unit)
        if len(done) == 5:
            raise KeyboardInterrupt

    with open_store(tmp_path / "s.sqlite") as store:
        with pytest.raises(KeyboardInterrupt):
            dlab.run(store, spec, json.dumps(SPEC), on_unit=crash)
        assert store.run(spec.run_id)["status"] == "cancelled"
        resumed: list[Unit] = []
        dlab.run(store, spec, json.dumps(SPEC), on_unit=resumed.append)
        assert len(resumed) == total - 5 and not set(resumed) & set(done)
        assert store.run(spec.run_id)["status"] == "success"
        again: list[Unit] = []
        dlab.run(store, spec, json.dumps(SPEC), on_unit=again.append)
        assert again == []
        points = rep.analyse(store, spec.run_id)
        same = rep.compare(store, spec.run_id, "fk", "fk")
        assert [(b, acc[0], rew[0]) for b, acc, rew in same] == [(5, 0.0, 0.0), (10, 0.0, 0.0)]
        assert len(rep.compare(store, spec.run_id, "fk", "best_of_n")) == 2
        with pytest.raises(ConfigError, match=r"no arm 'nope'; its arms: \['best_of_n', 'fk'\]"):
            rep.compare(store, spec.run_id, "nope", "fk")
    assert [(p.arm, p.budget) for p in points] == [("best_of_n", 5), ("best_of_n", 10),
                                                   ("fk", 5), ("fk", 10)]  # fmt: skip
    for p in points:
        assert p.problems == 4 and p.nfe <= p.budget
        assert p.accuracy[1] <= p.accuracy[0] <= p.accuracy[2]
        assert p.reward[1] <= p.reward[0] <= p.reward[2]
    pngs = rep.write_plots(points, tmp_path / "report", "tiny")
    assert all(path.read_bytes()[:4] == b"\x89PNG" for path in pngs)


def test_llm_reports_refuse_diffusion_runs_and_back(tmp_path: Path) -> None:
    from testtime.lab.analysis.replay import analyse

    spec = dlab.parse_diffusion_spec({**SPEC, "digits": [1], "repeats": 1, "budgets": [5]})
    with open_store(tmp_path / "s.sqlite") as store:
        dlab.run(store, spec, "{}")
        with pytest.raises(ConfigError):
            analyse(store, spec.run_id)


def test_report_run_gives_each_kind_of_run_its_own_report(tmp_path: Path) -> None:
    from rich.table import Table

    from testtime.lab.data.spec import parse_spec
    from testtime.lab.execution import runner
    from testtime.lab.reports import report_run

    nfe = dlab.parse_diffusion_spec({**SPEC, "digits": [1], "repeats": 1, "budgets": [5]})
    llm = parse_spec({"name": "t", "model": "fake", "problems": 3, "budgets": [1, 2],
                      "strategies": ["self_consistency"]})  # fmt: skip
    with open_store(tmp_path / "s.sqlite") as store:
        dlab.run(store, nfe, "{}")
        plan = runner.prepare(store, llm, "{}")
        runner.execute(store, llm, plan, lambda: runner.run_local(store, llm, plan))
        drawn = report_run(store, nfe.run_id, tmp_path / "nfe")
        replayed = report_run(store, llm.run_id, tmp_path / "llm")
    assert isinstance(drawn[0], Table) and "against NFE" in str(drawn[0].title)
    assert drawn[1:] == [
        f"plot: {tmp_path / 'nfe' / f}" for f in ("accuracy_nfe.png", "reward_nfe.png")
    ]
    assert isinstance(replayed[0], Table) and f"run {llm.run_id}" in str(replayed[0].title)
    assert replayed[-1] == f"report: {tmp_path / 'llm' / 'index.html'}"
    assert (tmp_path / "llm" / "coverage.png").is_file()
    assert not (tmp_path / "llm" / "reward_nfe.png").exists()


def test_lab_commands_route_or_refuse_a_diffusion_run(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from testtime.cli import app

    spec = dlab.parse_diffusion_spec({**SPEC, "digits": [1], "repeats": 1, "budgets": [5]})
    db = tmp_path / "s.sqlite"
    with open_store(db) as store:
        dlab.run(store, spec, "{}")
    cli = CliRunner()
    shown = cli.invoke(app, ["lab", "report", spec.run_id, "--store", str(db)])
    assert shown.exit_code == 0 and (tmp_path / "reports" / spec.run_id / "reward_nfe.png").exists()
    for args in (["lab", "run", "--repeat", spec.run_id], ["lab", "allocate", spec.run_id]):
        refused = cli.invoke(app, [*args, "--store", str(db)])
        assert isinstance(refused.exception, ConfigError) and "diffusion run" in str(
            refused.exception
        )


def test_the_cli_shows_a_diffusion_strategy_by_its_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["testtime", "diffuse", "--digit", "3", "--steps", "5", "--budget", "10 nfe",
            "--out", str(tmp_path / "grid.png")]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code in (0, None)
    got = capsys.readouterr()
    assert "diffusion strategy best_of_n(steps=5" in got.out  # not LLM best-of-N
    assert "n=2)" in got.out and "10 nfe" in got.err  # the width the budget filled
