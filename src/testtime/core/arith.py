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


def expression_in(text: str) -> str | None:
    """The arithmetic expression a text ends with, before any trailing '=' ("... 3 + 4 =")."""
    run = _RUN.search(TIMES.sub(" * ", text.rstrip().rstrip("=").rstrip()))
    return _longest_expression(run.group()) if run else None


def worked_steps(expression: str) -> list[str] | None:
    """A worked solution: one `a op b = c` per operation, in evaluation order.

    The innermost, leftmost operation whose operands are numbers is done first and
    replaced by its value, until one number is left. None if it is not an expression or
    a step leaves the integers (a demonstration should not teach rounding).
    """
    try:
        tree = ast.parse(TIMES.sub(" * ", expression).strip(), mode="eval").body
    except SyntaxError:
        return None
    steps: list[str] = []
    while not _is_number(tree):
        node = _next_operation(tree)
        if node is None:
            return None
        value = evaluate(ast.unparse(node))
        if value is None or value.denominator != 1:
            return None
        steps.append(f"{ast.unparse(node)} = {value.numerator}")
        tree = _replace(tree, node, _number(value.numerator))
    return steps


def _is_number(node: ast.expr) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        node = node.operand
    return isinstance(node, ast.Constant) and isinstance(node.value, int)


def _next_operation(node: ast.expr) -> ast.BinOp | None:
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        if _is_number(node.left) and _is_number(node.right):
            return node
        return _next_operation(node.left) or _next_operation(node.right)
    if isinstance(node, ast.UnaryOp):
        return _next_operation(node.operand)
    return None


def _number(value: int) -> ast.expr:
    c = ast.Constant(abs(value))
    return ast.UnaryOp(ast.USub(), c) if value < 0 else c


def _replace(node: ast.expr, old: ast.expr, new: ast.expr) -> ast.expr:
    if node is old:
        return new
    if isinstance(node, ast.BinOp):
        return ast.BinOp(_replace(node.left, old, new), node.op, _replace(node.right, old, new))
    if isinstance(node, ast.UnaryOp):
        return ast.UnaryOp(node.op, _replace(node.operand, old, new))
    return node
