"""The OpenAI wire format of the HTTP generator: request bodies in, completions and costs out.

Pure functions without I/O, so every convention is pinned by a test without a server:

- Continuing a partial assistant text: the chat plus a final assistant message holding the
  prefix, with vLLM's `continue_final_message: true, add_generation_prompt: false` (which
  `testtime serve` honours too); a server that echoes the prefix gets it cut off again.
- The completions endpoint gets a plain rendering of the chat (`render_prompt`).
- Finish reasons: "length" is "length". "stop" is "stop" when the server names the matched
  stop string (vLLM's `stop_reason`, SGLang's `matched_stop`) and "eos" when it names none
  or a token id. A server that does not say (OpenAI, Ollama, llama.cpp) gets "stop" if the
  request had stop strings: mistaking an ended step for a finished answer would end a
  search early, while the converse costs one more short call that ends at once. Anything
  else ("content_filter", ...) is "eos".
- Cost: `usage` in real tokens (cached prompt tokens apart); a `usage["testtime"]` object is
  the upstream testtime server's own ledger and is adopted as it is, so costs add up across
  a proxy hop. Without `usage`, tokens are estimated (see `HTTPGenerator`). Reasoning
  tokens (`completion_tokens_details.reasoning_tokens`) are counted apart too.
- Reasoning: an engine's own fields (`Request.extra`: reasoning_effort, thinking budgets)
  go into the body as sent; a choice's reasoning text (`reasoning_content` or `reasoning`)
  comes back as `Completion.reasoning`, apart from its text.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Literal

from testtime.core.cost import Cost
from testtime.core.errors import ConfigError, TesttimeError
from testtime.core.tools import ToolCall, calls_from_wire
from testtime.core.types import Completion, FinishReason, Message, Request
from testtime.generators.base import Piece

Endpoint = Literal["chat", "completions"]
PATHS: dict[str, str] = {"chat": "chat/completions", "completions": "completions"}


class ServerError(TesttimeError):
    """The server could not be reached, refused the request, or answered nonsense."""

    def __init__(self, message: str, status: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.status = status  # the HTTP status, when the server answered at all
        self.detail = detail  # the server's own error message


@dataclass(frozen=True, slots=True)
class Reply:
    """One HTTP answer, parsed: its completions, its cost, and where the cost came from."""

    completions: tuple[Completion, ...]
    cost: Cost
    adopted: bool  # the cost is the upstream testtime server's own ledger
    prompt_tokens: int | None  # as the server reported them (None: it did not say)


# -- requests ------------------------------------------------------------------------------
def render_prompt(request: Request) -> str:
    """The plain prompt for the completions endpoint: a lone user message as it is (a base
    model continues the text), else `Role: content` blocks and an `Assistant:` cue; the
    prefix follows directly."""
    msgs = request.messages
    if len(msgs) == 1 and msgs[0].role == "user":
        return msgs[0].content + request.prefix
    chat = "\n\n".join(f"{m.role.capitalize()}: {m.content}" for m in msgs)
    return f"{chat}\n\nAssistant: {request.prefix}"


def endpoint_of(request: Request, endpoint: Endpoint) -> Endpoint:
    """Where a request goes: a raw prompt (`Request.prompt`) always to the completions
    endpoint, which continues text without a chat template; a chat to `endpoint`."""
    return "completions" if request.prompt is not None else endpoint


def raw_prompt(request: Request) -> str | list[int]:
    """The completions endpoint's `prompt`: a raw prompt as it is (token ids as a list),
    else the chat rendered by `render_prompt`; the prefix follows the text."""
    raw = request.prompt
    if raw is None:
        return render_prompt(request)
    if isinstance(raw, str):
        return raw + request.prefix
    if request.prefix:
        raise ConfigError(
            "a prompt of token ids cannot be continued from a text prefix over HTTP; send "
            "the prompt as text"
        )
    return list(raw)


def body(
    request: Request, model: str, endpoint: Endpoint, n: int, seed: int | None
) -> dict[str, Any]:
    """The JSON body asking for `n` samples of the request (seeded with `seed`)."""
    out: dict[str, Any] = {
        "model": model,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
    }
    if n > 1:
        out["n"] = n
    if request.stop:
        out["stop"] = list(request.stop)
    if seed is not None:
        out["seed"] = seed
    if request.response_format is not None:  # as the caller sent it (vLLM takes it on both)
        out["response_format"] = request.response_format.wire()
    if request.extra is not None:  # an engine's own fields (core.reasoning), as sent
        out.update(request.extra.wire())
    want_logprobs = request.logprobs or request.top_logprobs > 0
    if endpoint == "completions":
        out["prompt"] = raw_prompt(request)
        if want_logprobs:
            out["logprobs"] = request.top_logprobs
        return out
    out["messages"] = [wire_message(m) for m in request.messages]
    if request.tools is not None:  # as the caller sent them, tool_choice too
        out.update(request.tools.wire())
    if request.prefix:
        out["messages"].append({"role": "assistant", "content": request.prefix})
        out["continue_final_message"] = True
        out["add_generation_prompt"] = False
    if want_logprobs:
        out["logprobs"] = True
        if request.top_logprobs:
            out["top_logprobs"] = request.top_logprobs
    return out


def wire_message(m: Message) -> dict[str, Any]:
    """A chat message in OpenAI's shape: an assistant's calls as `tool_calls` (its content
    null when it wrote none, as OpenAI sends it), a tool result with its `tool_call_id`; a
    message with non-text content parts (images, audio, files) sends all its parts as sent."""
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.parts:
        out["content"] = [dict(p) for p in m.parts]
    if m.tool_calls:
        out["tool_calls"] = [c.wire() for c in m.tool_calls]
        out["content"] = m.content or None
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    return out


def reply_calls(c: Mapping[str, Any], endpoint: Endpoint, url: str) -> tuple[ToolCall, ...] | None:
    """The tool calls of one chat choice (`message.tool_calls`), None when it made none."""
    message = c.get("message") if endpoint == "chat" else None
    raw = message.get("tool_calls") if isinstance(message, dict) else None
    if not raw:
        return None
    try:
        return calls_from_wire(raw, "tool_calls")
    except ConfigError as exc:
        raise ServerError(
            f"the server at {url} sent tool calls that cannot be read: {exc}"
        ) from None


def reply_reasoning(c: Mapping[str, Any]) -> str | None:
    """The reasoning text of one chat choice, apart from its answer: `reasoning_content`
    (DeepSeek, SGLang, llama.cpp, vLLM before 0.10) or `reasoning` (vLLM, OpenRouter)."""
    message = c.get("message")
    if not isinstance(message, dict):
        return None
    for key in ("reasoning_content", "reasoning"):
        if isinstance(message.get(key), str) and message[key]:
            return str(message[key])
    return None


# -- replies -------------------------------------------------------------------------------
def parse_reply(
    data: Any,
    request: Request,
    *,
    endpoint: Endpoint,
    n_params: int,
    url: str,
    estimate: Callable[[str], int],
    prompt_estimate: int,
) -> Reply:
    """Completions and cost from a decoded JSON answer; `estimate` counts a text's tokens
    and `prompt_estimate` stands in for the prompt when the server sends no `usage`."""
    choices = data.get("choices") if isinstance(data, dict) else None
    if (
        not isinstance(choices, list)
        or not choices
        or not all(isinstance(c, dict) for c in choices)
    ):
        raise ServerError(
            f"the server at {url} answered without a list of 'choices' ({str(data)[:200]!r}); "
            "is it an OpenAI-compatible server, and is base_url its API root (usually .../v1)?"
        )
    choices = sorted(choices, key=lambda c: _count(c, "index") or 0)
    parsed = [_choice(c, request, endpoint, url) for c in choices]
    usage = data.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    prompt, total = _count(usage, "prompt_tokens"), _count(usage, "completion_tokens")
    if total is None:
        counts = [len(lp) if lp else estimate(text) for text, _, lp, _ in parsed]
    else:
        counts = split_tokens(total, parsed, request.max_tokens)
    comps = tuple(
        Completion(
            text,
            prompt if prompt is not None else prompt_estimate,
            k,
            finish,
            lp,
            None,
            top,
            tokens=token_texts(c.get("logprobs")) if lp is not None else None,
            tool_calls=reply_calls(c, endpoint, url),
            reasoning=reply_reasoning(c),
        )
        for (text, finish, lp, top), k, c in zip(parsed, counts, choices, strict=True)
    )
    if "testtime" in usage:
        return Reply(comps, cost_from_dict(usage["testtime"], url), True, prompt)
    cached = _cached(usage) if prompt is not None else 0
    recomputed = (prompt if prompt is not None else prompt_estimate) - cached
    cost = Cost.of_generation(n_params, recomputed, cached, sum(counts), len(comps))
    cost += Cost(reasoning_tokens=_reasoning_tokens(usage, sum(counts)))
    return Reply(comps, cost, False, prompt)


_Parsed = tuple[str, FinishReason, tuple[float, ...] | None, tuple[Mapping[str, float], ...] | None]


def _choice(c: dict[str, Any], request: Request, endpoint: Endpoint, url: str) -> _Parsed:
    """One choice's text (an echoed prefix cut off), finish reason and logprobs."""
    if endpoint == "chat":
        message = c.get("message")
        text = message.get("content") if isinstance(message, dict) else None
    else:
        text = c.get("text")
    if not isinstance(text, str | None):
        raise ServerError(f"the server at {url} answered a choice without text: {str(c)[:200]!r}")
    text = text or ""
    if request.prefix and text.startswith(request.prefix):
        text = text[len(request.prefix) :]
    try:
        lp, top = parse_logprobs(c.get("logprobs"), request.top_logprobs)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ServerError(
            f"the server at {url} sent logprobs that cannot be read ({type(exc).__name__}: "
            f"{exc}): {str(c.get('logprobs'))[:200]!r}"
        ) from None
    return text, finish_reason(c, request), lp, top


def finish_reason(choice: Mapping[str, Any], request: Request) -> FinishReason:
    """The finish reason by the rule in the module docstring."""
    raw = choice.get("finish_reason")
    if raw == "length":
        return "length"
    if raw != "stop":
        return "eos"
    for key in ("stop_reason", "matched_stop"):  # vLLM and testtime; SGLang
        if key in choice:
            return "stop" if isinstance(choice[key], str) else "eos"
    return "stop" if request.stop else "eos"


def parse_logprobs(
    raw: Any, k: int
) -> tuple[tuple[float, ...] | None, tuple[Mapping[str, float], ...] | None]:
    """Chosen-token logprobs and top-k maps, from the chat (`content: [...]`) or the legacy
    completions (`token_logprobs`, `top_logprobs`) layout; (None, None) when absent."""
    if not isinstance(raw, dict):
        return None, None
    if isinstance(raw.get("content"), list):
        items = [t for t in raw["content"] if isinstance(t, dict)]
        lps = [float(t.get("logprob", -math.inf)) for t in items]
        tops = [
            {e["token"]: float(e["logprob"]) for e in t.get("top_logprobs") or []} for t in items
        ]
    else:
        lps = [float(x) if x is not None else -math.inf for x in raw.get("token_logprobs") or []]
        tops = [{s: float(v) for s, v in (t or {}).items()} for t in raw.get("top_logprobs") or []]
    return (tuple(lps) or None), (tuple(tops) if k and tops else None)


def token_texts(raw: Any) -> tuple[str, ...] | None:
    """Each generated token's text, from the chat (`content[].token`) or the legacy
    completions (`tokens`) layout of logprobs; None when the server did not send them."""
    if not isinstance(raw, dict):
        return None
    items = raw.get("content") if isinstance(raw.get("content"), list) else None
    texts = [t.get("token") for t in items if isinstance(t, dict)] if items else raw.get("tokens")
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        return None
    return tuple(texts)


def split_tokens(total: int, parsed: Sequence[_Parsed], max_tokens: int) -> list[int]:
    """Per-choice generated tokens that add up to the server's total: a choice cut by
    max_tokens generated exactly that many, the others share the rest in proportion to
    their logprob counts (exact when present) or text lengths."""
    if len(parsed) == 1:
        return [total]
    fixed = [max_tokens if finish == "length" else None for _, finish, _, _ in parsed]
    weights = [len(lp) if lp else len(t.encode()) + 1 for t, _, lp, _ in parsed]
    free = [i for i, f in enumerate(fixed) if f is None]
    rest = max(0, total - sum(f for f in fixed if f is not None))
    mass = sum(weights[i] for i in free) or 1
    shares = {i: rest * weights[i] / mass for i in free}
    counts = {i: math.floor(s) for i, s in shares.items()}
    by_remainder = sorted(free, key=lambda i: counts[i] - shares[i])  # largest remainder first
    for i in by_remainder[: rest - sum(counts.values())]:
        counts[i] += 1
    return [f if f is not None else counts[i] for i, f in enumerate(fixed)]


def cost_from_dict(raw: Any, url: str) -> Cost:
    """A `Cost` from the dict a testtime server puts in `usage["testtime"]` (unknown keys
    are ignored, missing ones are 0)."""
    if not isinstance(raw, dict):
        raise ServerError(f"the server at {url} sent usage.testtime that is not an object")
    values: dict[str, Any] = {}
    for f in fields(Cost):
        v = raw.get(f.name, 0)
        if isinstance(v, bool) or not isinstance(v, int | float) or not v >= 0:
            raise ServerError(
                f"the server at {url} sent usage.testtime.{f.name} = {v!r}; "
                "it must be a number >= 0"
            )
        values[f.name] = int(v) if isinstance(f.default, int) else float(v)
    return Cost(**values)


def _reasoning_tokens(usage: Mapping[str, Any], generated: int) -> int:
    """Of the generated tokens, those the server says went to reasoning
    (`completion_tokens_details.reasoning_tokens`, OpenAI's usage); 0 when it does not say."""
    details = usage.get("completion_tokens_details")
    found = _count(details, "reasoning_tokens") if isinstance(details, dict) else None
    return min(found or 0, generated)


def _cached(usage: Mapping[str, Any]) -> int:
    details = usage.get("prompt_tokens_details")
    cached = _count(details, "cached_tokens") if isinstance(details, dict) else None
    return min(cached or 0, _count(usage, "prompt_tokens") or 0)


def _object(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _count(d: Mapping[str, Any], key: str) -> int | None:
    v = d.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


# -- a streamed reply ---------------------------------------------------------------------
class Assembly:
    """A streamed chat reply (server-sent events), read line by line: each chunk's deltas
    come out as `Piece`s as they arrive, and the whole reply is put together in the shape
    of a non-streamed answer (`data()`, for `parse_reply`): texts, tool calls merged by
    their index (argument fragments joined), finish reasons, logprobs, the last usage. An
    error event, or a stream that ends before every choice finished, is a ServerError."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.done = False  # [DONE] was read
        self.usage: dict[str, Any] | None = None
        self._choices: dict[int, dict[str, Any]] = {}
        self._calls: dict[int, dict[int, dict[str, Any]]] = {}
        self._error_event = False

    def feed(self, line: str) -> list[Piece]:
        """The pieces one SSE line brings (none for comments, event names, [DONE], usage)."""
        line = line.strip()
        if line.startswith("event:"):
            self._error_event = line[6:].strip() == "error"
            return []
        if not line.startswith("data:") or self.done:
            return []
        payload = line[5:].strip()
        if payload == "[DONE]":
            self.done = True
            return []
        try:
            chunk = json.loads(payload)
        except ValueError:
            raise ServerError(
                f"the server at {self.url} streamed something that is not JSON: {payload[:200]!r}"
            ) from None
        if self._error_event or (isinstance(chunk, dict) and "error" in chunk):
            detail = error_detail(payload)
            raise ServerError(f"the server at {self.url} failed mid-stream: {detail}", None, detail)
        if not isinstance(chunk, dict):
            return []
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        raw = chunk.get("choices")
        return [p for c in raw if isinstance(c, dict) for p in self._choice(c)] if raw else []

    def _choice(self, c: dict[str, Any]) -> list[Piece]:
        index = _count(c, "index") or 0
        into = self._choices.setdefault(index, {"index": index, "content": [], "lp": []})
        delta = _object(c.get("delta"))
        text = delta["content"] if isinstance(delta.get("content"), str) else ""
        into["content"].append(text)
        thought = next((delta[k] for k in ("reasoning_content", "reasoning")
                        if isinstance(delta.get(k), str)), "")  # fmt: skip
        into.setdefault("reasoning", []).append(thought)
        calls = tuple(t for t in delta.get("tool_calls") or () if isinstance(t, dict))
        for t in calls:
            self._call(index, t)
        lp = c.get("logprobs") if isinstance(c.get("logprobs"), dict) else None
        if lp is not None and isinstance(lp.get("content"), list):
            into["lp"].extend(lp["content"])
        finish = c.get("finish_reason")
        if isinstance(finish, str):
            into["finish_reason"] = finish
            for key in ("stop_reason", "matched_stop"):
                if key in c:
                    into[key] = c[key]
        finish = finish if isinstance(finish, str) else None
        if not (text or calls or finish or lp or thought):
            return []  # a role-only or empty delta: nothing to relay
        return [Piece(index, text, calls, finish, lp, thought)]

    def _call(self, index: int, t: dict[str, Any]) -> None:
        """One tool-call fragment merged into the call it continues (by its index)."""
        calls = self._calls.setdefault(index, {})
        at = _count(t, "index")
        at = at if at is not None else len(calls)
        call = calls.setdefault(at, {"type": "function", "function": {"arguments": ""}})
        if isinstance(t.get("id"), str):
            call["id"] = t["id"]
        fn = _object(t.get("function"))
        if isinstance(fn.get("name"), str):
            call["function"]["name"] = call["function"].get("name", "") + fn["name"]
        if isinstance(fn.get("arguments"), str):
            call["function"]["arguments"] += fn["arguments"]

    def data(self) -> dict[str, Any]:
        """The whole reply as a non-streamed answer; a ServerError if it is unfinished."""
        unfinished = [i for i, c in self._choices.items() if "finish_reason" not in c]
        if not self._choices or unfinished:
            raise ServerError(
                f"the stream from {self.url} ended before its answer was finished (no finish "
                "reason); the upstream may have failed or been stopped"
            )
        choices = []
        for i, c in sorted(self._choices.items()):
            message: dict[str, Any] = {"role": "assistant", "content": "".join(c["content"])}
            if "".join(c.get("reasoning", [])):
                message["reasoning_content"] = "".join(c["reasoning"])
            calls = self._calls.get(i)
            if calls:
                message["tool_calls"] = [calls[k] for k in sorted(calls)]
            one = {k: v for k, v in c.items() if k not in ("content", "lp", "reasoning")}
            one["message"] = message
            if c["lp"]:
                one["logprobs"] = {"content": c["lp"]}
            choices.append(one)
        return {"choices": choices, "usage": self.usage or {}}


# -- errors and retries --------------------------------------------------------------------
def error_detail(text: str) -> str:
    """The server's own error message out of an error body (OpenAI, vLLM, FastAPI, llama.cpp)."""
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[:300]
    if isinstance(data, dict):
        err = data.get("error")
        for found in (
            err.get("message") if isinstance(err, dict) else err,
            data.get("message"),
            data.get("detail"),
        ):
            if found:
                return str(found)[:300]
    return text.strip()[:300]


def refuses_n(error: ServerError) -> bool:
    """Whether a 400/422 says the server does not take n > 1 (llama.cpp: 'Only one
    completion choice is allowed'; others name the field n)."""
    return error.status in (400, 422) and bool(re.search(r"\bn\b|choice", error.detail, re.I))


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), if any."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
