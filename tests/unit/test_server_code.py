"""Requests that bring their own tests (testtime.tests), without running any: the flag that
allows them, reading the tests, the verifier they select by, the per-key sandbox seconds, and
the server refusing to start without a sandbox. Runs in the real jail are in
tests/integration/test_server_tests_sandboxed.py."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from testtime.core.cost import Cost
from testtime.core.errors import ConfigError
from testtime.core.types import Candidate, Problem
from testtime.generators.fake import FakeGenerator
from testtime.sandbox import Case, SandboxUnavailable
from testtime.sandbox import jail as jail_module
from testtime.sandbox.problems import spec_of
from testtime.server import Settings, create_app
from testtime.server.errors import ApiError
from testtime.server.limits import Key, Keys, Quota, SandboxCharged
from testtime.server.plan import Plain, Strategic, plan
from testtime.server.schemas import ChatRequest
from testtime.server.work import RequestCode
from testtime.verifiers.base import Scores, Verifier

SERVED = "fake"
USER = [{"role": "user", "content": "Write add(a, b)."}]
TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(2, 2) > 3"]
ON = Settings(SERVED, run_tests=True)


def planned(settings: Settings = ON, **testtime: Any) -> Plain | Strategic:
    body = {"model": SERVED, "messages": USER, "testtime": testtime}
    return plan(ChatRequest.model_validate(body), settings)


def refused(settings: Settings = ON, **testtime: Any) -> ApiError:
    with pytest.raises(ApiError) as info:
        planned(settings, **testtime)
    assert info.value.status == 400 and "\n" not in info.value.message, info.value.message
    return info.value


def test_without_the_flag_a_request_with_tests_is_a_400_naming_the_flag() -> None:
    err = refused(Settings(SERVED), strategy="best_of_n", tests=TESTS, entry_point="add")
    assert "--run-tests" in err.message and err.param == "testtime.tests"


def test_with_the_flag_the_problem_carries_the_tests_and_unit_tests_selects() -> None:
    got = planned(strategy="best_of_n", tests=TESTS, entry_point="add")
    assert isinstance(got, Strategic) and got.verifier is not None
    assert got.verifier.name == "unit_tests"  # the default when tests come and no verifier
    spec = spec_of(got.problem)
    assert spec is not None and spec == got.code and spec.entry == "add"
    assert spec.cases == (Case("add(1, 2)", 3), Case("add(-1, 1)", 0))
    assert spec.script == "assert add(2, 2) > 3\n"


def test_a_test_script_and_public_examples_are_read_too() -> None:
    script = "def check(candidate):\n    assert candidate(1, 2) == 3\n"
    got = planned(
        strategy="best_of_n", tests=script, entry_point="add", examples=["assert add(0, 0) == 0"]
    )
    assert isinstance(got, Strategic) and got.code is not None
    assert got.code.script.rstrip().endswith("check(add)")
    assert got.code.examples == (Case("add(0, 0)", 0),)


def test_a_named_verifier_wins_over_the_default() -> None:
    got = planned(strategy="best_of_n", tests=TESTS, entry_point="add", verifier="public_tests")
    assert isinstance(got, Strategic) and got.verifier is not None
    assert got.verifier.name == "public_tests"


@pytest.mark.parametrize(
    ("testtime", "param", "says"),
    [
        ({"tests": ["assert add(1, 2) == 3", "assert add(1,"]}, "testtime.tests", "test 1"),
        ({"tests": []}, "testtime.tests", "no tests"),
        ({"tests": "   "}, "testtime.tests", "empty"),
        ({"tests": TESTS, "examples": ["assert add(1, 1) == 2j"]}, "testtime.tests", "example 0"),
        ({"tests": TESTS, "entry_point": None}, "testtime.entry_point", "entry_point"),
        ({"tests": TESTS, "entry_point": "not a name"}, "testtime.entry_point", "not a name"),
        ({"tests": TESTS, "entry_point": "def"}, "testtime.entry_point", "'def'"),
        ({"entry_point": "add"}, "testtime.tests", "go with testtime.tests"),
        ({"tests": TESTS, "examples": ["assert add(1, 1) > 1"]}, "testtime.tests", "example 0"),
        ({"tests": TESTS, "examples": ["add(1,"]}, "testtime.tests", "example 0"),
    ],
)
def test_tests_that_cannot_be_read_are_400s_naming_the_problem(
    testtime: dict[str, Any], param: str, says: str
) -> None:
    err = refused(**{"strategy": "best_of_n", "entry_point": "add", **testtime})
    assert err.param == param and says in err.message, err.message


def test_tests_need_a_strategy_that_selects_by_them() -> None:
    err = refused(tests=TESTS, entry_point="add")
    assert "need a strategy" in err.message and "best_of_n" in err.message


@pytest.mark.parametrize("name", ["oracle", "math", "fake"])
def test_other_gold_readers_stay_refused_even_with_tests(name: str) -> None:
    err = refused(strategy="best_of_n", tests=TESTS, entry_point="add", verifier=name)
    assert "gold answer" in err.message


def test_unit_tests_without_tests_is_refused_saying_how_to_use_it() -> None:
    err = refused(Settings(SERVED), strategy="best_of_n", verifier="unit_tests")
    assert "gold answer" in err.message and "unit_tests with testtime.tests" in err.message


def test_a_requests_answers_are_the_code_of_its_entry_point() -> None:
    got = planned(strategy="best_of_n", tests=TESTS, entry_point="add")
    assert isinstance(got, Strategic) and got.code is not None
    task = RequestCode(got.code)
    text = "```python\ndef helper():\n    pass\n```\n```python\ndef add(a, b):\n    return a+b\n```"
    assert task.extract(text) == "def add(a, b):\n    return a+b"
    assert not task.graded(got.problem)  # the tests run only as the verifier, charged
    assert task.same("def add(a,b): return a+b", "def add(a, b):\n    return a + b  # sum")


# -- per-key sandbox seconds ---------------------------------------------------------------
def test_key_files_take_a_sandbox_seconds_cap() -> None:
    keys = Keys.parse({"sk-a": {"name": "alice", "cap_sandbox_seconds": 1.5}, "sk-b": {}})
    assert keys.keys["sk-a"].cap_sandbox_seconds == 1.5
    assert keys.keys["sk-b"].cap_sandbox_seconds is None
    for bad in (-1, "lots", True, float("inf")):
        with pytest.raises(ConfigError, match="cap_sandbox_seconds"):
            Keys.parse({"sk-a": {"cap_sandbox_seconds": bad}})


class Spends(Verifier):
    """A verifier whose every call reports `seconds` of sandbox time."""

    name = "spends"

    def __init__(self, seconds: float) -> None:
        self.seconds, self.calls = seconds, 0

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> Scores:
        self.calls += 1
        return Scores((1.0,) * len(candidates), Cost(sandbox_seconds=self.seconds))


async def test_verifier_calls_are_charged_and_refused_once_the_seconds_are_spent() -> None:
    key = Key("alice", cap_sandbox_seconds=1.0)
    quota = Quota(key)
    inner = Spends(0.6)
    charged = SandboxCharged(inner, quota)
    problem, cands = Problem.from_prompt("q"), [Candidate("x", "x")]
    await charged.score(problem, cands)
    await charged.score(problem, cands)  # 0.6 spent < 1.0: allowed, and it passes the cap
    with pytest.raises(ApiError) as info:
        await charged.score(problem, cands)
    assert info.value.status == 429 and info.value.code == "insufficient_quota"
    assert "alice" in info.value.message and "sandbox seconds" in info.value.message
    assert inner.calls == 2 and key.spent_sandbox_seconds == pytest.approx(1.2)
    quota.close(0, sandbox_seconds=1.5)  # what no call charged is charged at the end
    assert key.spent_sandbox_seconds == pytest.approx(1.5)


# -- fail closed -----------------------------------------------------------------------------
@pytest.fixture
def no_bwrap(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """A PATH without bubblewrap, and no remembered probe of it."""
    monkeypatch.setenv("PATH", str(tmp_path))
    jail_module.probe.cache_clear()
    yield
    jail_module.probe.cache_clear()


def test_an_app_that_runs_tests_refuses_to_start_without_the_sandbox(no_bwrap: Any) -> None:
    with pytest.raises(SandboxUnavailable, match="bubblewrap"):
        create_app(ON, FakeGenerator())
    create_app(Settings(SERVED), FakeGenerator())  # without the flag it needs none


def test_serve_with_run_tests_refuses_to_start_without_the_sandbox(
    no_bwrap: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from testtime.cli import main

    monkeypatch.setattr(sys, "argv", ["testtime", "serve", "-m", "fake", "--run-tests"])
    with pytest.raises(SystemExit) as info:
        main()
    err = capsys.readouterr().err
    assert info.value.code == 2 and "serving" not in err
    assert "bubblewrap" in err and "apt-get install bubblewrap" in err
