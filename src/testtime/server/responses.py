"""Chat-completion bodies: choices, OpenAI-shaped logprobs, and `usage` with the itemised cost.

`usage` holds the standard fields (prompt tokens counting cached ones, completion tokens,
total) plus `testtime`: the whole `Cost` ledger, which a proxy in front of this server
adopts so costs add up across the hop. A strategy's response also says how its answer was
chosen (`testtime.groups`, `testtime.selection`): where the vote decided nothing, the
server's fallback rule chose, never the first sample silently.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from testtime.core.cost import Cost
from testtime.core.registry import Spec
from testtime.core.types import Completion, Request, Result
from testtime.core.voting import FIRST, SINGLETONS, fallback
from testtime.generators.base import Generation

FLOOR = -9999.0  # what OpenAI-compatible servers send for a logprob of -inf


def new_id(kind: str = "chatcmpl") -> str:
    return f"{kind}-{uuid.uuid4().hex}"


def envelope(cid: str, model: str, created: int, kind: str = "chat.completion") -> dict[str, Any]:
    return {"id": cid, "object": kind, "created": created, "model": model}


def usage(cost: Cost) -> dict[str, Any]:
    """Standard usage (reasoning tokens apart, of the completion tokens, as OpenAI counts
    them) plus the itemised ledger under `testtime`."""
    prompt = cost.prompt_tokens + cost.cached_prompt_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": cost.generated_tokens,
        "total_tokens": prompt + cost.generated_tokens,
        "prompt_tokens_details": {"cached_tokens": cost.cached_prompt_tokens},
        "completion_tokens_details": {"reasoning_tokens": cost.reasoning_tokens},
        "testtime": cost.to_dict(),
    }


def finish(comp: Completion | None, stop: tuple[str, ...]) -> tuple[str, str | None]:
    """OpenAI's finish_reason and vLLM's stop_reason (the stop string, None at end of text).

    The generator cuts a stop string from the text without saying which one matched; with
    several, stop_reason is the first listed, so a stop is never mistaken for an end.
    """
    if comp is not None and comp.tool_calls:
        return "tool_calls", None
    if comp is None or comp.finish_reason == "eos":
        return "stop", None
    if comp.finish_reason == "stop":
        return "stop", stop[0] if stop else None
    return "length", None  # "length", or cut short by a sibling ("cancelled")


def logprobs(comp: Completion) -> dict[str, Any] | None:
    """`{"content": [{token, logprob, top_logprobs}]}`; a token's text is known only when it
    is among its position's top_logprobs (the generator reports the chosen one's logprob)."""
    if comp.logprobs is None:
        return None
    tops = comp.top_logprobs or ()
    texts = comp.tokens or ()
    content = []
    for i, lp in enumerate(comp.logprobs):
        top = tops[i] if i < len(tops) else {}
        token = _token(lp, top, texts[i] if i < len(texts) else None)
        content.append(
            {
                "token": token,
                "logprob": _finite(lp),
                "bytes": list(token.encode()) if token else None,
                "top_logprobs": [
                    {"token": t, "logprob": _finite(v), "bytes": list(t.encode())}
                    for t, v in top.items()
                ],
            }
        )
    return {"content": content}


def _token(lp: float, top: Mapping[str, float], known: str | None = None) -> str:
    if known is not None:
        return known
    return next((t for t, v in top.items() if math.isclose(v, lp, abs_tol=1e-6)), "")


def _finite(x: float) -> float:
    return x if math.isfinite(x) else FLOOR


def plain_body(
    cid: str, model: str, gen: Generation, request: Request, seconds: float
) -> dict[str, Any]:
    """The response of a plain request: one choice per completion."""
    choices = []
    for i, comp in enumerate(gen.completions):
        reason, stop_reason = finish(comp, request.stop)
        choices.append(
            {
                "index": i,
                "message": assistant(comp.text, comp),
                "logprobs": logprobs(comp) if request.logprobs else None,
                "finish_reason": reason,
                "stop_reason": stop_reason,
            }
        )
    cost = gen.cost if gen.cost.seconds else _with_seconds(gen.cost, seconds)
    return {**envelope(cid, model, int(time.time())), "choices": choices, "usage": usage(cost)}


def assistant(text: str, comp: Completion | None) -> dict[str, Any]:
    """The reply's message: its text, and the tool calls it made (content null when it
    wrote nothing beside them, as OpenAI sends it); its reasoning apart, as
    `reasoning_content` (DeepSeek's, SGLang's and llama.cpp's name), where it has any."""
    calls = comp.tool_calls if comp is not None else None
    out: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        out = {
            "role": "assistant",
            "content": text or None,
            "tool_calls": [c.wire() for c in calls],
        }
    if comp is not None and comp.reasoning:
        out["reasoning_content"] = comp.reasoning
    return out


def _with_seconds(cost: Cost, seconds: float) -> Cost:
    return cost + Cost(seconds=seconds)


def chosen(result: Result) -> Completion | None:
    return next(
        (c.completion for c in result.candidates if c.id == result.chosen and c.completion), None
    )


def answer_text(result: Result) -> str:
    """What the strategy chose: the candidate's full text, else its bare answer."""
    return result.text if result.text is not None else (result.answer or "")


def selected(result: Result, rule: str) -> tuple[Result, dict[str, Any]]:
    """The result as served, and how its answer was chosen: `groups` is SINGLETONS when
    every sample was its own answer group (else None), and `selection` names what chose:
    "strategy" (its own rule), the strategy's rule among singletons (e.g. "verifier"), or,
    where only sample order would have, the fallback `rule` (core.voting.fallback), which
    then chooses the answer; "first" when it was asked for or had nothing to rank by."""
    trace = result.trace or {}
    if trace.get("groups") != SINGLETONS:
        return result, {"groups": None, "selection": "strategy"}
    named = str(trace.get("selection", FIRST))
    pick, used = fallback(result.candidates, rule) if named == FIRST else (None, named)
    if pick is not None:
        result = replace(result, chosen=pick.id, answer=pick.answer)
    return result, {"groups": SINGLETONS, "selection": used}


def testtime_info(
    result: Result, budget: str, verifier: Spec | None, how: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "answer": result.answer,
        "strategy": dict(result.strategy),
        "verifier": verifier.to_dict() if verifier else None,
        "budget": budget,
        "chosen": result.chosen,
        "budget_exhausted": result.budget_exhausted,
        "candidates": len(result.candidates),
        **(how or {"groups": None, "selection": "strategy"}),
    }


def strategy_body(
    cid: str,
    model: str,
    result: Result,
    budget: str,
    verifier: Spec | None,
    fallback_rule: str = "likelihood",
) -> dict[str, Any]:
    """The response of a strategy run: one choice holding the chosen candidate (or, where
    the vote decided nothing, the one `fallback_rule` chooses; `selected`)."""
    result, how = selected(result, fallback_rule)
    reason, stop_reason = finish(chosen(result), ())
    choice = {
        "index": 0,
        "message": assistant(answer_text(result), chosen(result)),
        "logprobs": None,
        "finish_reason": reason,
        "stop_reason": stop_reason,
    }
    return {
        **envelope(cid, model, int(time.time())),
        "choices": [choice],
        "usage": usage(result.cost),
        "testtime": testtime_info(result, budget, verifier, how),
    }


# -- /v1/completions -------------------------------------------------------------------------
def legacy_logprobs(comp: Completion, offset: int) -> dict[str, Any] | None:
    """OpenAI's legacy completions logprobs: `tokens`, `token_logprobs`, `top_logprobs` (one
    map per position, None without alternatives) and `text_offset` (each token's start in
    the choice's text, after `offset` characters of echoed prompt)."""
    if comp.logprobs is None:
        return None
    tops = comp.top_logprobs or ()
    texts = comp.tokens or ()
    tokens, offsets = [], []
    for i, lp in enumerate(comp.logprobs):
        top = tops[i] if i < len(tops) else {}
        tokens.append(_token(lp, top, texts[i] if i < len(texts) else None))
        offsets.append(offset)
        offset += len(tokens[-1])
    return {
        "tokens": tokens,
        "token_logprobs": [_finite(lp) for lp in comp.logprobs],
        "top_logprobs": [{t: _finite(v) for t, v in top.items()} for top in tops] or None,
        "text_offset": offsets,
    }


def completion_choice(
    index: int, comp: Completion | None, text: str, prompt: str, request: Request
) -> dict[str, Any]:
    """One text_completion choice: the prompt first when echoed (`prompt` non-empty)."""
    reason, stop_reason = finish(comp, request.stop)
    return {
        "index": index,
        "text": prompt + text,
        "logprobs": legacy_logprobs(comp, len(prompt)) if comp and request.logprobs else None,
        "finish_reason": reason,
        "stop_reason": stop_reason,
    }


def completions_body(
    cid: str,
    model: str,
    gens: list[Generation],
    requests: tuple[Request, ...],
    echo: bool,
    seconds: float,
) -> dict[str, Any]:
    """The response of a /v1/completions request: each prompt's n choices in turn (choice
    i * n + j is prompt i's sample j), usage summed over the prompts."""
    choices: list[dict[str, Any]] = []
    for gen, request in zip(gens, requests, strict=True):
        prompt = request.prompt if echo and isinstance(request.prompt, str) else ""
        for comp in gen.completions:
            choices.append(completion_choice(len(choices), comp, comp.text, prompt, request))
    cost = sum((g.cost for g in gens), Cost())
    cost = cost if cost.seconds else _with_seconds(cost, seconds)
    head = envelope(cid, model, int(time.time()), "text_completion")
    return {**head, "choices": choices, "usage": usage(cost)}


def as_completion(body: dict[str, Any], prompt: str) -> dict[str, Any]:
    """A strategy's chat-shaped response as a text_completion (`prompt` first when
    echoed): the same answer, usage and testtime object."""
    choices = [
        {
            "index": c["index"],
            "text": prompt + (c["message"]["content"] or ""),
            "logprobs": None,
            "finish_reason": c["finish_reason"],
            "stop_reason": c["stop_reason"],
        }
        for c in body["choices"]
    ]
    return {**body, "object": "text_completion", "choices": choices}
