"""The plain data that flows through testtime: problems, requests, completions, candidates, results.

All are frozen dataclasses: a search's state is values, so traces can be saved and replayed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from testtime.core.cost import Cost
from testtime.core.errors import ConfigError
from testtime.core.reasoning import Extra
from testtime.core.structured import ResponseFormat
from testtime.core.tools import ToolCall, Tools, calls_from_wire

__all__ = ["ToolCall", "Tools"]  # re-exported: a chat's tool calls are plain data too

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")
FinishReason = Literal["stop", "length", "eos", "cancelled"]
MAX_TOKENS = 1 << 20  # the most new tokens one request may ask for
# the schema of a written trace (`testtime run --trace`, `testtime diffuse --trace`): each
# result carries it as "trace_version"; a reader refuses a newer one, and one without it is 1
TRACE_VERSION = 1


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message. An assistant message may carry the `tool_calls` it made (its
    content then often empty); a `tool` message is one call's result, `tool_call_id` naming
    the call. A message with non-text content parts (image_url, input_audio, file, ...)
    keeps all its `parts` as sent, in order, for a model that reads them (an upstream);
    `content` is then its text parts joined, for text readers and display."""

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    parts: tuple[Mapping[str, Any], ...] = ()  # OpenAI content parts, as sent (multimodal)

    @property
    def media(self) -> tuple[str, ...]:
        """The types of its non-text parts (empty for a text-only message)."""
        return tuple(str(p.get("type")) for p in self.parts if p.get("type") != "text")

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ConfigError(
                f"message role {self.role!r} is not allowed; use system, user, assistant or tool"
            )
        if self.tool_calls and self.role != "assistant":
            raise ConfigError(f"a {self.role} message cannot carry tool_calls; only assistant")


@dataclass(frozen=True, slots=True)
class Problem:
    """One input: chat messages, an optional gold answer, an id, and task metadata."""

    messages: tuple[Message, ...]
    answer: str | None = None
    id: str = "0"
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.messages or not any(m.content.strip() or m.media for m in self.messages):
            raise ConfigError(f"problem {self.id!r} has an empty prompt; give it some text")

    @classmethod
    def from_prompt(
        cls, prompt: str, answer: str | None = None, id: str = "0", system: str | None = None
    ) -> Problem:
        """A single-turn problem from a plain prompt (and an optional system message)."""
        msgs = (Message("system", system),) if system else ()
        return cls((*msgs, Message("user", prompt)), answer=answer, id=id)

    @property
    def prompt(self) -> str:
        """The text of the last user message (for display)."""
        users = [m.content for m in self.messages if m.role == "user"]
        return users[-1] if users else self.messages[-1].content


@dataclass(frozen=True, slots=True)
class Request:
    """What a strategy asks a generator for: n continuations of a chat.

    `prefix` is a partial assistant text to continue (the steps so far of a search).
    A seeded request's samples are samples `first_index`, `first_index + 1`, ... of one
    reproducible stream, so a pool of K samples can be drawn in pieces (and resumed) and
    still equal one request for all K. With `first_finish`, the generator stops the other
    n-1 sequences as soon as one ends with stop/eos and returns them with finish reason
    "cancelled" (first-finish search). At `deadline` (a `time.monotonic()` value, set from
    a seconds budget) the generator ends every sample where it is, with finish reason
    "length", and raises `DeadlineError` for a request it had not started. An `asked`
    request is `Context.ask`'s (a judge's or aggregator's): generators answer it like any,
    and wrappers that watch samples (the server's progress) know its replies are none.
    `response_format` asks for JSON (any, or of a schema; `core.structured`): the embedded
    model constrains its decoding to it, an upstream is sent it as it came. `tools` offers
    functions to call (`core.tools`): rendered into the prompt locally, sent on upstream;
    completions then carry the calls a sample made.
    """

    messages: tuple[Message, ...]
    prefix: str = ""
    n: int = 1
    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int = 0  # also return the k most likely tokens at each position
    first_finish: bool = False  # return when the first of the n finishes; cut the rest
    first_index: int = 0  # these n are samples first_index.. of the seeded stream
    deadline: float | None = None  # time.monotonic() by which to return what was generated
    asked: bool = False  # Context.ask's: its replies are verifier work, not samples
    response_format: ResponseFormat | None = None  # JSON output (core.structured)
    tools: Tools | None = None  # functions the model may call (core.tools)
    # a raw prompt (text or token ids) continued as it is, with no chat template: OpenAI's
    # /v1/completions; `messages` then hold it as one user message (see `Request.raw`)
    prompt: str | tuple[int, ...] | None = None
    # an upstream engine's own fields (reasoning_effort, thinking budgets), sent on as given
    # by a generator that `forwards_extra` (core.reasoning); others do not read them
    extra: Extra | None = None

    def __post_init__(self) -> None:
        if not self.messages:
            raise ConfigError("a request needs at least one message")
        if self.n <= 0:
            raise ConfigError(f"n must be a positive number of samples, got {self.n}")
        if self.first_index < 0:
            raise ConfigError(f"first_index must be >= 0, got {self.first_index}")
        if not 0 < self.max_tokens <= MAX_TOKENS:
            raise ConfigError(
                f"max_tokens must be in 1..{MAX_TOKENS} (no model reads more), "
                f"got {self.max_tokens}"
            )
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise ConfigError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not (0 <= self.top_logprobs <= 20):
            raise ConfigError(f"top_logprobs must be in 0..20, got {self.top_logprobs}")
        if not (0 < self.top_p <= 1):
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @classmethod
    def raw(cls, prompt: str | Sequence[int], **fields: Any) -> Request:
        """A request to continue `prompt` as it is (text, or token ids the model reads
        without decoding), not as a chat; a generator that only reads chats sees the text
        as one user message (token ids: an empty one)."""
        body = prompt if isinstance(prompt, str) else tuple(int(t) for t in prompt)
        text = body if isinstance(body, str) else ""
        return cls((Message("user", text),), prompt=body, **fields)


@dataclass(frozen=True, slots=True)
class Completion:
    """One continuation produced by a generator, with its real token counts.

    `prompt_tokens` is the prompt length this sequence was conditioned on; of a request's
    completions, the generator reports how many prompt tokens it actually recomputed in
    `Cost` (a shared prefill is computed once for all n). `logprobs` holds the chosen
    tokens' log-probabilities and `certainty` the per-token KL(uniform || p) when asked;
    `top_logprobs` the k most likely tokens (decoded text -> logprob) at each position,
    `tokens` the text of each generated token (with logprobs; None where unknown).
    """

    text: str
    prompt_tokens: int
    generated_tokens: int
    finish_reason: FinishReason
    logprobs: tuple[float, ...] | None = None
    certainty: tuple[float, ...] | None = None
    top_logprobs: tuple[Mapping[str, float], ...] | None = None
    tokens: tuple[str, ...] | None = None  # each generated token's text, with logprobs
    tool_calls: tuple[ToolCall, ...] | None = None  # the calls it made (text: the rest)
    reasoning: str | None = None  # its reasoning apart from the text (an upstream's)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One partial or finished solution: its text, steps, extracted answer, scores, parent."""

    text: str
    answer: str | None = None
    scores: Mapping[str, float] = field(default_factory=dict)
    completion: Completion | None = None
    steps: tuple[str, ...] = ()
    parent: int | None = None
    id: int = 0

    def with_score(self, name: str, value: float) -> Candidate:
        return replace(self, scores={**self.scores, name: value})

    def score(self, name: str | None = None) -> float:
        """The named score, or the only/first one; raises if the candidate has none."""
        if name is not None:
            return self.scores[name]
        if not self.scores:
            raise ConfigError("this candidate has not been scored; give the strategy a verifier")
        return next(iter(self.scores.values()))


@dataclass(frozen=True, slots=True)
class Result:
    """What a strategy returns for one problem."""

    problem_id: str
    answer: str | None
    candidates: tuple[Candidate, ...]
    cost: Cost
    strategy: Mapping[str, Any]
    chosen: int | None = None
    budget_exhausted: bool = False
    correct: bool | None = None
    trace: Mapping[str, Any] | None = None

    @property
    def text(self) -> str | None:
        """The chosen candidate's full text, if one was chosen."""
        if self.chosen is None:
            return None
        return next((c.text for c in self.candidates if c.id == self.chosen), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "problem_id": self.problem_id,
            "answer": self.answer,
            "correct": self.correct,
            "text": self.text,
            "budget_exhausted": self.budget_exhausted,
            "strategy": dict(self.strategy),
            "cost": self.cost.to_dict(),
            "candidates": [candidate_dict(c) for c in self.candidates],
            "trace": self.trace,
        }


def traced(r: Result) -> dict[str, Any]:
    """A result as a trace file holds it: `to_dict`, the chosen candidate's id and the
    trace schema's version."""
    return {"trace_version": TRACE_VERSION, **r.to_dict(), "chosen": r.chosen}


def candidate_dict(c: Candidate, correct: bool | None = None) -> dict[str, Any]:
    """One candidate as plain data: the one schema of `--trace` files and the lab's store.

    `correct` is its grade against the gold answer, when it was graded. Token counts are 0
    and `finish_reason` None for a candidate no generator call produced (a search's root)."""
    comp = c.completion
    return {
        "id": c.id,
        "parent": c.parent,
        "text": c.text,
        "steps": list(c.steps),
        "answer": c.answer,
        "correct": correct,
        "scores": dict(c.scores),
        "prompt_tokens": comp.prompt_tokens if comp else 0,
        "generated_tokens": comp.generated_tokens if comp else 0,
        "finish_reason": comp.finish_reason if comp else None,
        "tool_calls": [t.wire() for t in comp.tool_calls] if comp and comp.tool_calls else None,
    }


def candidate_from_dict(data: Mapping[str, Any], position: int = 0) -> Candidate:
    """The candidate `candidate_dict` wrote (its grade is `data["correct"]`); its completion
    holds what is stored of one: the counts and finish reason, the candidate's text and the
    tool calls it made (not logprobs). Reads the older forms too: stores that wrote `finish`
    and no `id` (the id is then its `position`), trace files that wrote null token counts,
    and either without `tool_calls`."""
    finish = data.get("finish_reason", data.get("finish"))
    completion = None
    if finish is not None:
        completion = Completion(
            data.get("text", ""),
            int(data.get("prompt_tokens") or 0),
            int(data.get("generated_tokens") or 0),
            finish,
            tool_calls=calls_from_wire(data.get("tool_calls"), "tool_calls") or None,
        )
    return Candidate(
        data.get("text", ""),
        data.get("answer"),
        scores={str(k): float(v) for k, v in (data.get("scores") or {}).items()},
        completion=completion,
        steps=tuple(data.get("steps") or ()),
        parent=data.get("parent"),
        id=int(data.get("id", position)),
    )


def messages_from(raw: Sequence[Mapping[str, Any]], where: str = "messages") -> tuple[Message, ...]:
    """Chat messages from plain dicts, with errors that name the offending item."""
    out = []
    for i, m in enumerate(raw):
        if not isinstance(m, Mapping) or not isinstance(m.get("content"), str):
            raise ConfigError(f"{where}[{i}] must be an object with a string 'content'")
        out.append(Message(m.get("role", "user"), m["content"]))
    return tuple(out)
