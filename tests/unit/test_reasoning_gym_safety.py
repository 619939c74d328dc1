"""No reasoning-gym scorer runs model text in the testtime process (issue 13 section 3,
issue 15 section 3).

Nine scorers eval() the answer or hand it to sympy's parse_expr (which eval()s it). Their
answers are evaluated only in the bubblewrap jail, and the scorer grades the value that comes
back. A walk over every scorer's source (its calls, followed into reasoning-gym's own
functions and methods) checks the jailed list is complete and what each jailed scorer calls
is what was reviewed, so a reasoning-gym release that changes either fails here.

The jailed tests run the real sandbox: without bubblewrap they FAIL with the install hint,
unless TESTTIME_NO_SANDBOX_TESTS=1 on a machine that cannot have it.
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import inspect
import os
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest

from testtime.core.errors import ConfigError
from testtime.core.types import Problem
from testtime.sandbox import SandboxUnavailable, probe
from testtime.sandbox import jail as jail_module
from testtime.tasks.base import TASKS
from testtime.tasks.reasoning_gym import JAILED_SCORERS, ReasoningGymTask

# Scorers that call eval() only on text the dataset generated itself, never on the answer
# (read in reasoning-gym 0.1.19): number_sorting evals the gold answer when it is not JSON;
# bitwise_arithmetic evals the problem's own expression to compute the gold value.
REVIEWED_SAFE = {"number_sorting", "bitwise_arithmetic"}
# What each jailed scorer calls (0.1.25): the answer reaches only eval / parse_expr, which the
# jailed copy replaces; diff/simplify/Symbol get the rebuilt value or the dataset's text.
_INTEGRATION = {"sympy.Symbol", "sympy.diff", "sympy.parse_expr", "sympy.simplify"}
REVIEWED_JAILED = {
    "binary_matrix": {"eval"},
    "n_queens": {"eval"},
    "spiral_matrix": {"eval"},
    "string_insertion": {"eval"},
    "countdown": {"sympy.parse_expr"},
    "polynomial_multiplication": {"sympy.parse_expr"},
    "puzzle24": {"sympy.parse_expr"},
    "intermediate_integration": _INTEGRATION,
    "simple_integration": _INTEGRATION,
}
JAILED = sorted(JAILED_SCORERS)

_EVALUATING = {builtins.eval: "eval", builtins.exec: "exec", builtins.compile: "compile"}
_DANGEROUS_MODULES = ("pickle", "marshal", "subprocess", "os", "importlib", "ctypes", "dill")


def _dangerous(obj: Any) -> str | None:
    """What a called object is, if it may run text as code (or reach the system)."""
    try:
        if obj in _EVALUATING:
            return _EVALUATING[obj]
    except TypeError:  # unhashable
        return None
    if obj is builtins.__import__:
        return "__import__"
    module = getattr(obj, "__module__", None) or ""
    if module.split(".")[0] == "sympy":  # parse_expr, sympify, and functions that sympify text
        return f"sympy.{getattr(obj, '__name__', '?')}"
    if module.split(".")[0] in _DANGEROUS_MODULES:
        return f"{module}.{getattr(obj, '__name__', '?')}"
    return None


def _resolve(node: ast.expr, names: dict[str, Any], cls: type) -> Any:
    if isinstance(node, ast.Name):
        return names.get(node.id, getattr(builtins, node.id, None))
    if isinstance(node, ast.Attribute):
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            return inspect.getattr_static(cls, node.attr, None)
        base = _resolve(node.value, names, cls)
        return getattr(base, node.attr, None) if base is not None else None
    return None


def _calls(fn: Any, cls: type, seen: set[Any], found: set[str]) -> None:
    """Add to `found` the dangerous calls reachable from `fn` within reasoning-gym."""
    if isinstance(fn, staticmethod | classmethod):
        fn = fn.__func__
    if isinstance(fn, type) and fn.__module__.startswith("reasoning_gym"):
        cls, fn = fn, fn.__init__
    if not isinstance(fn, types.FunctionType) or fn in seen:
        return
    if not (fn.__module__ or "").startswith("reasoning_gym"):
        return
    seen.add(fn)
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            target = _resolve(node.func, fn.__globals__, cls)
            what = _dangerous(target) if target is not None else None
            if what is not None:
                found.add(what)
            elif target is not None:
                _calls(target, cls, seen, found)


def scorer_calls(dataset: str) -> set[str]:
    from reasoning_gym.factory import DATASETS

    cls = DATASETS[dataset][0]
    found: set[str] = set()
    _calls(inspect.getattr_static(cls, "score_answer"), cls, set(), found)
    return found


def _all_datasets() -> list[str]:
    from reasoning_gym.factory import DATASETS

    return sorted(DATASETS)


def test_the_walk_finds_the_known_eval_scorers() -> None:
    """The walk itself works: it sees the eval() and parse_expr of known scorers."""
    assert "eval" in scorer_calls("spiral_matrix")
    assert "sympy.parse_expr" in scorer_calls("countdown")
    assert scorer_calls("chain_sum") == set()


def test_every_scorer_that_may_run_text_as_code_is_jailed() -> None:
    flagged = {name for name in _all_datasets() if scorer_calls(name)}
    unreviewed = sorted(flagged - set(JAILED_SCORERS) - REVIEWED_SAFE)
    assert not unreviewed, (
        f"reasoning-gym scorers of {unreviewed} call eval/exec/sympy/...: read them and add "
        "them to JAILED_SCORERS (or REVIEWED_SAFE here, with the reason)"
    )
    assert set(JAILED_SCORERS) <= flagged  # a listed one that no longer evaluates: review it


@pytest.mark.parametrize("dataset", JAILED)
def test_each_jailed_scorer_calls_what_was_reviewed(dataset: str) -> None:
    """A release where a jailed scorer calls something new (sympify, a helper that evals)
    fails here: the jailed copy replaces only eval and parse_expr."""
    assert scorer_calls(dataset) == REVIEWED_JAILED[dataset]
    assert JAILED_SCORERS[dataset] in {c.removeprefix("sympy.") for c in scorer_calls(dataset)}


def _payload(marker: Path) -> str:
    return f"__import__('pathlib').Path({str(marker)!r}).touch()"


def _payloads(marker: Path) -> list[str]:
    """Answers that would leave `marker` on the host if they ran here."""
    return [
        _payload(marker),
        f"__import__('os').system('touch {marker}')",
        f"(__import__('os').system('touch {marker}'), 24)[1]",
        repr(_payload(marker)),  # a string: sympy's diff would parse (eval) it here
        # a line on the harness's record fd, without the run's nonce: ignored
        f"[{_payload(marker)}, exec(\"import os, sys; os.write(int(sys.argv[1]), b'{{}}')\")]",
        "x + __import__('os')._exit(0)",
        # a record line nested too deep to decode: must not crash the grading
        "__import__('os').write(int(__import__('sys').argv[1]), b'[' * 200000 + b'\\n')",
    ]


@pytest.fixture(scope="module")
def sandbox() -> None:
    if os.environ.get("TESTTIME_NO_SANDBOX_TESTS") == "1":
        pytest.skip("TESTTIME_NO_SANDBOX_TESTS=1: sandbox tests left out")
    try:
        probe()
    except SandboxUnavailable as exc:
        pytest.fail(f"{exc} (or set TESTTIME_NO_SANDBOX_TESTS=1 where it cannot be installed)")


@pytest.mark.parametrize("dataset", JAILED)
def test_the_payload_runs_under_reasoning_gyms_own_scorer(dataset: str, tmp_path: Path) -> None:
    """Why they are jailed: reasoning-gym's own scorer runs this answer (a marker file)."""
    import reasoning_gym

    data = reasoning_gym.create_dataset(dataset, size=1, seed=0)
    marker = tmp_path / "ran"
    data.score_answer(_payload(marker), data[0])
    assert marker.exists()


def _grade(task: ReasoningGymTask, problem: Problem, answers: list[str]) -> tuple[bool, ...]:
    graded, cost = asyncio.run(task.grade(problem, answers))
    assert cost.sandbox_seconds > 0  # the jails ran and were charged
    return graded


MISSES = 4  # the first answers after the golds are wrong for every dataset


def _honest(dataset: str, problems: list[Problem]) -> list[str]:
    """Answers a model might give: every problem's gold, certain misses of the first problem,
    then other spellings of its gold (right or wrong as the scorer says)."""
    gold = str(problems[0].answer)
    answers = [str(p.answer) for p in problems] + ["0", "x", "", f"2*({gold})"]
    answers += [gold + " + 1", gold[:-1], gold.replace(" ", ""), "[1, 2]", f" {gold}\n"]
    if JAILED_SCORERS[dataset] == "eval":  # partial credit: the scorer evals a Python list
        answers += [repr(gold.split()), repr(list(gold)), repr([gold.split("\n")])]
    return answers


@pytest.mark.parametrize("dataset", JAILED)
def test_jailed_grades_equal_the_scorers_own_on_honest_answers(dataset: str, sandbox: None) -> None:
    """Golds score correct, misses wrong, and each grade is what the dataset's scorer itself
    gives (run here only on these honest answers); check and grade agree."""
    task = ReasoningGymTask(dataset, {}, size=4, seed=0)
    problems = list(task.problems())
    first = problems[0]
    answers = _honest(dataset, problems)
    entry = dict(first.metadata["entry"])
    own = tuple(task._data.score_answer(a.strip(), entry) == 1.0 for a in answers)
    graded = _grade(task, first, answers)
    assert graded == own
    golds = len(problems)
    assert graded[0] and not any(graded[golds : golds + MISSES])
    assert all(_grade(task, p, [str(p.answer)])[0] for p in problems[1:])
    assert task.check(first, answers[0]) and not task.check(first, answers[golds])


@pytest.mark.parametrize("dataset", JAILED)
def test_a_malicious_answer_leaves_no_trace_and_scores_wrong(
    dataset: str, tmp_path: Path, sandbox: None
) -> None:
    task = ReasoningGymTask(dataset, {}, size=1, seed=0)  # no longer refused
    problem = task.problems()[0]
    marker = tmp_path / "ran"
    payloads = _payloads(marker)
    assert _grade(task, problem, payloads) == (False,) * len(payloads)
    assert not task.check(problem, payloads[0])
    assert not marker.exists()
    TASKS.spec("reasoning_gym", {"dataset": dataset})  # the CLI, lab and run files take it


@pytest.mark.parametrize("dataset", ["n_queens", "polynomial_multiplication"])
def test_without_a_sandbox_jailed_datasets_fail_closed(
    dataset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No bwrap: grading raises the sandbox's one-line error, never a silent wrong grade."""

    def missing(bwrap: str = "bwrap") -> tuple[str, str, str]:
        raise SandboxUnavailable(f"cannot run code: bubblewrap (bwrap) is not installed; {bwrap}")

    monkeypatch.setattr(jail_module, "probe", missing)
    task = ReasoningGymTask(dataset, {}, size=1, seed=0)
    problem = task.problems()[0]
    marker = tmp_path / "ran"
    with pytest.raises(SandboxUnavailable, match="bubblewrap") as refused:
        _grade(task, problem, [str(problem.answer), _payload(marker)])
    assert "\n" not in str(refused.value)
    with pytest.raises(SandboxUnavailable):
        task.check(problem, str(problem.answer))
    assert not marker.exists()


def test_a_composite_with_a_jailed_part_is_refused(tmp_path: Path) -> None:
    """A composite calls its part's scorer itself, unjailed: refused, naming the way out."""
    part = {"name": "spiral_matrix", "weight": 1.0, "config": {}}
    with pytest.raises(ConfigError, match="dataset=spiral_matrix"):
        ReasoningGymTask("composite", {"datasets": (part,)}, size=1, seed=0)
    with pytest.raises(ConfigError, match="refused"):
        TASKS.spec("reasoning_gym", {"dataset": "composite", "config": '{"datasets": [' +
                   '{"name": "composite", "weight": 1, "config": {"datasets": [{"name": '
                   '"n_queens", "weight": 1, "config": {}}]}}]}'})  # fmt: skip


def test_the_scoring_here_refuses_a_jailed_scorer_however_the_task_was_built(
    tmp_path: Path,
) -> None:
    """Defence in depth: the in-process scorer path never calls a scorer that runs answers,
    even when the task's dataset name says otherwise."""
    import reasoning_gym

    task = ReasoningGymTask("chain_sum", {}, size=1, seed=0)
    problem = task.problems()[0]
    task._data = reasoning_gym.create_dataset("string_insertion", size=1, seed=0)
    marker = tmp_path / "ran"
    entry = task._data[0]
    problem = type(problem)(problem.messages, answer=entry["answer"], id=problem.id,
                            metadata={"entry": entry})  # fmt: skip
    with pytest.raises(ConfigError, match="refused"):
        task.check(problem, _payload(marker))
    assert not marker.exists()


def test_safe_datasets_still_score_here() -> None:
    task = ReasoningGymTask("chain_sum", {}, size=2, seed=0)
    problem = task.problems()[0]
    assert task.check(problem, problem.answer)
    assert not task.check(problem, "__import__('os')")
    graded, cost = asyncio.run(task.grade(problem, [problem.answer, "nope"]))
    assert graded == (True, False) and cost.sandbox_seconds == 0
