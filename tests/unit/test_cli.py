"""The CLI on the fake model: listings, runs, JSON output, and one-line errors for bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from testtime.cli import main


def cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["testtime", *args])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = int(e.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    return lambda *args: cli(monkeypatch, capsys, *args)


@pytest.mark.parametrize("what", ["strategies", "verifiers", "tasks"])
def test_listings_show_every_registered_name(run, what: str) -> None:
    code, out, _ = run(what)
    assert code == 0
    expected = {
        "strategies": [
            "single",
            "best_of_n",
            "self_consistency",
            "weighted_majority",
            "best_of_majority",
            "first_finish",
            "adaptive_consistency",
        ],
        "verifiers": ["oracle", "math", "self_certainty", "judge"],
        "tasks": ["reasoning_gym", "jsonl", "arithmetic"],
    }[what]
    for name in expected:
        assert name in out


def test_strategies_listing_shows_defaults(run) -> None:
    code, out, _ = run("strategies")
    assert code == 0 and "temperature=" in out


def test_run_prompt_json_has_answer_correct_cost(run) -> None:
    code, out, _ = run(
        "run",
        "What is 3 + 4?",
        "--answer",
        "7",
        "--model",
        "fake",
        "-s",
        "self_consistency",
        "-p",
        "n=4",
        "--json",
    )
    assert code == 0, out
    data = json.loads(out)
    assert {"answer", "correct", "cost"} <= set(data)
    assert data["cost"]["samples"] == 4
    assert data["correct"] in (True, False)


def test_run_task_json_reports_accuracy(run) -> None:
    code, out, _ = run(
        "run", "--task", "arithmetic", "-n", "3", "--model", "fake", "-s", "single", "--json"
    )
    assert code == 0, out
    data = json.loads(out)
    assert len(data["results"]) == 3
    assert all({"answer", "correct", "cost"} <= set(r) for r in data["results"])
    assert 0.0 <= data["accuracy"] <= 1.0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "hi", "--model", "fake", "-s", "nope"], "unknown strategy 'nope'"),
        (["run", "hi", "--model", "fake", "-p", "bogus=1"], "has no parameter 'bogus'"),
        (["run", "hi", "--model", "fake", "-p", "n=many"], "parameter 'n' must be"),
        (["run", "hi", "--model", "fake", "-p", "n=0"], "'n'"),
        (["run", "hi", "--model", "fake", "-s", "single", "-p", "temperature=-1"], "temperature"),
        (["run", "hi", "--model", "fake", "-s", "single", "-p", "top_p=1.5"], "top_p"),
        (["run", "", "--model", "fake"], "empty prompt"),
        (["run", "hi", "--model", "fake", "--budget", "0"], "budget"),
        (["run", "hi", "--model", "fake", "--budget", "-3 tokens"], "budget"),
        (["run", "hi", "--model", "fake", "--budget", "lots"], "budget"),
        (["run", "--task", "nope", "--model", "fake"], "unknown task 'nope'"),
        (["run", "hi", "--model", "no-such-model"], "no-such-model"),
        (["run", "hi", "--model", "fake", "-v", "nope"], "unknown verifier 'nope'"),
        # checked before the model loads, like the strategy's parameters
        (["run", "hi", "--model", "no-such-model", "-v", "nope"], "unknown verifier 'nope'"),
        (["run", "hi", "--task", "arithmetic", "--model", "fake"], "not both"),
    ],
)
def test_bad_input_is_one_clear_line(run, args: list[str], needle: str) -> None:
    code, out, err = run(*args)
    assert code == 2
    assert needle in err
    assert "Traceback" not in err + out


def test_bad_jsonl_names_the_line_and_writes_nothing(run, tmp_path: Path) -> None:
    path = tmp_path / "probs.jsonl"
    path.write_text('{"prompt": "1+1?", "answer": "2"}\n{not json}\n')
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run(
        "run", "--task", "jsonl", "--task-param", f"path={path}", "--model", "fake", "--json"
    )
    assert code == 2
    assert "probs.jsonl:2:" in err or "line 2" in err
    assert len(err.strip().splitlines()) == 1  # one line, not wrapped
    assert out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_trace_file_holds_every_candidate_and_the_search_trace(run, tmp_path: Path) -> None:
    path = tmp_path / "trace.json"
    code, _, err = run("run", "--model", "fake", "--task", "arithmetic", "-n", "2",
                       "-s", "beam_search", "-p", "n=4", "-p", "width=2", "-v", "step_check",
                       "--trace", str(path))  # fmt: skip
    assert code == 0, err
    data = json.loads(path.read_text())
    assert len(data) == 2 and data[0]["trace"]["rounds"]
    assert all(c["steps"] for c in data[0]["candidates"])
    assert [p.name for p in tmp_path.iterdir()] == ["trace.json"]  # no temp file left


@pytest.mark.parametrize("command", ["run", "serve"])
def test_the_model_option_names_every_backends_form_and_the_one_default(command: str) -> None:
    import typer.main

    from testtime.cli import app
    from testtime.generators.backends import BACKENDS
    from testtime.generators.models import DEFAULT_MODEL

    group = typer.main.get_command(app)
    cmd = group.commands[command]  # type: ignore[attr-defined]
    (option,) = [p for p in cmd.params if p.name == "model"]
    assert all(b.usage in option.help for b in BACKENDS.all())  # a served URL too
    assert option.default == DEFAULT_MODEL


def test_answers_print_as_text_and_sandbox_time_is_costed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from testtime.cli.run import _print_cost, _print_table
    from testtime.core.cost import Cost
    from testtime.core.types import Result

    result = Result("p", "List[int]", (), Cost(samples=1), {})
    _print_table([result], "single")
    _print_cost(Cost(samples=2, sandbox_seconds=0.25))
    captured = capsys.readouterr()
    assert "List[int]" in captured.out
    assert "0.25 s of code in the sandbox" in " ".join(captured.err.split())


def test_seconds_are_labelled_as_summed_over_calls(capsys: pytest.CaptureFixture[str]) -> None:
    """Cost.seconds adds each call's wall time (concurrent calls overlap): a tournament's 64 s
    of calls in a 20 s run is not time spent against a 30 s deadline."""
    from testtime.cli.run import _print_cost, budget_line
    from testtime.core.budget import Budget
    from testtime.core.cost import Cost
    from testtime.core.types import Result
    from testtime.strategies.base import STRATEGIES

    result = Result("p", "x", (), Cost(samples=4, seconds=64.0), {})
    line = budget_line(Budget(seconds=30), [result], STRATEGIES.spec("tournament", {"n": 4}))
    _print_cost(result.cost)
    err = " ".join(capsys.readouterr().err.split())
    assert "64.0 s in calls (summed over calls) under a 30 s deadline" in line
    assert "of 30 seconds" not in line
    assert "64.0 s in calls (summed over calls and problems)" in err
