"""Answer extraction (boxed, tags, answer line, number, last line) and answer equivalence."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from testtime.core.answers import EXTRACTORS, equivalent, extract, normalize
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
