"""Answer extraction, the canonical form votes group by, and equivalence with a gold answer,
written once for every task and strategy.

Extraction reads the final answer out of a completion: `\\boxed{}`, `<answer>` tags, an
"answer:" line, the concluding number of the last line that concludes, or the last line.
A restated question ("What is 7 + 8?") or an unfinished expression ("9 - 2 =") concludes
nothing, and a minus between two operands is an operator, not a sign.

Two notions of "the same answer", for two jobs. `canonical` is what votes group by: only
forms every gold check here grades alike are merged (a number and its other spellings), so
a vote never pools a right answer with a wrong one. `equivalent` is the looser, math-aware
comparison with a gold answer (numerically, then math-verify for LaTeX and symbolic forms),
used by checks and the `math` verifier. Only plain math reaches math-verify: text that is
not an answer (prose, code) never matches, and nothing is handed to a parser that evaluates.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal

from testtime.core.errors import ConfigError

Extractor = Literal["auto", "boxed", "tags", "number", "last_line", "answer_line"]
EXTRACTORS: tuple[str, ...] = ("auto", "boxed", "tags", "number", "last_line", "answer_line")

_NUMBER = re.compile(r"\$?\d[\d,]*(?:\.\d+)?(?:/\d+)?|\.\d+")  # unsigned; signs: _numbers
_PLAIN_NUMBER = re.compile(r"(-?\d+(?:\.\d+)?|-?\.\d+)(?:/(\d+))?")  # after _clean_number
_SIGNS = "-+−"
_OPERATORS = "-+−*/×÷^"
_STOPS_SHORT = re.compile(r"[-+−*/×÷^=][\s=?*_$.]*$")  # ends on an operator: '9 - 2 ='
_TAG = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL | re.IGNORECASE)
_MATHY = re.compile(r"[-+−*/^=\\{}<>]|\b[a-zA-Z]\b")  # operators or a lone variable
_ANSWER_LINE = re.compile(r"(?:final answer|answer|result)\s*(?:is)?\s*[:=]\s*(.+)", re.IGNORECASE)


def boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}), braces balanced."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0:
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j].strip() or None
    return None


def tagged(text: str) -> str | None:
    """Content of the last <answer>...</answer> (an unclosed last tag counts)."""
    found = _TAG.findall(text)
    return found[-1].strip() or None if found else None


def answer_line(text: str) -> str | None:
    """What follows the last 'answer:' / 'final answer is' / 'result =' on a line."""
    found = _ANSWER_LINE.findall(text)
    if not found:
        return None
    value = found[-1].strip().rstrip(".").strip()
    return _strip_wrappers(value) or None


def final_number(text: str) -> str | None:
    """The last number in the text, normalised (no thousands separators, no '$')."""
    found = _numbers(text)
    return _clean_number(found[-1][0]) if found else None


def _numbers(text: str) -> list[tuple[str, bool]]:
    """Each number in `text`: its text with its sign (as written), and whether it is the
    right operand of a binary operator ('0 - 4': the 4, unsigned)."""
    out = []
    for m in _NUMBER.finditer(text):
        before = text[: m.start()].rstrip()
        start, operand = m.start(), False
        if before and before[-1] in _OPERATORS:
            operand = _is_operand_end(before[:-1].rstrip())
            if before[-1] in _SIGNS and not operand:
                start = len(before) - 1  # a sign: '-4', '= - 4', 'is −3'
        out.append((text[start : m.end()], operand))
    return out


def _is_operand_end(text: str) -> bool:
    """Whether `text` ends with an operand (a number, a closing bracket, a one-letter
    variable), so that an operator after it is binary: '0 - 4', '(1) - 4', 'x - 4', not
    'is -4' or '= -4'."""
    if not text:
        return False
    last = text[-1]
    if last.isdigit() or last in ")]}":
        return True
    return last.isalpha() and (len(text) == 1 or not text[-2].isalpha())


def last_line(text: str) -> str | None:
    """The last non-empty line."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else None


def extract(text: str, how: str = "auto") -> str | None:
    """Read the final answer out of `text`.

    `auto` tries, in order: boxed, <answer> tags, an 'answer:' line (its number if it
    has exactly one), then the last line that concludes: its final number, or the line
    itself when it has none. Lines that restate a question ('What is 7 + 8?') or stop on
    an operator or an operand ('Solve: 0 - 4 =', 'Calculate 7 + 8') conclude nothing and
    are passed over; with nothing else, there is no answer.
    """
    if how not in EXTRACTORS:
        raise ConfigError(f"unknown extractor {how!r}; available: {', '.join(EXTRACTORS)}")
    if how == "boxed":
        return boxed(text)
    if how == "tags":
        return tagged(text)
    if how == "number":
        return final_number(text)
    if how == "last_line":
        return last_line(text)
    if how == "answer_line":
        return answer_line(text)
    for fn in (boxed, tagged):
        got = fn(text)
        if got is not None:
            return got
    line = answer_line(text)
    if line is not None and not _asks(line) and not _STOPS_SHORT.search(line):
        return _only_number(line) or line
    for last in reversed([ln.strip() for ln in text.strip().splitlines() if ln.strip()]):
        if _asks(last):
            continue  # a restated question concludes nothing
        found = _numbers(last)
        if not found:
            return last
        number, operand = found[-1]
        if operand or _STOPS_SHORT.search(last):
            continue  # an expression's operand ('What is 7 + 8', '9 - 2 =') is no answer
        return _clean_number(number)
    return None


def _asks(line: str) -> bool:
    """A line that ends in a question mark (markdown and spaces aside)."""
    return line.rstrip(" *_$").endswith("?")


def _only_number(line: str) -> str | None:
    """The number of a line that is one number among words ('42 apples', 'x = 5'), but not
    of an expression ('x+1', '2x'), which is kept whole."""
    nums = [n for n, _ in _numbers(line)]
    if len(nums) != 1:
        return None
    rest = line.replace(nums[0], " ", 1)
    if re.fullmatch(r"\s*[a-zA-Z]\s*=\s*", rest) or not _MATHY.search(rest):
        return _clean_number(nums[0])
    return None


def _clean_number(s: str) -> str:
    s = re.sub(r"\s", "", s.replace("−", "-").replace("$", "").replace(",", ""))
    return s.lstrip("+")


def _strip_wrappers(s: str) -> str:
    s = s.strip()
    for a, b in (("$", "$"), ("**", "**"), ("\\(", "\\)"), ("`", "`")):
        if len(s) > len(a) + len(b) and s.startswith(a) and s.endswith(b):
            s = s[len(a) : len(s) - len(b)].strip()
    return s


def normalize(answer: str) -> str:
    """A canonical string form: trimmed, lower-case, numbers without noise (`1,000.0` -> `1000`)."""
    s = _strip_wrappers(answer).strip().rstrip(".").strip()
    num = as_number(s)
    if num is not None:
        return format_number(num)
    return re.sub(r"\s+", " ", s).lower()


def as_number(s: str) -> float | None:
    """The numeric value of a plain number or simple fraction, else None."""
    m = _PLAIN_NUMBER.fullmatch(_clean_number(s.strip()))
    if not m:
        return None
    value = float(m.group(1))
    if m.group(2):
        den = int(m.group(2))
        if den == 0:
            return None
        value /= den
    return value


def format_number(x: float) -> str:
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return repr(round(x, 9))


@functools.lru_cache(maxsize=65536)
def canonical(answer: str) -> str:
    """The form votes group answers by: trimmed, and a plain number written one way ('-0',
    '0.0' -> '0'; '0.5', '1/2' -> '1/2'; '1,000', '$1000' -> '1000'), exactly, so numbers
    that differ anywhere stay apart. Nothing else is merged ('2 + 3 = 5' is not '5',
    'Five' is not '5'): forms only a looser check would accept may be graded differently."""
    s = answer.strip()
    m = _PLAIN_NUMBER.fullmatch(_clean_number(s))
    den = int(m.group(2) or 1) if m else 0
    return str(Fraction(Decimal(m.group(1))) / den) if m and den else s


def same_answer(a: str, b: str) -> bool:
    """Whether two answers are one vote: the same `canonical` form (every task's default)."""
    return canonical(a) == canonical(b)


_DIGIT = re.compile(r"\d")
_PLAIN_MATH = re.compile(r"[A-Za-z0-9_\s\\{}()\[\]+\-−*/×÷^=<>≤≥≠.,:|!%$°π∞√]*")
_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")  # a word, not a LaTeX command's name
MATH_WORDS = frozenset({
    "sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan", "sinh", "cosh",
    "tanh", "log", "ln", "exp", "sqrt", "pi", "inf", "infty", "mod", "and", "or",
})  # fmt: skip


def plain_math(text: str) -> bool:
    """Whether `text` reads as a math answer and nothing else: numbers, operators, brackets,
    LaTeX commands, variables and function names, but no quotes, attribute access, dunder
    names, or words of code or prose ('1 + __import__(...)', 'os.system', 'apples')."""
    if not _PLAIN_MATH.fullmatch(text) or "__" in text or re.search(r"\.[A-Za-z_]", text):
        return False
    return all(w.lower() in MATH_WORDS for w in _WORD.findall(text))


@functools.lru_cache(maxsize=65536)
def equivalent(a: str, b: str) -> bool:
    """Whether an extracted answer means the same as a gold answer (symmetric, cached):
    equal after normalisation, numerically, or by math-verify when both are plain math."""
    na, nb = normalize(a), normalize(b)
    if na == nb:
        return True
    xa, xb = as_number(na), as_number(nb)
    if xa is not None and xb is not None:
        return abs(xa - xb) <= 1e-9 * max(1.0, abs(xa), abs(xb))
    if (xa is not None and not _DIGIT.search(nb)) or (xb is not None and not _DIGIT.search(na)):
        return False  # a number never equals text without a digit ("Zero", prose): skip parsing
    return _math_verify(a, b)


PROSE_UNKNOWNS = 4


def _math_verify(a: str, b: str) -> bool:
    """math-verify on two short answers, wrapped in $...$ so LaTeX parses.

    Only plain math is parsed (`plain_math`): math-verify hands some text to sympy's
    `parse_expr`, which evaluates Python, so nothing else may reach it. Each distinct
    answer is parsed once. An expression in four or more unknowns is not
    compared symbolically (only as text, above): it is prose parsed as a product of letters,
    where sympy spends seconds (up to math-verify's timeout) to say no.
    """
    if not (plain_math(a) and plain_math(b)):
        return False  # text that is not an answer never matches, and is never parsed
    try:
        from math_verify import verify
    except ImportError:  # pragma: no cover - math-verify is a core dependency
        return False
    ga, gb = _parsed(a), _parsed(b)
    if not ga or not gb or max(_unknowns(ga), _unknowns(gb)) >= PROSE_UNKNOWNS:
        return False
    try:
        return bool(verify(list(ga), list(gb)) or verify(list(gb), list(ga)))
    except Exception:  # math-verify raises on exotic input; unequal is the safe answer
        return False


@functools.lru_cache(maxsize=65536)
def _parsed(text: str) -> tuple[Any, ...]:
    from math_verify import parse

    try:
        return tuple(parse(f"${text}$") or parse(text))
    except Exception:
        return ()


def _unknowns(parsed: tuple[Any, ...]) -> int:
    """Distinct free symbols of the first parsed expression (0 for numbers and strings)."""
    return len(getattr(parsed[0], "free_symbols", ())) if parsed else 0


Equivalence = Callable[[str, str], bool]
