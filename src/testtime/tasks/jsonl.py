"""Problems from a JSONL file: one object per line, `{"prompt" | "messages", "answer"?, "id"?}`.

The whole file is validated before any problem is returned, and a bad line is reported with
the file, its line number and what is wrong. Other keys of a line are kept as metadata.
Answers are checked by math-aware equivalence of the extracted answer with the gold one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testtime.core.answers import Extractor, format_number
from testtime.core.errors import ConfigError, DataError
from testtime.core.registry import Params
from testtime.core.types import Message, Problem, messages_from
from testtime.tasks.base import TASKS, Task

EXAMPLE = '{"prompt": "What is 2 + 3?", "answer": "5", "id": "q1"}'
LineParser = Callable[[str, str, str], Problem]  # (line, "file:line", default id) -> Problem


@dataclass(frozen=True)
class JsonlParams(Params):
    path: str = ""
    extractor: Extractor = "auto"

    def validate(self) -> None:
        if not self.path.strip():
            raise ConfigError(
                "parameter 'path' is required: the JSONL file to read, e.g. path=q.jsonl"
            )


class JsonlTask(Task):
    """Problems read (and fully validated) from one JSONL file."""

    def __init__(self, path: str | Path, extractor: str = "auto") -> None:
        self.path = Path(path)
        self.name = self.path.stem
        self.extractor = extractor
        self._problems = tuple(load(self.path))

    def problems(self) -> Sequence[Problem]:
        return self._problems


def load(path: Path, parse: LineParser | None = None, example: str = EXAMPLE) -> list[Problem]:
    """Every problem in the file, or a DataError naming the first bad line. `parse` reads
    one line (`parse_line` by default; a task with another line format passes its own) and
    `example` is the line an error shows."""
    parse = parse or parse_line
    try:
        # split on "\n" only: splitlines() would also cut at U+2028 inside JSON strings
        lines = path.read_text(encoding="utf-8-sig").split("\n")
    except FileNotFoundError:
        raise DataError(f"JSONL file {str(path)!r} does not exist; check the path") from None
    except IsADirectoryError:
        raise DataError(f"{str(path)!r} is a directory; give the path of a .jsonl file") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason}); save the file as UTF-8") from None
    except OSError as e:
        raise DataError(f"cannot read JSONL file {str(path)!r}: {e.strerror}") from None
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        problem = parse(line, f"{path}:{lineno}", f"{path.stem}-{len(problems)}")
        if problem.id in seen:
            raise DataError(
                f"{path}:{lineno}: id {problem.id!r} was already used on line {seen[problem.id]}; "
                "ids must be unique"
            )
        seen[problem.id] = lineno
        problems.append(problem)
    if not problems:
        raise DataError(f"{path}: no problems; write one JSON object per line, e.g. {example}")
    return problems


def parse_line(line: str, where: str, default_id: str) -> Problem:
    """One problem from one line; `where` (file:line) prefixes every error."""
    obj = parse_object(line, where, EXAMPLE)
    messages = _messages(obj, where)
    return Problem(
        messages,
        answer=_answer(obj.get("answer"), where),
        id=problem_id(obj.get("id", default_id), where),
        metadata={k: v for k, v in obj.items() if k not in ("prompt", "messages", "answer", "id")},
    )


def parse_object(line: str, where: str, example: str) -> dict[str, Any]:
    """The JSON object on one line, or a DataError at `where` showing `example`."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: not valid JSON ({e.msg}); write e.g. {example}") from None
    if not isinstance(obj, dict):
        kind = type(obj).__name__
        raise DataError(f"{where}: expected a JSON object, got {kind}; write e.g. {example}")
    return obj


def _messages(obj: dict[str, Any], where: str) -> tuple[Message, ...]:
    if ("prompt" in obj) == ("messages" in obj):
        raise DataError(
            f"{where}: give exactly one of 'prompt' (a string) or 'messages' (a list of "
            '{"role", "content"} objects)'
        )
    if "prompt" in obj:
        prompt = obj["prompt"]
        if not isinstance(prompt, str):
            raise DataError(f"{where}: 'prompt' must be a string, got {type(prompt).__name__}")
        if not prompt.strip():
            raise DataError(f"{where}: 'prompt' is empty; give the problem's text")
        return (Message("user", prompt),)
    raw = obj["messages"]
    if not isinstance(raw, list) or not raw:
        raise DataError(f"{where}: 'messages' must be a non-empty list of chat messages")
    try:
        messages = messages_from(raw)
    except ConfigError as e:
        raise DataError(f"{where}: {e}") from None
    if not any(m.content.strip() for m in messages):
        raise DataError(f"{where}: every message is empty; give the problem's text")
    return messages


def _answer(value: Any, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return format_number(value) if isinstance(value, float) else str(value)
    raise DataError(f"{where}: 'answer' must be a string or a number, got {json.dumps(value)}")


def problem_id(value: Any, where: str) -> str:
    """A line's 'id': a non-empty string or an integer (as a string)."""
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise DataError(
        f"{where}: 'id' must be a non-empty string or an integer, got {json.dumps(value)}"
    )


@TASKS.register("jsonl", JsonlParams, JsonlTask)
def jsonl_task(p: JsonlParams) -> Task:
    """Problems from a JSONL file of {"prompt" | "messages", "answer"?, "id"?} lines."""
    return JsonlTask(p.path, p.extractor)
