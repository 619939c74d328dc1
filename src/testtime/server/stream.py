"""Server-sent events for `stream: true`: progress while the strategy runs, then the answer.

Chunks are `chat.completion.chunk` objects. Progress chunks carry an empty delta and a
`testtime` object (samples done, the current leader, the cost so far); then the answer
comes as a content delta with its finish_reason (every choice index first sent its
`role`); usage comes only with `stream_options.include_usage`, on a chunk of its own (as
OpenAI sends it); then `data: [DONE]`. A plain request to a generator that streams (an
upstream over HTTP) is relayed instead: its text and tool-call deltas and finish reason as
the upstream sends them, usage at the end as counted in the ledger. A /v1/completions
stream sends `text_completion` chunks (`choices[].text`) the same way. An error is an
`error` event, then `[DONE]`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from testtime.generators.base import Piece
from testtime.server.errors import from_exception
from testtime.server.plan import Completions, Plain, Strategic
from testtime.server.progress import Observed
from testtime.server.work import Job

DONE = "data: [DONE]\n\n"


def sse(data: dict[str, Any], event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n"


async def events(job: Job, include_usage: bool) -> AsyncIterator[str]:
    """The request's event stream, ending with [DONE] whatever happens. Each choice index
    first comes with `role: assistant` (chat); usage only with include_usage, on a last
    chunk of its own (as OpenAI sends it, every chunk before it saying `usage: null`)."""
    assert job.task is not None
    task, plan = job.task, job.plan
    text = isinstance(plan, Completions) or (isinstance(plan, Strategic) and plan.raw)
    head: dict[str, Any] = {
        "id": job.cid,
        "object": "text_completion" if text else "chat.completion.chunk",
        "created": int(time.time()),
        "model": job.model,
    }
    if include_usage:
        head["usage"] = None
    choices = _count(plan)
    if not text:
        for i in range(choices):
            yield sse({**head, "choices": [_delta(i, {"role": "assistant", "content": ""})]})
    empty = _choice(0, "", text)
    strategic = isinstance(plan, Strategic)
    relayed: set[int] = set()  # choice indices an upstream streamed piece by piece
    if job.pieces is not None:
        async for piece in _pieces(job.pieces, task):
            relayed.add(piece.index)
            yield sse({**head, "choices": [_relay(piece)]})
    while not task.done():
        if strategic and await _changed(job.generator, task):
            yield sse({**head, "choices": [empty], "testtime": job.generator.snapshot()})
        elif not strategic:
            await asyncio.wait({task})
    if strategic and job.generator.changed.is_set():  # calls that ended with the run
        yield sse({**head, "choices": [empty], "testtime": job.generator.snapshot()})
    try:
        body = task.result()
    except BaseException as exc:  # every failure becomes an error event
        if isinstance(exc, asyncio.CancelledError):
            raise
        yield sse(from_exception(exc).body(), event="error")
        yield DONE
        return
    chunks = []
    for choice in body["choices"]:
        if choice["index"] in relayed:  # already sent as it came, its finish reason too
            continue
        content = choice["text"] if text else choice["message"]["content"]
        one = _choice(choice["index"], content, text, choice["finish_reason"])
        if not text and choice["message"].get("reasoning_content"):  # before the answer
            one["delta"] = {"reasoning_content": choice["message"]["reasoning_content"],
                            **one["delta"]}  # fmt: skip
        if not text and choice["message"].get("tool_calls"):  # whole calls, one delta each
            calls = choice["message"]["tool_calls"]
            one["delta"]["tool_calls"] = [{"index": j, **c} for j, c in enumerate(calls)]
        one.update(logprobs=choice["logprobs"], stop_reason=choice["stop_reason"])
        chunks.append({**head, "choices": [one]})
    if "testtime" in body and chunks:
        chunks[-1]["testtime"] = body["testtime"]
    if include_usage:
        chunks.append({**head, "choices": [], "usage": body["usage"]})
    for chunk in chunks:
        yield sse(chunk)
    yield DONE


async def _pieces(
    queue: asyncio.Queue[Piece | None], task: asyncio.Task[Any]
) -> AsyncIterator[Piece]:
    """The pieces a streaming generator relays, as they arrive, until the task ends."""
    task.add_done_callback(lambda _: queue.put_nowait(None))
    while (piece := await queue.get()) is not None:
        yield piece


def _relay(piece: Piece) -> dict[str, Any]:
    """A relayed piece as a chunk's choice: its text and tool-call fragments as the upstream
    sent them (its first chunk's role was sent already), its logprobs and finish reason."""
    delta: dict[str, Any] = {"content": piece.text} if piece.text else {}
    if piece.reasoning:
        delta["reasoning_content"] = piece.reasoning
    if piece.tool_calls:
        delta["tool_calls"] = [dict(t) for t in piece.tool_calls]
    out = _delta(piece.index, delta, piece.finish_reason)
    if piece.logprobs is not None:
        out["logprobs"] = dict(piece.logprobs)
    return out


def _count(plan: Plain | Strategic | Completions) -> int:
    """How many choices the response will have."""
    if isinstance(plan, Plain):
        return plan.request.n
    if isinstance(plan, Completions):
        return sum(r.n for r in plan.requests)
    return 1


def _choice(index: int, content: str, text: bool, finish: str | None = None) -> dict[str, Any]:
    """A chunk's choice: a chat delta, or a text_completion's text."""
    if text:
        return {"index": index, "text": content, "logprobs": None, "finish_reason": finish}
    return _delta(index, {"content": content} if content or finish else {}, finish)


def _delta(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"index": index, "delta": delta, "finish_reason": finish}


async def _changed(observed: Observed, task: asyncio.Task[Any]) -> bool:
    """Wait until a generator call finishes (True) or the task ends (False)."""
    waiter = asyncio.ensure_future(observed.changed.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if observed.changed.is_set():
        observed.changed.clear()
        return True
    return False


class EventStream(StreamingResponse):
    """An SSE response that cancels its request's task however the response ends (the
    client gone, the server stopping), even if the stream never started."""

    def __init__(self, job: Job, include_usage: bool) -> None:
        super().__init__(
            events(job, include_usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self.job = job

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self.job.task is not None:
                self.job.task.cancel()
