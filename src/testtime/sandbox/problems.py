"""What a code problem is, shared by the code tasks and the code verifiers above this layer.

A code problem asks for one Python function, `entry`. Its hidden tests are cases (a call and
the expected value, compared outside the jail) and, where a test cannot be written that way,
an assert-style script run inside it. Its public examples (the doctests of its prompt) are
cases too, which a verifier may use without reading the hidden tests. Tests are written as
users write them (MBPP, HumanEval): `assert f(1, 2) == 3` becomes a case when the right side
is a Python literal; any other assert goes into the script.

A `CodeSpec` rides on `Problem.metadata["code"]`, so tasks, verifiers and the server build
and read it the same way.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass

from testtime.core.types import Problem
from testtime.sandbox.harness import encode
from testtime.sandbox.jail import Limits
from testtime.sandbox.verdict import Case, Execution, aexecute

KEY = "code"  # the Problem.metadata key a CodeSpec rides on
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)


class TestsError(ValueError):
    """Tests that cannot be read: the message says which one and why."""

    __test__ = False  # not a pytest test class, despite its name


@dataclass(frozen=True, slots=True)
class CodeSpec:
    """One function to write and how it is judged.

    `prelude` runs before the solution (the imports and helper functions of a HumanEval
    prompt). `inputs` are call expressions with no expected value, on which solutions can be
    compared by behaviour (the public examples' calls are always among them)."""

    entry: str
    cases: tuple[Case, ...] = ()
    script: str = ""
    examples: tuple[Case, ...] = ()
    prelude: str = ""
    inputs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.entry.isidentifier():
            raise TestsError(f"entry point {self.entry!r} is not a Python function name")
        if not self.cases and not self.script:
            raise TestsError(f"no tests for {self.entry!r}: give at least one assert")

    @property
    def calls(self) -> tuple[str, ...]:
        """Every distinct input this problem names, public examples first."""
        seen = dict.fromkeys([c.call for c in self.examples] + list(self.inputs))
        return tuple(seen)


def spec_of(problem: Problem) -> CodeSpec | None:
    """The problem's code spec, or None for a problem that is not a code problem."""
    spec = problem.metadata.get(KEY)
    return spec if isinstance(spec, CodeSpec) else None


def parse_tests(tests: str | Sequence[str], entry: str) -> tuple[tuple[Case, ...], str]:
    """Cases and a script from tests as written: a list of assert statements (each `assert
    call == literal` becomes a case, any other statement goes into the script), or one
    script (HumanEval's `def check(candidate): ...`, run as `check(entry)` when it defines
    `check` and never calls it). Raises `TestsError` naming the test that cannot be read."""
    if isinstance(tests, str):
        tree = _parse(tests, "the test script")
        if not tree.body:
            raise TestsError("the test script is empty; give assert statements")
        script = tests
        defines = any(isinstance(n, ast.FunctionDef) and n.name == "check" for n in tree.body)
        if defines and "check(" not in _calls_outside_check(tree):
            script = f"{tests}\n\ncheck({entry})\n"
        return (), script
    cases: list[Case] = []
    rest: list[str] = []
    for i, test in enumerate(tests):
        if not isinstance(test, str) or not test.strip():
            raise TestsError(f"test {i} is not a non-empty string of Python")
        tree = _parse(test, f"test {i}")
        case = _as_case(tree, test)
        if case is not None:
            cases.append(case)
        else:
            rest.append(test.strip())
    if not cases and not rest:
        raise TestsError("no tests: give at least one assert statement")
    return tuple(cases), "\n".join(rest) + ("\n" if rest else "")


def _parse(source: str, what: str) -> ast.Module:
    try:
        return ast.parse(source)
    except SyntaxError as e:
        raise TestsError(f"{what} is not valid Python: {e.msg} (line {e.lineno})") from None
    except ValueError as e:  # null bytes
        raise TestsError(f"{what} is not valid Python: {e}") from None


def _calls_outside_check(tree: ast.Module) -> str:
    """The source of the module's top-level statements other than function definitions."""
    return "\n".join(ast.unparse(n) for n in tree.body if not isinstance(n, ast.FunctionDef))


def _as_case(tree: ast.Module, source: str) -> Case | None:
    """`assert <call> == <literal>` (one statement) as a case; anything else None."""
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        return None
    test = tree.body[0].test
    if not (
        isinstance(test, ast.Compare)
        and len(test.ops) == 1
        and isinstance(test.ops[0], ast.Eq)
        and isinstance(test.left, ast.Call)
    ):
        return None
    try:
        expected = ast.literal_eval(test.comparators[0])
        encode(expected)  # bytes, complex, ...: not plain data, so compared in the script
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    return Case(ast.get_source_segment(source, test.left) or ast.unparse(test.left), expected)


def doctest_cases(text: str, entry: str) -> tuple[Case, ...]:
    """The examples a docstring states for `entry`, each a call on literals and a literal
    result: `>>> entry(...)` with the result on the next line, or, where there are none, one
    line as prompts write them (`entry(...) == y`, `=> y`, `➞ y`, `-> y`, `returns y`,
    `should return y`; `true`/`false` read as booleans). Anything else is left out."""
    cases = []
    lines = text.splitlines()
    for i, line in enumerate(lines[:-1]):
        call = line.strip().removeprefix(">>>").strip()
        if not line.strip().startswith(">>>") or not call.startswith(f"{entry}("):
            continue
        case = _example(call, lines[i + 1].strip())
        if case is not None:
            cases.append(case)
    if not cases:
        cases = [c for line in lines if (c := _inline_example(line, entry)) is not None]
    unique = {c.call: c for c in reversed(cases)}  # one example per call, the first stated
    return tuple(c for c in cases if unique[c.call] is c)


_SAYS = re.compile(r"^\s*(?:#\s*)?(?:==>|==|=>|➞|->|=|returns|should return|will return)\s*")


def _inline_example(line: str, entry: str) -> Case | None:
    """`entry(<literals>) <says> <literal>` within one line, or None."""
    start = re.search(rf"(?<![\w.]){re.escape(entry)}\(", line)
    if start is None:
        return None
    depth, end = 0, -1
    for j in range(start.end() - 1, len(line)):
        depth += {"(": 1, ")": -1}.get(line[j], 0)
        if depth == 0:
            end = j + 1
            break
    says = _SAYS.match(line[end:]) if end > 0 else None
    if says is None:
        return None
    result = line[end + says.end() :].strip().rstrip(".").strip()
    result = {"true": "True", "false": "False"}.get(result, result)
    return _example(line[start.start() : end], result)


def _example(call: str, result: str) -> Case | None:
    """A case when `call` calls with literal arguments only and `result` is a plain literal."""
    try:
        tree = ast.parse(call, mode="eval").body
        assert isinstance(tree, ast.Call)
        for arg in [*tree.args, *(k.value for k in tree.keywords)]:
            ast.literal_eval(arg)
        expected = ast.literal_eval(result)
        encode(expected)
    except (AssertionError, ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    return Case(call, expected)


def extract_code(text: str, entry: str | None = None) -> str | None:
    """The solution in a completion: the fenced block that defines `entry` (any function when
    `entry` is None; the last one if several do), else the last fenced Python block, else
    unfenced text from the definition on; None when there is no code (a verdict of its own:
    no solution)."""
    name = re.escape(entry) if entry else r"\w+"
    defines = re.compile(rf"^[ \t]*def {name}\s*\(", re.M)
    blocks = [m.group(2) for m in _FENCE.finditer(text) if m.group(1).lower() in _PYTHON]
    defining = [b for b in blocks if defines.search(b)]
    if defining:
        return defining[-1].strip("\n") or None
    if blocks and blocks[-1].strip():
        return blocks[-1].strip("\n")
    found = defines.search(text)
    if found is None:
        return None
    indent = len(found.group(0)) - len(found.group(0).lstrip())
    return _dedent_from(text[found.start() :], indent)


_PYTHON = ("", "python", "py", "python3")


def _dedent_from(text: str, indent: int) -> str:
    """The definition at `text`'s start and the lines indented under it (prose ends it)."""
    lines = text.splitlines()
    kept = [lines[0][indent:]]
    for line in lines[1:]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        kept.append(line[indent:])
    return "\n".join(kept).rstrip()


def program(spec: CodeSpec, code: str) -> str:
    """What runs: the problem's prelude, then the solution (which may redefine the stub)."""
    return f"{spec.prelude.rstrip()}\n\n{code}\n" if spec.prelude.strip() else f"{code}\n"


async def run_hidden(spec: CodeSpec, code: str, limits: Limits | None = None) -> Execution:
    """The solution judged by the problem's hidden tests in the jail (off the event loop)."""
    return await aexecute(
        program(spec, code), list(spec.cases), limits, script=spec.script, entry=spec.entry
    )


async def run_cases(
    spec: CodeSpec, code: str, cases: Sequence[Case], limits: Limits | None = None
) -> Execution:
    """The solution judged by `cases` only (public examples, model-written tests)."""
    return await aexecute(program(spec, code), list(cases), limits)
