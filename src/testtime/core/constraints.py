"""Verifiable instructions in the manner of IFEval (Zhou et al. 2023): kinds of constraint on
a whole reply (number of words, bullet points, a JSON shape, all lowercase, ...), each with
its instruction text, its parameters drawn from a seeded RNG, the kinds it cannot be asked
with, and an exact checker.

A constraint is plain data, `{"kind": name, **params}`, so it can ride on
`Problem.metadata["constraints"]` and be checked by a task and by a verifier alike (this
module sits below both). The checkers follow IFEval's definitions, with these choices made
where IFEval calls a library: words are `\\w+` runs (as IFEval counts them); a sentence ends
at `.`, `!` or `?` followed by whitespace or the end (a few abbreviations excepted) and
counts only if it has a letter, instead of NLTK's punkt; lowercase and capitals are
`str.islower` / `str.isupper`, without IFEval's language detection.

Strict and loose as IFEval defines them: strict checks the reply as it is; loose accepts a
constraint when any of eight variants of the reply passes it (the reply, with its first
line removed, its last, both; each of those with every `*` removed), a variant counting only
when it is not blank.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from testtime.core.errors import ConfigError, unknown

Args = Mapping[str, Any]  # a constraint: {"kind": name, **its parameters}
Mode = Literal["strict", "loose"]
MODES: tuple[str, ...] = ("strict", "loose")

# Word pools. Required words (keywords, the phrases a reply must end with) never contain a
# forbidden word, so no draw asks for a word it also forbids (tests/unit/test_instructions.py).
KEYWORDS = (
    "lantern", "river", "garden", "window", "silver", "journey", "morning", "bridge", "candle",
    "ocean", "forest", "music", "pencil", "harbor", "mountain", "coffee", "winter", "thunder",
    "mirror", "orange", "planet", "library", "compass", "feather", "ticket", "blanket",
    "village", "engine", "crystal", "shadow",
)  # fmt: skip
FORBIDDEN = (
    "very", "really", "also", "important", "great", "good", "many", "however", "always",
    "people", "things", "just", "like", "every", "first",
)  # fmt: skip
END_PHRASES = (
    "Is there anything else I can help with?",
    "Let me know if you have additional questions.",
    "Any other questions?",
    "That is all for now.",
    "Thank you for reading.",
)
JSON_KEYS = ("title", "summary", "points", "answer", "details")
LETTERS = "bcdfgkmpvwyz"


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of constraint: how it is drawn, said and checked, and what it excludes."""

    name: str
    say: Callable[[Args], str]  # the instruction, as the prompt states it
    check: Callable[[str, Args], bool]  # whether a reply follows it (strictly)
    draw: Callable[[random.Random], dict[str, Any]]  # its parameters
    conflicts: tuple[str, ...] = ()  # kinds that cannot be asked with it (either way round)


def _no_params(rng: random.Random) -> dict[str, Any]:
    return {}


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# -- length -----------------------------------------------------------------------------------
_WORD = re.compile(r"\w+")
_ABBREVIATION = re.compile(r"\b(?:Mr|Mrs|Ms|Dr|Prof|St|Jr|Sr|vs|etc|e\.g|i\.e)\.", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s|$)")
_LETTER = re.compile(r"[^\W\d_]")


def count_words(text: str) -> int:
    """Runs of word characters, as IFEval counts words."""
    return len(_WORD.findall(text))


def count_sentences(text: str) -> int:
    """Sentences end at '.', '!' or '?' (closing quotes or brackets may follow) before
    whitespace or the end; 'Dr.', 'e.g.' and a few other abbreviations end none; a piece
    counts only when it has a letter (a list's '1.' is not a sentence)."""
    text = _ABBREVIATION.sub(lambda m: m.group(0).replace(".", ""), text)
    return sum(1 for piece in _SENTENCE_END.split(text) if _LETTER.search(piece))


def _draw_words(rng: random.Random) -> dict[str, Any]:
    relation = rng.choice(("at_least", "at_most", "between"))
    if relation == "between":
        low, high = rng.choice(((30, 60), (40, 80), (50, 100)))
        return {"relation": relation, "low": low, "high": high}
    n = rng.choice((30, 50, 80, 100) if relation == "at_least" else (40, 60, 80, 100))
    return {"relation": relation, "n": n}


def _say_words(a: Args) -> str:
    if a["relation"] == "between":
        return f"Answer with between {a['low']} and {a['high']} words."
    return f"Answer with {a['relation'].replace('_', ' ')} {a['n']} words."


def _check_words(text: str, a: Args) -> bool:
    n = count_words(text)
    if a["relation"] == "between":
        return bool(a["low"] <= n <= a["high"])
    return bool(n >= a["n"] if a["relation"] == "at_least" else n <= a["n"])


def _draw_sentences(rng: random.Random) -> dict[str, Any]:
    relation = rng.choice(("at_least", "at_most"))
    return {"relation": relation, "n": rng.choice((3, 4, 5) if relation == "at_least" else (3, 4))}


def _say_sentences(a: Args) -> str:
    return f"Your response should contain {a['relation'].replace('_', ' ')} {a['n']} sentences."


def _check_sentences(text: str, a: Args) -> bool:
    n = count_sentences(text)
    return bool(n >= a["n"] if a["relation"] == "at_least" else n <= a["n"])


# -- structure --------------------------------------------------------------------------------
_STAR_BULLET = re.compile(r"^\s*\*[^\*].*$", re.MULTILINE)
_DASH_BULLET = re.compile(r"^\s*-.*$", re.MULTILINE)


def _check_bullets(text: str, a: Args) -> bool:
    """IFEval's count: lines starting with '*' (not '**') or '-'."""
    return len(_STAR_BULLET.findall(text)) + len(_DASH_BULLET.findall(text)) == int(a["n"])


def _say_bullets(a: Args) -> str:
    return (
        f"Your answer must contain exactly {a['n']} bullet points in markdown, each on its own "
        'line starting with "* ".'
    )


_DIVIDER = re.compile(r"\s?\*\*\*\s?")


def _check_paragraphs(text: str, a: Args) -> bool:
    """IFEval's count: pieces between '***' dividers; a blank piece is allowed only first or
    last (and then not counted)."""
    pieces = _DIVIDER.split(text)
    n = len(pieces)
    for i, piece in enumerate(pieces):
        if not piece.strip():
            if i not in (0, len(pieces) - 1):
                return False
            n -= 1
    return bool(n == a["n"])


def _say_paragraphs(a: Args) -> str:
    return (
        f"There should be {a['n']} paragraphs, separated from each other by the markdown "
        "divider ***."
    )


def _check_sections(text: str, a: Args) -> bool:
    """IFEval's count: pieces after each 'SECTION <number>' marker (case matters)."""
    return len(re.split(r"\s?SECTION\s?\d+\s?", text)) - 1 >= int(a["n"])


def _say_sections(a: Args) -> str:
    return (
        f"Your response must have {a['n']} sections. Mark the beginning of each section with "
        "SECTION X, such as: SECTION 1"
    )


_TITLE = re.compile(r"<<[^\n]+>>")


def _check_title(text: str, a: Args) -> bool:
    return any(t.lstrip("<").rstrip(">").strip() for t in _TITLE.findall(text))


_HIGHLIGHT = re.compile(r"\*[^\n\*]*\*")
_BOLD = re.compile(r"\*\*[^\n\*]*\*\*")


def _check_highlights(text: str, a: Args) -> bool:
    """IFEval's count: non-blank *italic* and **bold** spans within a line."""
    found = [h for h in _HIGHLIGHT.findall(text) if h.strip("*").strip()]
    found += [h for h in _BOLD.findall(text) if h.removeprefix("**").removesuffix("**").strip()]
    return len(found) >= int(a["n"])


def _say_highlights(a: Args) -> str:
    return (
        f"Highlight at least {_plural(a['n'], 'section')} in your answer with markdown, i.e. "
        "*highlighted section*."
    )


_PLACEHOLDER = re.compile(r"\[.*?\]")


def _say_placeholders(a: Args) -> str:
    return (
        f"The response must contain at least {_plural(a['n'], 'placeholder')} represented by "
        "square brackets, such as [address]."
    )


_FENCE_OPEN = ("```json", "```Json", "```JSON", "```")


def _check_json(text: str, a: Args) -> bool:
    """The whole reply (inside a ``` fence or not) parses as JSON; with keys, an object
    that has each of them."""
    body = text.strip()
    for fence in _FENCE_OPEN:  # in turn, as IFEval strips them
        body = body.removeprefix(fence)
    body = body.removesuffix("```").strip()
    try:
        value = json.loads(body)
    except ValueError:
        return False
    keys: Sequence[str] = a.get("keys", ())
    return not keys or (isinstance(value, dict) and all(k in value for k in keys))


def _draw_json(rng: random.Random) -> dict[str, Any]:
    return {"keys": rng.sample(JSON_KEYS, rng.choice((0, 1, 2)))}


def _say_json(a: Args) -> str:
    said = "Wrap your entire output in JSON format. You can use markdown ticks such as ```."
    keys = " and ".join(f'"{k}"' for k in a.get("keys", ()))
    return f"{said} The JSON must be an object with the keys {keys}." if keys else said


_POSTSCRIPT = re.compile(r"\s*p\.\s?s\..*$", re.MULTILINE)


# -- words and letters ------------------------------------------------------------------------
def _draw_keywords(rng: random.Random) -> dict[str, Any]:
    return {"words": rng.sample(KEYWORDS, rng.choice((1, 2, 3)))}


def _check_keywords(text: str, a: Args) -> bool:
    """IFEval's test: each keyword occurs, in any case (inside a longer word too)."""
    return all(re.search(re.escape(w), text, re.IGNORECASE) for w in a["words"])


def _draw_forbidden(rng: random.Random) -> dict[str, Any]:
    return {"words": rng.sample(FORBIDDEN, rng.choice((1, 2, 3)))}


def _check_forbidden(text: str, a: Args) -> bool:
    """No forbidden word occurs as a whole word, in any case."""
    return not any(re.search(rf"\b{re.escape(w)}\b", text, re.IGNORECASE) for w in a["words"])


def _listed(words: Sequence[str]) -> str:
    return ", ".join(words)


def _check_keyword_frequency(text: str, a: Args) -> bool:
    return len(re.findall(re.escape(a["word"]), text, re.IGNORECASE)) >= int(a["n"])


def _check_letter_frequency(text: str, a: Args) -> bool:
    return text.lower().count(a["letter"]) >= int(a["n"])


def _check_capital_words(text: str, a: Args) -> bool:
    """Words (runs of word characters) written all in capitals ('I' counts, as in IFEval)."""
    return sum(1 for w in _WORD.findall(text) if w.isupper()) >= int(a["n"])


def _check_end(text: str, a: Args) -> bool:
    """The reply, stripped of whitespace and then of double quotes around it (as IFEval
    does), ends with the phrase, in any case."""
    return text.strip().strip('"').lower().endswith(str(a["phrase"]).strip().lower())


def _check_quotation(text: str, a: Args) -> bool:
    body = text.strip()
    return len(body) > 1 and body[0] == '"' and body[-1] == '"'


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("words", _say_words, _check_words, _draw_words),
        Kind("sentences", _say_sentences, _check_sentences, _draw_sentences, ("json",)),
        Kind(
            "bullets", _say_bullets, _check_bullets, lambda rng: {"n": rng.choice((2, 3, 4, 5))},
            ("json", "quotation", "highlights"),
        ),
        Kind(
            "paragraphs", _say_paragraphs, _check_paragraphs,
            lambda rng: {"n": rng.choice((2, 3))}, ("json", "sections"),
        ),
        Kind(
            "sections", _say_sections, _check_sections, lambda rng: {"n": rng.choice((2, 3))},
            ("json", "paragraphs", "lowercase"),
        ),
        Kind(
            "title",
            lambda a: "Your answer must contain a title, wrapped in double angular brackets, "
            "such as <<poem of joy>>.",
            _check_title, _no_params, ("json", "quotation"),
        ),
        Kind(
            "highlights", _say_highlights, _check_highlights,
            lambda rng: {"n": rng.choice((1, 2, 3))}, ("json", "bullets"),
        ),
        Kind(
            "placeholders", _say_placeholders,
            lambda t, a: len(_PLACEHOLDER.findall(t)) >= a["n"],
            lambda rng: {"n": rng.choice((1, 2, 3))},
        ),
        Kind(
            "json", _say_json, _check_json, _draw_json,
            ("bullets", "paragraphs", "sections", "title", "highlights", "postscript",
             "quotation", "end_phrase", "uppercase", "no_commas", "sentences"),
        ),
        Kind(
            "postscript",
            lambda a: "At the end of your response, please explicitly add a postscript "
            "starting with P.S.",
            lambda t, a: bool(_POSTSCRIPT.search(t.lower())), _no_params,
            ("json", "end_phrase"),
        ),
        Kind(
            "end_phrase",
            lambda a: f'Finish your response with this exact phrase: "{a["phrase"]}". No other '
            "words should follow this phrase.",
            _check_end, lambda rng: {"phrase": rng.choice(END_PHRASES)},
            ("json", "quotation", "postscript"),
        ),
        Kind(
            "quotation",
            lambda a: "Wrap your entire response with double quotation marks.",
            _check_quotation, _no_params, ("json", "bullets", "title", "end_phrase"),
        ),
        Kind(
            "keywords",
            lambda a: f"Include the keywords {_listed(a['words'])} in the response."
            if len(a["words"]) > 1 else f"Include the keyword {a['words'][0]} in the response.",
            _check_keywords, _draw_keywords,
        ),
        Kind(
            "forbidden",
            lambda a: f"Do not include the words {_listed(a['words'])} in the response."
            if len(a["words"]) > 1 else f"Do not include the word {a['words'][0]} in the response.",
            _check_forbidden, _draw_forbidden,
        ),
        Kind(
            "keyword_frequency",
            lambda a: f"In your response, the word {a['word']} should appear at least "
            f"{_times(a['n'])}.",
            _check_keyword_frequency,
            lambda rng: {"word": rng.choice(KEYWORDS), "n": rng.choice((2, 3, 4))},
        ),
        Kind(
            "letter_frequency",
            lambda a: f'In your response, the letter "{a["letter"]}" should appear at least '
            f"{_times(a['n'])}.",
            _check_letter_frequency,
            lambda rng: {"letter": rng.choice(LETTERS), "n": rng.choice((3, 5, 8))},
        ),
        Kind(
            "capital_words",
            lambda a: "In your response, words with all capital letters should appear at least "
            f"{_times(a['n'])}.",
            _check_capital_words, lambda rng: {"n": rng.choice((3, 5, 8))}, ("lowercase",),
        ),
        Kind(
            "lowercase",
            lambda a: "Your entire response should be in English, and in all lowercase letters. "
            "No capital letters are allowed.",
            lambda t, a: t.islower(), _no_params, ("uppercase", "capital_words", "sections"),
        ),
        Kind(
            "uppercase",
            lambda a: "Your entire response should be in English, and in all capital letters.",
            lambda t, a: t.isupper(), _no_params, ("lowercase", "json"),
        ),
        Kind(
            "no_commas",
            lambda a: "In your entire response, refrain from the use of any commas.",
            lambda t, a: "," not in t, _no_params, ("json",),
        ),
    )
}  # fmt: skip


def conflict(a: str, b: str) -> bool:
    """Whether kinds `a` and `b` cannot be asked together (either one says so, or the same)."""
    return a == b or b in KINDS[a].conflicts or a in KINDS[b].conflicts


def draw(rng: random.Random, k: int) -> tuple[dict[str, Any], ...]:
    """`k` constraints of different kinds, no two in conflict, each drawn in turn from `rng`
    (so the first j of k draws are the j a smaller k gets from the same state)."""
    chosen: list[dict[str, Any]] = []
    for _ in range(k):
        free = [n for n in KINDS if not any(conflict(n, c["kind"]) for c in chosen)]
        if not free:
            raise ConfigError(f"no {k} compatible constraints exist; ask for fewer")
        name = rng.choice(free)
        chosen.append({"kind": name, **KINDS[name].draw(rng)})
    return tuple(chosen)


def kind_of(constraint: Args) -> Kind:
    """The kind of a constraint (a ConfigError for an unknown kind)."""
    name = constraint.get("kind") if isinstance(constraint, Mapping) else None
    if not isinstance(name, str) or name not in KINDS:
        raise unknown("constraint kind", str(name), tuple(KINDS))
    return KINDS[name]


def say(constraint: Args) -> str:
    """The instruction that asks for `constraint`."""
    return kind_of(constraint).say(constraint)


def variants(reply: str, mode: Mode) -> tuple[str, ...]:
    """The texts a constraint is checked on: strict, the reply; loose, IFEval's eight
    (the reply, without its first line, its last, both; each also with every '*' removed)."""
    if mode == "strict":
        return (reply,)
    lines = reply.split("\n")
    cut = (
        reply,
        "\n".join(lines[1:]).strip(),
        "\n".join(lines[:-1]).strip(),
        "\n".join(lines[1:-1]).strip(),
    )
    return (*cut, *(t.replace("*", "") for t in cut))


def follows(reply: str, constraint: Args, mode: Mode = "strict") -> bool:
    """Whether `reply` follows one constraint: some non-blank variant of it passes."""
    kind = kind_of(constraint)
    try:
        return any(t.strip() and kind.check(t, constraint) for t in variants(reply, mode))
    except (KeyError, TypeError) as exc:
        raise ConfigError(
            f"constraint {dict(constraint)!r} lacks or mistypes a parameter ({exc}); "
            "write it as the instructions task does"
        ) from None


def results(reply: str, constraints: Sequence[Args], mode: Mode = "strict") -> tuple[bool, ...]:
    """Each constraint's pass (True) or fail, in order: IFEval's instruction-level result."""
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return tuple(follows(reply, c, mode) for c in constraints)
