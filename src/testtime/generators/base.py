"""The generator interface: an async policy model that turns requests into completions.

Each call returns its completions together with what it cost; the backend is the one that
knows how many prompt tokens it recomputed and how many it served from a cache.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any

from testtime.core.cost import Cost
from testtime.core.errors import ConfigError
from testtime.core.tools import parse_calls
from testtime.core.types import Completion, Request


@dataclass(frozen=True, slots=True)
class Generation:
    """The completions of one request and the cost of producing them."""

    completions: tuple[Completion, ...]
    cost: Cost


@dataclass(frozen=True, slots=True)
class Piece:
    """One streamed delta of one choice, as an upstream sent it: a text fragment, tool-call
    fragments (OpenAI's `delta.tool_calls` items: an index, and the id, type, function name
    and argument fragments where sent), its logprobs, and on its last, the finish reason."""

    index: int
    text: str = ""
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    finish_reason: str | None = None
    logprobs: Mapping[str, Any] | None = None
    reasoning: str = ""  # a reasoning fragment (delta.reasoning_content or .reasoning)


Listener = Callable[[Piece], None]
_LISTENER: ContextVar[Listener | None] = ContextVar("testtime_stream_listener", default=None)


@contextmanager
def streamed_to(listener: Listener) -> Iterator[None]:
    """Within it, a generator that can stream (the HTTP backend, for one chat request) hands
    each piece of the call this task makes to `listener` as it arrives, and still returns the
    whole `Generation` (counted like any call). Generators that cannot stream ignore it.
    The server's plain streamed path uses it; strategies never do."""
    token = _LISTENER.set(listener)
    try:
        yield
    finally:
        _LISTENER.reset(token)


def stream_listener() -> Listener | None:
    """The listener `streamed_to` set for this task's calls, if any."""
    return _LISTENER.get()


def with_tool_calls(gen: Generation, request: Request) -> Generation:
    """`gen` with the tool calls each completion wrote read out of its text (`core.tools`
    formats; the text keeps what is left): for a backend whose model writes calls as text.
    Nothing changes without tools, or with tool_choice `none`."""
    tools = request.tools
    if tools is None or not tools.offered:
        return gen
    out = []
    for comp in gen.completions:
        calls, rest = parse_calls(comp.text, tools.names)
        out.append(replace(comp, text=rest, tool_calls=calls) if calls else comp)
    return Generation(tuple(out), gen.cost)


class Generator(ABC):
    """A policy model. Implementations batch concurrent calls themselves."""

    name: str = "generator"
    n_params: int = 0  # parameters, for FLOPs = 2 x n_params x tokens
    context_window: int | None = None  # most tokens it reads, prompt + generated; None: unknown
    # it reads a message's non-text content parts (images, audio, files: Message.parts);
    # a text-only model is never sent them (the server refuses them with a 400)
    multimodal: bool = False
    # it sends Request.extra (an upstream engine's fields: reasoning_effort, thinking budgets)
    # on as given; the server answers reasoning_effort by budget forcing on the others
    forwards_extra: bool = False

    @abstractmethod
    async def generate(self, request: Request) -> Generation:
        """Produce `request.n` completions of the request's chat (continuing its prefix)."""

    @abstractmethod
    def count_prompt_tokens(self, request: Request) -> int:
        """Tokens of the formatted prompt plus prefix: what a prefill would process."""

    def clear_cache(self) -> None:  # noqa: B027 (optional hook)
        """Forget cached prompt prefixes, so the next costs are measured from a cold cache.

        Call it only while no request of this generator is running.
        """

    async def features(self, requests: Sequence[Request]) -> list[list[float]]:
        """The policy's own representation of each request's text (prompt + prefix), for
        learned probes. Backends without access to hidden states refuse."""
        raise ConfigError(
            f"generator {self.name!r} cannot give hidden states; learned probes need a local "
            "model (a packaged name, a model directory or .gguf) or the fake"
        )

    async def aclose(self) -> None:  # noqa: B027  (optional: most backends hold nothing)
        """Release the model's resources (threads, memory); idempotent."""

    async def __aenter__(self) -> Generator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
