"""Answer extraction and answer equivalence, written once for every task and strategy.

Extraction reads the final answer out of a completion: `\\boxed{}`, `<answer>` tags, an
"answer:" line, the final number, or the last line. Equivalence compares two extracted
answers: exact after normalisation, numerically, and then with math-verify (LaTeX and
symbolic forms), which is never run on a whole completion (it would match restated numbers).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, Literal

from testtime.core.errors import ConfigError

Extractor = Literal["auto", "boxed", "tags", "number", "last_line", "answer_line"]
EXTRACTORS: tuple[str, ...] = ("auto", "boxed", "tags", "number", "last_line", "answer_line")

_NUMBER = re.compile(r"[-+−]?\s?\$?\d[\d,]*(?:\.\d+)?(?:/\d+)?|[-+−]?\.\d+")
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
    found = _NUMBER.findall(text)
    return _clean_number(found[-1]) if found else None


def last_line(text: str) -> str | None:
    """The last non-empty line."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else None


def extract(text: str, how: str = "auto") -> str | None:
    """Read the final answer out of `text`.

    `auto` tries, in order: boxed, <answer> tags, an 'answer:' line (its number if it
    has exactly one), then the final number of the last line, then the last line.
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
    if line is not None:
        return _only_number(line) or line
    last = last_line(text)
    if last is None:
        return None
    num = final_number(last)
    return num if num is not None else last


def _only_number(line: str) -> str | None:
    """The number of a line that is one number among words ('42 apples', 'x = 5'), but not
    of an expression ('x+1', '2x'), which is kept whole."""
    nums = _NUMBER.findall(line)
    if len(nums) != 1:
        return None
    rest = line.replace(nums[0], " ", 1)
    if re.fullmatch(r"\s*[a-zA-Z]\s*=\s*", rest) or not _MATHY.search(rest):
        return _clean_number(nums[0])
    return None


def _clean_number(s: str) -> str:
    s = s.replace("−", "-").replace("$", "").replace(",", "").replace(" ", "")
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
    t = _clean_number(s.strip())
    m = re.fullmatch(r"(-?\d+(?:\.\d+)?|-?\.\d+)(?:/(\d+))?", t)
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


_DIGIT = re.compile(r"\d")


@functools.lru_cache(maxsize=65536)
def equivalent(a: str, b: str) -> bool:
    """Whether two extracted answers mean the same thing (symmetric, cached)."""
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

    Each distinct answer is parsed once. An expression in four or more unknowns is not
    compared symbolically (only as text, above): it is prose parsed as a product of letters,
    where sympy spends seconds (up to math-verify's timeout) to say no.
    """
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
