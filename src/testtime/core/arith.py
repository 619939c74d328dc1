"""Exact arithmetic on text: evaluate + - * / expressions (parsed, never eval'd) and find
the equations a solution states, so step checkers and the fake model agree on what a sum is.
"""

from __future__ import annotations

import ast
import itertools
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

_OPS: dict[type[ast.operator], Callable[[Fraction, Fraction], Fraction]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
TIMES = re.compile(r"(?<=\d)\s*[x×·]\s*(?=[\d(-])")  # 3 x 4, 3 × 4 -> 3 * 4
_RUN = re.compile(r"[\d\s.,+\-*/()]+$")  # the arithmetic at the end of a text
_NUMBER = re.compile(r"\s*([-+]?\s*\d[\d,]*(?:\.\d+)?)")  # the number at the start of one


def evaluate(expression: str, *, single: bool = False) -> Fraction | None:
    """The exact value of an arithmetic expression over numbers, or None if it is not one.

    Decimals are exact (0.1 is 1/10). A lone number counts only with `single=True`.
    """
    text = TIMES.sub(" * ", expression).replace("÷", "/").replace(",", "")

    def value(node: ast.expr) -> Fraction:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return (
                Fraction(repr(node.value))
                if isinstance(node.value, float)
                else Fraction(node.value)
            )
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            return -value(node.operand) if isinstance(node.op, ast.USub) else value(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](value(node.left), value(node.right))
        raise ValueError("not arithmetic")

    try:
        tree = ast.parse(text.strip(), mode="eval").body
        if not single and not isinstance(tree, ast.BinOp):
            return None  # "7" alone is no sum
        return value(tree)
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError, OverflowError):
        return None


@dataclass(frozen=True, slots=True)
class Equation:
    """`lhs = rhs` as written in a text, and whether it holds exactly."""

    lhs: str
    rhs: str
    holds: bool


def equations(text: str) -> list[Equation]:
    """Every arithmetic equation `expression = number` stated in a text (e.g. "12 * 3 = 36"),
    each checked exactly; chains ("3 + 4 = 7 + 1 = 8") give one equation per link.
    Sides without an operator ("x = 5", "= 7") are not equations here."""
    parts = TIMES.sub(" * ", text).split("=")
    found = []
    for left, right in itertools.pairwise(parts):
        run, number = _RUN.search(left), _NUMBER.match(right)
        if run is None or number is None:
            continue
        lhs = _longest_expression(run.group())
        rhs = number.group(1).replace(" ", "").rstrip(",")
        value = evaluate(rhs, single=True)
        if lhs is not None and value is not None:
            found.append(Equation(lhs, rhs, evaluate(lhs) == value))
    return found


def _longest_expression(run: str) -> str | None:
    """The longest suffix of `run`, starting at a word boundary, that is an expression."""
    starts = [0] + [i + 1 for i, ch in enumerate(run) if ch.isspace()]
    for i in starts:
        piece = run[i:].strip()
        if piece and evaluate(piece) is not None:
            return piece
    return None
