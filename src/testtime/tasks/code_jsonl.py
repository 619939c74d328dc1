"""Code problems from a JSONL file: one object per line,
`{"prompt", "entry_point", "tests", "examples"?, "prelude"?, "id"?}`.

`tests` are the hidden tests: a list of assert statements (`assert f(1) == 2` is compared
outside the jail, by `==` on builtin values; any other assert runs inside it) or one script (e.g.
HumanEval's `def check(candidate): ...`, run as `check(entry_point)`). `examples` are public
tests a verifier may read, each `assert f(...) == <literal>`. `prelude` runs before the
solution (imports, helpers). The whole file is validated before any problem is returned; a bad
line is reported with the file, its line number, what is wrong and what to write. Other keys
are kept as metadata.
"""

from __future__ import annotations

import ast
import keyword
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from testtime.core.errors import ConfigError, DataError
from testtime.core.registry import Params
from testtime.core.types import Problem
from testtime.sandbox import Case
from testtime.sandbox.problems import CodeSpec, TestsError, parse_tests
from testtime.tasks.base import TASKS, Task
from testtime.tasks.code import CodeTask, code_problem
from testtime.tasks.jsonl import load, parse_object, problem_id

EXAMPLE = (
    '{"prompt": "Return the sum of a and b.", "entry_point": "add", '
    '"tests": ["assert add(1, 2) == 3"], "id": "add"}'
)
KEYS = ("prompt", "entry_point", "tests", "examples", "prelude", "id")


@dataclass(frozen=True)
class CodeJsonlParams(Params):
    path: str = ""
    _paths: ClassVar[frozenset[str]] = frozenset({"path"})

    def validate(self) -> None:
        if not self.path.strip():
            raise ConfigError(
                "parameter 'path' is required: the JSONL file of code problems to read, "
                "e.g. path=code.jsonl"
            )


class CodeJsonlTask(CodeTask):
    """Code problems read (and fully validated) from one JSONL file."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.name = self.path.stem
        self._problems = tuple(load(self.path, parse_line, EXAMPLE))

    def problems(self) -> tuple[Problem, ...]:
        return self._problems


def parse_line(line: str, where: str, default_id: str) -> Problem:
    """One code problem from one line; `where` (file:line) prefixes every error."""
    obj = parse_object(line, where, EXAMPLE)
    prompt = _text(obj, "prompt", where, required=True)
    entry = _entry(obj.get("entry_point"), where)
    prelude = _text(obj, "prelude", where, required=False)
    if "tests" not in obj:
        raise DataError(
            f"{where}: no 'tests'; give a list of assert statements, "
            f'e.g. "tests": ["assert {entry}(1, 2) == 3"]'
        )
    cases, script = _tests(obj["tests"], entry, where, "tests")
    if not any(_names(entry, test) for test in [script, *(c.call for c in cases)]):
        raise DataError(
            f"{where}: no test calls {entry!r}; the tests must call the entry point, "
            f'e.g. "assert {entry}(1, 2) == 3" (or fix "entry_point")'
        )
    examples: tuple[Case, ...] = ()
    if "examples" in obj:
        examples, rest = _tests(obj["examples"], entry, where, "examples")
        if rest or isinstance(obj["examples"], str):
            raise DataError(
                f"{where}: 'examples' must be a list of `assert {entry}(...) == <literal>` "
                f"statements (public tests are compared as values); move other asserts to 'tests'"
            )
    spec = CodeSpec(entry, cases, script, examples, prelude)
    problem = code_problem(spec, prompt, problem_id(obj.get("id", default_id), where))
    extra = {k: v for k, v in obj.items() if k not in KEYS}
    return Problem(problem.messages, id=problem.id, metadata={**extra, **problem.metadata})


def _text(obj: dict[str, Any], key: str, where: str, *, required: bool) -> str:
    value = obj.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        got = "nothing" if value is None else repr(value)[:60]
        raise DataError(f"{where}: {key!r} must be a non-empty string, got {got}; e.g. {EXAMPLE}")
    return value


def _entry(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.isidentifier() or keyword.iskeyword(value):
        got = "nothing" if value is None else repr(value)[:60]
        raise DataError(
            f"{where}: 'entry_point' must be the name of the function to write, got {got}; "
            'e.g. "entry_point": "add"'
        )
    return value


def _tests(value: Any, entry: str, where: str, key: str) -> tuple[tuple[Case, ...], str]:
    """Cases and a script from a line's `key` (a list of asserts or one script)."""
    if not isinstance(value, str | list):
        raise DataError(
            f"{where}: {key!r} must be a list of assert statements or one test script, "
            f'got {type(value).__name__}; e.g. "{key}": ["assert {entry}(1, 2) == 3"]'
        )
    try:
        cases, script = parse_tests(value, entry)
    except TestsError as e:
        raise DataError(f"{where}: {key!r}: {e}") from None
    return cases, script  # parse_tests left asserts on values not plain data to the script


def _names(name: str, source: str) -> bool:
    """Whether parsed test source names `name`."""
    return any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(ast.parse(source)))


@TASKS.register("code_jsonl", CodeJsonlParams, CodeJsonlTask)
def code_jsonl_task(p: CodeJsonlParams) -> Task:
    """Code problems from a JSONL file of {"prompt", "entry_point", "tests", ...} lines."""
    return CodeJsonlTask(p.path)
