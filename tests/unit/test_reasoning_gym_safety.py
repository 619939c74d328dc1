"""No reasoning-gym scorer runs model text in the testtime process (issue 13, section 3).

Several scorers eval() the answer or hand it to sympy's parse_expr (which eval()s it). Those
datasets are refused; a walk over every scorer's source (its calls, followed into
reasoning-gym's own functions and methods) checks the refused list is complete, so a new
reasoning-gym release that adds such a scorer fails here until it is reviewed.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest

from testtime.core.errors import ConfigError
from testtime.tasks.base import TASKS
from testtime.tasks.reasoning_gym import UNSAFE_SCORERS, ReasoningGymTask

# Scorers that call eval() only on text the dataset generated itself, never on the answer
# (read in reasoning-gym 0.1.19): number_sorting evals the gold answer when it is not JSON;
# bitwise_arithmetic evals the problem's own expression to compute the gold value.
REVIEWED_SAFE = {"number_sorting", "bitwise_arithmetic"}

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


def test_every_scorer_that_may_run_text_as_code_is_refused() -> None:
    flagged = {name for name in _all_datasets() if scorer_calls(name)}
    unreviewed = sorted(flagged - set(UNSAFE_SCORERS) - REVIEWED_SAFE)
    assert not unreviewed, (
        f"reasoning-gym scorers of {unreviewed} call eval/exec/sympy/...: read them and add "
        "them to UNSAFE_SCORERS (or REVIEWED_SAFE here, with the reason)"
    )
    assert set(UNSAFE_SCORERS) <= flagged  # a listed one that no longer evaluates: review it


def _payload(marker: Path) -> str:
    return f"__import__('pathlib').Path({str(marker)!r}).touch()"


@pytest.mark.parametrize("dataset", sorted(UNSAFE_SCORERS))
def test_the_payload_runs_under_reasoning_gyms_own_scorer(dataset: str, tmp_path: Path) -> None:
    """Why they are refused: reasoning-gym's own scorer runs this answer (a marker file)."""
    import reasoning_gym

    data = reasoning_gym.create_dataset(dataset, size=1, seed=0)
    marker = tmp_path / "ran"
    data.score_answer(_payload(marker), data[0])
    assert marker.exists()


@pytest.mark.parametrize("dataset", sorted(UNSAFE_SCORERS))
def test_a_malicious_answer_has_no_effect(dataset: str, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(ConfigError, match=r"refused: .*sandbox") as refused:
        task = ReasoningGymTask(dataset, {}, size=1, seed=0)
        task.check(task.problems()[0], _payload(marker))
    assert not marker.exists()
    assert "\n" not in str(refused.value)
    with pytest.raises(ConfigError, match="refused"):
        TASKS.spec("reasoning_gym", {"dataset": dataset})  # the CLI, lab and run files


def test_a_composite_of_an_unsafe_dataset_is_refused(tmp_path: Path) -> None:
    part = {"name": "spiral_matrix", "weight": 1.0, "config": {}}
    with pytest.raises(ConfigError, match="spiral_matrix"):
        ReasoningGymTask("composite", {"datasets": (part,)}, size=1, seed=0)
    with pytest.raises(ConfigError, match="refused"):
        TASKS.spec("reasoning_gym", {"dataset": "composite", "config": '{"datasets": [' +
                   '{"name": "composite", "weight": 1, "config": {"datasets": [{"name": '
                   '"n_queens", "weight": 1, "config": {}}]}}]}'})  # fmt: skip


def test_the_scoring_path_refuses_an_unsafe_scorer_however_the_task_was_built(
    tmp_path: Path,
) -> None:
    """Defence in depth: check() never calls an unsafe scorer, even past the constructor."""
    import reasoning_gym

    task = ReasoningGymTask("chain_sum", {}, size=1, seed=0)
    problem = task.problems()[0]
    task.dataset, task._data = (
        "string_insertion",
        reasoning_gym.create_dataset("string_insertion", size=1, seed=0),
    )
    marker = tmp_path / "ran"
    entry = task._data[0]
    problem = type(problem)(problem.messages, answer=entry["answer"], id=problem.id,
                            metadata={"entry": entry})  # fmt: skip
    with pytest.raises(ConfigError, match="refused"):
        task.check(problem, _payload(marker))
    assert not marker.exists()


def test_safe_datasets_still_score() -> None:
    task = ReasoningGymTask("chain_sum", {}, size=2, seed=0)
    problem = task.problems()[0]
    assert task.check(problem, problem.answer)
    assert not task.check(problem, "__import__('os')")
