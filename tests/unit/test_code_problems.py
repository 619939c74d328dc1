"""Reading code problems: tests as users write them, doctest examples, the code of a reply."""

from __future__ import annotations

import pytest

from testtime.sandbox import Case
from testtime.sandbox.problems import CodeSpec, TestsError, doctest_cases, extract_code, parse_tests


def test_call_equals_literal_asserts_become_cases_with_exact_types() -> None:
    cases, script = parse_tests(["assert f(1, [2]) == (3, 'x')", "assert f(0) == {1: None}"], "f")
    assert cases == (Case("f(1, [2])", (3, "x")), Case("f(0)", {1: None}))
    assert type(cases[0].expected) is tuple
    assert script == ""


def test_other_asserts_go_to_the_script() -> None:
    cases, script = parse_tests(["assert f(1) == 2", "assert abs(f(0.5) - 1) < 1e-6"], "f")
    assert cases == (Case("f(1)", 2),)
    assert script == "assert abs(f(0.5) - 1) < 1e-6\n"


def test_a_check_function_is_called_on_the_entry_point() -> None:
    _, script = parse_tests("def check(candidate):\n    assert candidate(1) == 2\n", "f")
    assert script.rstrip().endswith("check(f)")
    _, called = parse_tests("def check(c):\n    assert c(1) == 2\ncheck(f)\n", "f")
    assert called.count("check(f)") == 1


@pytest.mark.parametrize(
    ("tests", "says"),
    [
        (["assert f(1) =="], "test 0 is not valid Python"),
        (["ok", ""], "test 1 is not a non-empty string"),
        ([], "no tests"),
        ("", "empty"),
        ("def check(:", "the test script is not valid Python"),
    ],
)
def test_tests_that_cannot_be_read_say_which(tests: list[str] | str, says: str) -> None:
    with pytest.raises(TestsError, match=says):
        parse_tests(tests, "f")


def test_a_spec_needs_a_function_name_and_tests() -> None:
    with pytest.raises(TestsError, match="not a Python function name"):
        CodeSpec("not a name", (Case("f()", 1),))
    with pytest.raises(TestsError, match="no tests"):
        CodeSpec("f")


def test_doctest_examples_with_literal_outputs() -> None:
    doc = '    """\n    >>> f(1)\n    2\n    >>> f(2)\n    something odd\n    >>> g(1)\n    3\n"""'
    assert doctest_cases(doc, "f") == (Case("f(1)", 2),)


REPLY = """Sure.
```python
def helper(x):
    return x
```
Here is the function:
```python
def f(x):
    return helper(x) + 1  # plus one
```
It adds one."""


def test_the_block_that_defines_the_entry_point_is_the_answer() -> None:
    assert extract_code(REPLY, "f") == "def f(x):\n    return helper(x) + 1  # plus one"
    assert extract_code(REPLY, "helper") == "def helper(x):\n    return x"
    assert extract_code(REPLY) == "def f(x):\n    return helper(x) + 1  # plus one"


def test_unfenced_code_is_taken_from_the_definition_until_the_prose() -> None:
    text = "The answer:\ndef f(x):\n    y = x\n\n    return y\nThis works."
    assert extract_code(text, "f") == "def f(x):\n    y = x\n\n    return y"


def test_a_reply_without_code_has_no_answer() -> None:
    assert extract_code("I think the answer is 4.", "f") is None
    assert extract_code("```\n\n```", "f") is None


def test_examples_written_inline_as_prompts_state_them() -> None:
    doc = """
    digitSum("abAB") => 131
    iscube(1) ==> True
    will_it_fly([1, 2], 5) ➞ False
    f(5) == [1, 2, 6]
    f(2)   # returns "x"
    f(3) should return 16.
    f(4) => true
    f(x) => 1
    f(1) returns something
    """
    assert doctest_cases(doc, "f") == (
        Case("f(5)", [1, 2, 6]),
        Case("f(2)", "x"),
        Case("f(3)", 16),
        Case("f(4)", True),
    )
    assert doctest_cases(doc, "digitSum") == (Case('digitSum("abAB")', 131),)
    assert doctest_cases(doc, "cube") == ()  # a name inside another is not a call of it
