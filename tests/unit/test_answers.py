"""Answer extraction (boxed, tags, answer line, number, last line), the canonical form votes
group by, and answer equivalence (never on text that is not plain math)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from testtime.core.answers import (
    EXTRACTORS,
    canonical,
    equivalent,
    extract,
    normalize,
    plain_math,
    same_answer,
)
from testtime.core.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),  # nested braces kept
        ("first \\boxed{3}, finally \\boxed{42}", "42"),  # the last box
        ("\\fbox{7}", "7"),
        ("\\boxed{1 + 2", None),  # unbalanced
        ("no box here: 5", None),
    ],
)
def test_boxed(text: str, expected: str | None) -> None:
    assert extract(text, "boxed") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<answer> 12 </answer>", "12"),
        ("<answer>1</answer> then <ANSWER>2</ANSWER>", "2"),
        ("thinking... <answer>7", "7"),  # an unclosed last tag counts
        ("<answer></answer>", None),
    ],
)
def test_tags(text: str, expected: str | None) -> None:
    assert extract(text, "tags") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Answer: 42.", "42"),
        ("The final answer is: $x+1$", "x+1"),
        ("result = **9**", "9"),
        ("answer: 1\nmore text\nAnswer: 2", "2"),
        ("no marker", None),
    ],
)
def test_answer_line(text: str, expected: str | None) -> None:
    assert extract(text, "answer_line") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3 apples and 1,000 pears", "1000"),
        ("it costs $12.50", "12.50"),
        ("a temperature of −3", "-3"),
        ("half is 1/2", "1/2"),
        ("none", None),
    ],
)
def test_final_number(text: str, expected: str | None) -> None:
    assert extract(text, "number") == expected


def test_last_line() -> None:
    assert extract("thinking\n\n  Blue  \n\n", "last_line") == "Blue"
    assert extract("   \n", "last_line") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Answer: 7 \\boxed{8}", "8"),  # a box beats everything
        ("<answer>9</answer>\nAnswer: 3", "9"),  # tags beat an answer line
        ("Answer: 12 apples", "12"),  # one number on the answer line
        ("Answer: x = 5", "5"),
        ("Final answer: $x+1$.", "x+1"),  # an expression stays whole
        ("Answer: 2x", "2x"),
        ("Answer: 3 or 4", "3 or 4"),
        ("we had 3 then\nthe total is 5 apples", "5"),  # the last line's number
        ("I think\n\nBlue", "Blue"),  # else the last line
        ("", None),
    ],
)
def test_auto_extraction_order(text: str, expected: str | None) -> None:
    assert extract(text) == expected


def test_unknown_extractor_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"unknown extractor 'regex'.*boxed"):
        extract("x", "regex")
    assert "auto" in EXTRACTORS


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("1/2", "0.5"),
        ("1,000", "1000"),
        ("x+1", "1+x"),
        ("\\frac{1}{2}", "0.5"),
        ("7", "7.0"),
        ("-3", "−3"),
        ("$5", "5"),
        ("Yes", "yes"),
        ("2", "\\sqrt{4}"),
    ],
)
def test_equivalent(a: str, b: str) -> None:
    assert equivalent(a, b) and equivalent(b, a)


@pytest.mark.parametrize(("a", "b"), [("5", "15"), ("1/2", "2"), ("x+1", "x-1"), ("Blue", "Red")])
def test_not_equivalent(a: str, b: str) -> None:
    assert not equivalent(a, b) and not equivalent(b, a)


def test_normalize_strips_noise() -> None:
    assert normalize(" 1,000.0 ") == "1000"
    assert normalize("$\\frac{1}{2}$") == "\\frac{1}{2}"
    assert normalize("  Hello   World. ") == "hello world"


@given(st.integers(-(10**6), 10**6))
def test_integers_survive_formatting(n: int) -> None:
    written = f"{n:,}"
    assert extract(f"Answer: {written}") == str(n)
    assert equivalent(written, str(n)) and not equivalent(str(n), str(n + 1))


# -- an answer is what the model concluded, never a restated question or an operand ----------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Solve: 0 - 4 =", None),  # read as -4 and graded correct in a particle trace
        ("9 - 2 =", None),  # was -2: the minus between two operands is no sign
        ("What is 7 + 8?", None),  # was 8
        ("7 + 8 = ?", None),
        ("Calculate 7 + 8", None),  # an expression's trailing operand
        ("State the final answer: 0 - 4 =", None),
        ("7 + 8 = 15\nWhat is 7 + 8?", "15"),  # a restated question after the conclusion
        ("7 + 8 = 15\n\nIs that right?", "15"),
        ("Let me see.\n9 - 2 = 7\n9 - 2 =", "7"),
        ("Answer: 9 - 2 =\n7", "7"),  # an answer line that stops short concludes nothing
        ("The answer is 15.", "15"),
        ("#### 15", "15"),
        ("\\boxed{15}", "15"),
        ("So 7 + 8 = 15", "15"),
        ("0 - 4 = -4", "-4"),
        ("0 - 4 = - 4", "-4"),
        ("The answer is -4", "-4"),
        ("-4", "-4"),
        ("The result of 9 - 2 is 7.", "7"),
        ("9-2=7", "7"),
        ("15 - that is my answer", "15"),
        ("x = -3", "-3"),
    ],
)
def test_an_answer_is_what_the_model_concluded(text: str, expected: str | None) -> None:
    assert extract(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("9 - 2 =", "2"), ("0 - 4", "4"), ("it is -4", "-4"), ("(1) - 4", "4"), ("x - 4", "4")],
)
def test_a_minus_between_operands_is_an_operator(text: str, expected: str) -> None:
    assert extract(text, "number") == expected


@given(st.integers(0, 9), st.integers(0, 9), st.sampled_from(["+", "-"]))
def test_a_restated_sum_is_never_read_as_an_answer(a: int, b: int, op: str) -> None:
    question = f"{a} {op} {b}"
    for text in (
        f"{question} =",
        f"What is {question}?",
        f"Solve: {question} =",
        f"{question} = ?",
    ):
        assert extract(text) is None, text
    result = a + b if op == "+" else a - b
    assert extract(f"{question} = {result}") == str(result)
    assert extract(f"{question} = {result}\nWhat is {question}?") == str(result)


# -- the canonical form votes group by ---------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [("-0", "0"), ("5", "5.0"), ("5", " 5 "), ("1,000", "1000"), ("$5", "5"), ("0.5", "1/2"),
     ("2/4", "1/2"), ("+3", "3"), ("−3", "-3")],
)  # fmt: skip
def test_spellings_of_one_number_are_one_vote(a: str, b: str) -> None:
    assert same_answer(a, b) and canonical(a) == canonical(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [("2 + 3 = 5", "5"), ("\\frac{1}{2}", "0.5"), ("Five", "5"), ("x = 5", "5"),
     ("12345678901234567", "12345678901234568"), ("1/0", "2/0"), ("**5**", "5")],
)  # fmt: skip
def test_forms_a_check_may_grade_apart_are_separate_votes(a: str, b: str) -> None:
    assert not same_answer(a, b)


# -- plain math: the only text math-verify sees ------------------------------------------------


@pytest.mark.parametrize(
    "text", ["42", "-3/4", "\\frac{1}{2}", "x+1", "2x", "x = 5", "\\sqrt{2}\\pi", "(1, 2]",
             "x_1", "\\sin(x) + \\ln 2", "sqrt(2)", "50%"],
)  # fmt: skip
def test_plain_math_reads_as_math(text: str) -> None:
    assert plain_math(text)


@pytest.mark.parametrize(
    "text",
    ["1 + __import__('os').system('id')", "1 + os.system", "exec(1)", "5 apples", "'5'",
     "eval", "1; 2", "x.real", "a__b"],
)  # fmt: skip
def test_code_and_prose_are_not_plain_math(text: str) -> None:
    assert not plain_math(text)
    assert not equivalent(text, "1") and not equivalent("1", text)
