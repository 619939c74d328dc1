"""sympy_plain: a value parse_expr made in the jail comes back exactly, and a forged node list
rebuilds nothing but sympy expressions, without evaluating any text."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import sympy
from sympy import parse_expr, srepr

from testtime.tasks.sympy_plain import NotSympy, from_plain, to_plain

PARSE_DATASETS = (
    "countdown",
    "intermediate_integration",
    "polynomial_multiplication",
    "puzzle24",
    "simple_integration",
)
EXTRA = [
    "1.5*x + 2.25",
    "pi*E + I - oo + zoo",
    "nan",
    "sqrt(2)/2 + x**(1/3)",
    "Integral(x**2, x)",
    "Derivative(sin(x), x)",
    "Add(x, x, evaluate=False)",
    "Mul(2, 3, evaluate=False)",
    "Eq(x, 2)",
    "log(x, 2) + exp(x)*sin(x) + Abs(y)",
    'Float("1.234567890123456789012345", 40)',
    "Sum(x**k, (k, 0, n))",
    "3",
    "len('abc')",
    "True",
]


def _texts() -> list[str]:
    import reasoning_gym

    texts = list(EXTRA)
    for name in PARSE_DATASETS:
        for entry in reasoning_gym.create_dataset(name, size=20, seed=3):
            texts.append(entry["answer"])
            texts += [
                entry["metadata"][k]
                for k in ("integrand", "polynomial_expr")
                if k in entry["metadata"]
            ]
    return texts


def _round_trip(value: Any) -> Any:
    return from_plain(json.loads(json.dumps(to_plain(value))))


def test_parsed_answers_come_back_exactly() -> None:
    for text in _texts():
        value = parse_expr(text)
        back = _round_trip(value)
        assert type(back) is type(value) and back == value, text
        if isinstance(value, sympy.Basic):
            assert srepr(back) == srepr(value), text


@pytest.mark.parametrize(
    "text",
    ["'x**2'", "(1, 2)", "Matrix([1])", "f(x)", "Dummy()", "Symbol('x', positive=True)"],
)
def test_values_that_do_not_rebuild_exactly_are_refused_in_the_jail(text: str) -> None:
    """A str would be parsed (evaluated) by the scorer's sympy calls here: never sent."""
    with pytest.raises(NotSympy):
        to_plain(parse_expr(text))


X = ["Symbol", "x"]


@pytest.mark.parametrize(
    "nodes",
    [
        [["py", "__import__('os')"]],  # a str: sympy.diff would sympify it
        [["S", "register"]],
        [["S", "__class__"]],
        [X, ["Node", "Function", [0]]],
        [X, ["Node", "Symbol", [0]]],
        [["Node", "Dummy", []]],
        [["Node", "parse_expr", []]],
        [["Node", "sympify", []]],
        [["Node", "Add", [1]], X],  # a child not built yet
        [["Rational", 2, 4]],  # not in lowest terms: not what sympy made
        [["Float", [2, 3, -1, 2], 53]],
        [["Integer", 1.5]],
        [["Node", "Add", [0]], ["py", 1]],
        "x",
        [],
    ],
)
def test_forged_nodes_are_refused(nodes: Any) -> None:
    with pytest.raises(NotSympy):
        from_plain(nodes)


def test_an_unevaluated_power_comes_back_unevaluated_and_at_once() -> None:
    """Rebuilding never evaluates: 10**(10**9) stays a node (evaluated, it would not fit)."""
    value = sympy.Pow(10, 10**9, evaluate=False)
    start = time.monotonic()
    back = _round_trip(value)
    assert time.monotonic() - start < 1.0
    assert srepr(back) == srepr(value)
