"""Tool calling: OpenAI's `tools` / `tool_choice` checked, tool calls read out of a model's
text, and one canonical form of a call, which is what a vote over samples compares.

A `Tools` is what a request offers the model: the tools as the caller sent them (kept as
JSON text, so a request stays hashable and a proxy forwards them unchanged), the choice
(`auto`, `none`, `required`, or one named function), and the argument keys a vote ignores.

Models write calls in a few formats; `parse_calls` reads them all (see `FORMATS`):

- Hermes / Qwen 2.5 / SmolLM's: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`,
  one or more, or a JSON list inside one tag (a tag left open at the end is read too);
- Llama 3.1: `<|python_tag|>` followed by `{"name": ..., "parameters": {...}}` (several
  separated by `;`);
- a bare JSON object (or list of them) with `name` and `arguments` (or `parameters`), the
  whole reply or a fenced block of it, when its name is one of the offered tools.

The vote key (`call_key`) is the calls' names and parsed arguments, keys sorted, numbers
written one way (`core.structured.dumps`), the ignored argument keys left out, the calls of
one reply sorted (parallel calls have no order), behind `CALL` so it never equals a text
answer. The rule when some samples call a tool and others answer in text (`by_kind`, used by
every vote in `core.voting.leader`): the kind is voted first (calls against texts, by summed
vote weight; a tie goes to the kind seen first), then the answer within the winning kind.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from testtime.core.errors import ConfigError
from testtime.core.structured import ResponseFormat, check_schema, dumps, response_format

Choice = Literal["auto", "none", "required", "function"]
CHOICES: tuple[str, ...] = ("auto", "none", "required")
CALL = "tool_calls:"  # the prefix of a tool-call answer (a vote key), never of a text answer
FORMATS = ("hermes", "llama3", "json")
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # OpenAI's rule for a function's name
_HERMES = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_PYTHON_TAG = "<|python_tag|>"
_FENCE = re.compile(r"^```(?:json)?\s*\n?(.*?)```$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call of a function: its id, its name, and its arguments as the JSON text given
    (as OpenAI sends them: a string, parsed only to compare calls)."""

    id: str
    name: str
    arguments: str

    def wire(self) -> dict[str, Any]:
        """The call in OpenAI's shape (a message's `tool_calls` item)."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True, slots=True)
class Tools:
    """A request's tools. `sent` is the tools list as the caller wrote it (JSON text);
    `choice` is auto, none, required, or `function` (then `function` names it);
    `choice_sent` the tool_choice as sent (None when absent); `ignore` the argument keys
    a vote leaves out (at the top level of the arguments)."""

    sent: str
    choice: Choice = "auto"
    function: str | None = None
    choice_sent: str | None = None
    ignore: tuple[str, ...] = ()

    @property
    def functions(self) -> list[dict[str, Any]]:
        """The function objects ({name, description?, parameters?}) of the tools."""
        return [dict(t["function"]) for t in json.loads(self.sent)]

    @property
    def names(self) -> frozenset[str]:
        return frozenset(str(f["name"]) for f in self.functions)

    @property
    def offered(self) -> bool:
        """Whether the model may call a tool at all (tool_choice is not `none`)."""
        return self.choice != "none"

    def wire(self) -> dict[str, Any]:
        """`tools` and `tool_choice` for an OpenAI-compatible upstream, as they were sent."""
        out: dict[str, Any] = {"tools": json.loads(self.sent)}
        if self.choice_sent is not None:
            out["tool_choice"] = json.loads(self.choice_sent)
        return out


def tools(raw: Any, choice: Any = None, ignore: Iterable[str] = ()) -> Tools | None:
    """A checked `Tools` from OpenAI's `tools` and `tool_choice` (None when no tools were
    given and tool_choice is absent or `none`); a ConfigError naming what is wrong."""
    keys = tuple(ignore)
    if raw is None or (isinstance(raw, list) and not raw):
        if choice not in (None, "none", "auto"):
            raise ConfigError(
                f"tool_choice {choice!r} needs tools; send the tools the model may call, or "
                "leave tool_choice out"
            )
        if keys:
            raise ConfigError("ignore_tool_arguments needs tools; send tools or leave it out")
        return None
    if not isinstance(raw, list):
        raise ConfigError(
            "tools must be a list like [{'type': 'function', 'function': {'name': ..., "
            f"'parameters': {{...}}}}], not {type(raw).__name__}"
        )
    names: list[str] = []
    for i, tool in enumerate(raw):
        names.append(_tool(tool, f"tools[{i}]"))
    if len(set(names)) != len(names):
        raise ConfigError("tools name one function twice; give each function once")
    if any(not isinstance(k, str) or not k for k in keys):
        raise ConfigError("ignore_tool_arguments must be a list of argument names")
    kind, function = _choice(choice, names)
    sent = json.dumps(raw, allow_nan=False)
    choice_sent = None if choice is None else json.dumps(choice)
    return Tools(sent, kind, function, choice_sent, keys)


def _tool(tool: Any, where: str) -> str:
    if not isinstance(tool, Mapping) or tool.get("type") != "function":
        raise ConfigError(
            f"{where} must be {{'type': 'function', 'function': {{...}}}} (function tools "
            "are the only kind)"
        )
    fn = tool.get("function")
    if not isinstance(fn, Mapping):
        raise ConfigError(f"{where}.function must be an object with a 'name'")
    name = fn.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"{where}.function.name must be 1-64 letters, digits, '_' or '-'")
    params = fn.get("parameters")
    if params is not None:
        if not isinstance(params, Mapping):
            raise ConfigError(f"{where}.function.parameters must be a JSON schema object")
        check_schema(params, f"{where}.function.parameters")
    if fn.get("description") is not None and not isinstance(fn.get("description"), str):
        raise ConfigError(f"{where}.function.description must be a string")
    return name


def _choice(choice: Any, names: Sequence[str]) -> tuple[Choice, str | None]:
    if choice is None or choice == "auto":
        return "auto", None
    if choice == "none":
        return "none", None
    if choice == "required":
        return "required", None
    fn = choice.get("function") if isinstance(choice, Mapping) else None
    name = fn.get("name") if isinstance(fn, Mapping) else None
    if not isinstance(choice, Mapping) or choice.get("type") != "function" or name is None:
        raise ConfigError(
            f"tool_choice {choice!r} is not allowed; use 'auto', 'none', 'required' or "
            "{'type': 'function', 'function': {'name': NAME}}"
        )
    if name not in names:
        raise ConfigError(
            f"tool_choice names function {name!r}, which is not among the tools "
            f"({', '.join(names)})"
        )
    return "function", str(name)


# -- reading calls out of a model's text ---------------------------------------------------
def parse_calls(
    text: str, names: Iterable[str] | None = None, new_id: Callable[[], str] | None = None
) -> tuple[tuple[ToolCall, ...], str]:
    """The tool calls written in `text` and the text left around them (the reply's content).

    Tagged calls (`<tool_call>`, `<|python_tag|>`) are read whatever their names; a bare
    JSON object is a call only when its name is one of `names` (when given), so a reply
    that merely is JSON stays text. A tag whose JSON cannot be read is left in the text."""
    make = new_id or call_id
    known = None if names is None else frozenset(names)
    calls: list[ToolCall] = []
    if "<tool_call>" in text:
        kept = []
        last = 0
        for m in _HERMES.finditer(text):
            found = _objects(m.group(1))
            if found is None:
                continue
            calls.extend(_call(o, make) for o in found)
            kept.append(text[last : m.start()])
            last = m.end()
        kept.append(text[last:])
        if calls:
            return tuple(calls), "".join(kept).strip()
    if _PYTHON_TAG in text:
        head, _, tail = text.partition(_PYTHON_TAG)
        found = []
        for part in _split_semicolons(tail.strip()):
            objects = _objects(part)
            if objects is None:
                break
            found.extend(objects)
        else:
            if found:
                return tuple(_call(o, make) for o in found), head.strip()
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    body = fenced.group(1).strip() if fenced else stripped
    if body.startswith(("{", "[")):
        objects = _objects(body)
        if objects and (known is None or all(o["name"] in known for o in objects)):
            return tuple(_call(o, make) for o in objects), ""
    return (), text


def _objects(raw: str) -> list[dict[str, Any]] | None:
    """The call objects in `raw` (one object or a list of them), or None if it is not."""
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    items = value if isinstance(value, list) else [value]
    if not items or not all(_is_call(o) for o in items):
        return None
    return items


def _is_call(o: Any) -> bool:
    if not isinstance(o, dict) or not isinstance(o.get("name"), str) or not o["name"]:
        return False
    args = o.get("arguments", o.get("parameters", {}))
    return isinstance(args, dict | str)


def _call(o: Mapping[str, Any], make: Callable[[], str]) -> ToolCall:
    args = o.get("arguments", o.get("parameters", {}))
    text = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
    return ToolCall(make(), str(o["name"]), text)


def _split_semicolons(text: str) -> list[str]:
    """Llama 3.1's `call; call` split at the semicolons between JSON values (not inside)."""
    parts, depth, start, quoted, escaped = [], 0, 0, False, False
    for i, ch in enumerate(text):
        if quoted:
            escaped, quoted = (False, True) if escaped else (ch == "\\", ch != '"')
            continue
        if ch == '"':
            quoted = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
        elif ch == ";" and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def call_id() -> str:
    """A fresh call id, as OpenAI writes them."""
    return f"call_{uuid.uuid4().hex[:24]}"


def calls_from_wire(raw: Any, where: str) -> tuple[ToolCall, ...]:
    """Tool calls from OpenAI's `tool_calls` list (a message's, or an upstream's reply);
    arguments given as an object are kept as its JSON text."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{where} must be a list of tool calls")
    out = []
    for i, c in enumerate(raw):
        fn = c.get("function") if isinstance(c, Mapping) else None
        name = fn.get("name") if isinstance(fn, Mapping) else None
        if not isinstance(name, str) or not name:
            raise ConfigError(
                f"{where}[{i}] must be {{'id': ..., 'type': 'function', 'function': "
                "{'name': ..., 'arguments': '...'}}"
            )
        args = fn.get("arguments", "{}") if isinstance(fn, Mapping) else "{}"
        text = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
        cid = c.get("id") if isinstance(c, Mapping) else None
        out.append(ToolCall(cid if isinstance(cid, str) and cid else call_id(), name, text))
    return tuple(out)


# -- the vote key ------------------------------------------------------------------------------
def call_key(calls: Sequence[ToolCall], ignore: Iterable[str] = ()) -> str:
    """The canonical form of a reply's calls: `CALL` + the JSON list of {name, arguments},
    arguments parsed (text that is not JSON kept as a string), `ignore`d keys left out,
    keys sorted, numbers one way, the calls sorted."""
    skip = frozenset(ignore)
    forms = sorted(
        dumps({"name": c.name, "arguments": _arguments(c.arguments, skip)}) for c in calls
    )
    return CALL + "[" + ",".join(forms) + "]"


def _arguments(text: str, skip: frozenset[str]) -> Any:
    try:
        value = json.loads(text, parse_float=Decimal, parse_int=Decimal)
    except ValueError:
        return text.strip()
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k not in skip}
    return value


def is_call(answer: str) -> bool:
    """Whether an answer is a tool-call vote key (`call_key`), not a text answer."""
    return answer.startswith(CALL)


def answer(
    calls: Sequence[ToolCall] | None,
    text: str,
    extract: Callable[[str], str | None],
    ignore: Iterable[str] = (),
) -> str | None:
    """A sample's answer in a tools request: its calls' key when it called a tool, else
    what `extract` reads from its text."""
    return call_key(calls, ignore) if calls else extract(text)


def same_or_call(same: Callable[[str, str], bool]) -> Callable[[str, str], bool]:
    """`same` for text answers; tool-call keys are the same only when equal, and never the
    same as a text answer."""

    def equal(a: str, b: str) -> bool:
        if is_call(a) or is_call(b):
            return a == b
        return same(a, b)

    return equal


def by_kind(answers: Sequence[str], weights: Sequence[float]) -> bool | None:
    """Which kind wins when some answers are calls and some texts: True (calls) or False
    (texts) by summed weight, a tie to the kind seen first; None when all are one kind."""
    kinds = [is_call(a) for a in answers]
    if all(kinds) or not any(kinds):
        return None
    calls = sum(w for w, k in zip(weights, kinds, strict=True) if k)
    texts = sum(w for w, k in zip(weights, kinds, strict=True) if not k)
    return calls > texts or (calls == texts and kinds[0])


def forced_format(t: Tools) -> ResponseFormat | None:
    """What a model that decodes under a grammar is held to when tool_choice forces a call
    (`required`, or one named function): a JSON object {name, arguments} of an offered
    function, arguments following its parameters' schema; None when nothing is forced."""
    if t.choice not in ("required", "function"):
        return None
    shapes = [
        {
            "type": "object",
            "properties": {
                "name": {"type": "string", "enum": [f["name"]]},
                "arguments": f.get("parameters") or {"type": "object"},
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for f in t.functions
        if t.choice == "required" or f["name"] == t.function
    ]
    schema = shapes[0] if len(shapes) == 1 else {"anyOf": shapes}
    return response_format(
        {"type": "json_schema", "json_schema": {"name": "tool_call", "schema": schema}}
    )


# -- a model without tools in its chat template ------------------------------------------------
def system_prompt(t: Tools) -> str:
    """The tools described in a system message, in the Hermes format (what Qwen 2.5's and
    NousResearch's templates write): for a model whose chat template knows no tools."""
    listed = "\n".join(
        json.dumps({"type": "function", "function": f}, ensure_ascii=False) for f in t.functions
    )
    if t.choice == "function":
        must = f"You must call the function {t.function!r}."
    elif t.choice == "required":
        must = "You must call at least one function."
    else:
        must = "Call a function only when it helps; otherwise answer in plain text."
    return (
        "You may call one or more functions to assist with the user query. "
        f"{must}\n\nYou are provided with function signatures within <tools></tools> "
        f"XML tags:\n<tools>\n{listed}\n</tools>\n\nFor each function call, return a json "
        "object with function name and arguments within <tool_call></tool_call> XML tags:\n"
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    )


def call_text(calls: Sequence[ToolCall]) -> str:
    """An assistant's earlier calls written back as the Hermes tags a model reads."""
    return "\n".join(
        "<tool_call>\n"
        + json.dumps({"name": c.name, "arguments": _loaded(c.arguments)}, ensure_ascii=False)
        + "\n</tool_call>"
        for c in calls
    )


def result_text(content: str) -> str:
    """A tool's result as the Hermes `<tool_response>` a model reads (in a user turn)."""
    return f"<tool_response>\n{content}\n</tool_response>"


def _loaded(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments
