"""Solutions as sequences of steps: how a text is cut into steps, and how per-step scores
become one score.

A search extends a candidate one step at a time and a process verifier scores each step,
so both must cut a text the same way: by blank lines (the default, as HF search-and-learn
does), by `Step k:` markers, by a regular expression, or by a literal stop string.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from testtime.core.errors import ConfigError

SplitMode = Literal["blank_line", "markers", "regex", "stop"]
Aggregate = Literal["last", "min", "product", "mean"]
MODES: tuple[SplitMode, ...] = ("blank_line", "markers", "regex", "stop")
AGGREGATES: tuple[Aggregate, ...] = ("last", "min", "product", "mean")
_MARKER = r"(?m)^[ \t]*(?=Step\s+\d+\s*[:.)])"


@dataclass(frozen=True)
class StepSplitter:
    """Cuts a solution text into steps. `pattern` is the regex (mode 'regex', a separator)
    or the literal separator (mode 'stop'); the other modes need none."""

    mode: SplitMode = "blank_line"
    pattern: str = ""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"unknown step mode {self.mode!r}; available: {', '.join(MODES)}")
        if self.mode in ("regex", "stop") and not self.pattern:
            raise ConfigError(f"step mode {self.mode!r} needs a pattern (the step separator)")
        _ = self.regex  # compile now: a bad pattern is a config error, not a crash later

    @cached_property
    def regex(self) -> re.Pattern[str]:
        source = {
            "blank_line": r"\n[ \t]*\n",
            "markers": _MARKER,
            "regex": self.pattern,
            "stop": re.escape(self.pattern),
        }[self.mode]
        try:
            return re.compile(source)
        except re.error as e:
            raise ConfigError(f"step pattern {self.pattern!r} is not a valid regex: {e}") from None

    @property
    def stop(self) -> str | None:
        """The stop string that ends one step while generating, when there is one."""
        return {"blank_line": "\n\n", "markers": "\nStep ", "stop": self.pattern}.get(self.mode)

    def split(self, text: str) -> tuple[str, ...]:
        """The non-empty steps of `text`, stripped, in order."""
        return tuple(p.strip() for p in self.regex.split(text) if p and p.strip())

    def matches(self, text: str) -> bool:
        """Whether the separator occurs in `text` at all."""
        return self.regex.search(text) is not None


def aggregate(scores: Sequence[float], how: Aggregate = "last") -> float:
    """One score from per-step scores: the last (Snell et al.'s best), the minimum, the
    product (its_hub's default) or the mean. No steps scores 0."""
    if how not in AGGREGATES:
        raise ConfigError(f"unknown aggregation {how!r}; available: {', '.join(AGGREGATES)}")
    if not scores:
        return 0.0
    if how == "last":
        return float(scores[-1])
    if how == "min":
        return float(min(scores))
    if how == "product":
        return float(math.prod(scores))
    return float(sum(scores) / len(scores))
