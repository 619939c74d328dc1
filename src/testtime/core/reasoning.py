"""Reasoning budgets: `reasoning_effort`, the engines' own thinking-budget fields, and the map
from an effort to a thinking-token budget.

A request may carry fields that only an upstream engine reads (`Extra`): OpenAI's
`reasoning_effort` (or the nested `reasoning: {effort}` form that OpenRouter and the
Responses API use), vLLM's `thinking_token_budget`, SGLang's `custom_params` (its thinking
budget processors read `custom_params.thinking_budget`), llama.cpp's `thinking_budget_tokens`,
and `chat_template_kwargs` (`enable_thinking`, `thinking_budget`: vLLM, SGLang, llama.cpp).
They are checked for their JSON type here, kept as sent, and the HTTP backend sends them on
unchanged; `PASS_THROUGH` is the one list, so another engine's field is one line.

A model without a thinking mode of its own (the embedded one) answers `reasoning_effort` by
budget forcing (s1): `EFFORTS` maps an effort to the thinking tokens it may spend
(`thinking_budget`), and "none"/"minimal" mean no thinking phase at all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from testtime.core.errors import ConfigError

# effort -> thinking tokens on a model without its own thinking mode (budget forcing);
# OpenAI's values, in order of effort
EFFORTS: dict[str, int] = {
    "none": 0,
    "minimal": 0,
    "low": 256,
    "medium": 1024,
    "high": 4096,
    "xhigh": 16384,
}

# the fields an upstream engine reads that a request may carry, with their JSON type
# (who reads it, in the comment); every other unknown field is ignored, as OpenAI does
PASS_THROUGH: dict[str, type] = {
    "reasoning_effort": str,  # OpenAI; vLLM and SGLang hand it to the chat template
    "reasoning": dict,  # {effort, max_tokens, exclude}: OpenRouter, the Responses API
    "thinking_token_budget": int,  # vLLM: the most tokens inside <think>..</think>
    "chat_template_kwargs": dict,  # vLLM, SGLang, llama.cpp: {enable_thinking, ...}
    "custom_params": dict,  # SGLang: {thinking_budget} for its thinking-budget processors
    "separate_reasoning": bool,  # SGLang: reasoning apart from the answer
    "include_reasoning": bool,  # vLLM, OpenRouter: return the reasoning text
    "thinking_budget_tokens": int,  # llama.cpp server
    "reasoning_budget_tokens": int,  # llama.cpp server (newer name)
    "reasoning_budget": int,  # NVIDIA NIM (Nemotron); llama.cpp's --reasoning-budget
    "reasoning_format": str,  # llama.cpp server: where the thoughts go
    "thinking_budget": int,  # FastDeploy
}


@dataclass(frozen=True, slots=True)
class Extra:
    """Upstream engine fields of one request (`PASS_THROUGH`), checked and kept as sent:
    `sent` is their JSON object text (the request stays hashable), in the caller's order."""

    sent: str

    def wire(self) -> dict[str, Any]:
        """The fields to add to an upstream's request body, as they were sent."""
        out: dict[str, Any] = json.loads(self.sent)
        return out

    @property
    def effort(self) -> str | None:
        """The reasoning effort asked for: `reasoning_effort`, else `reasoning.effort`."""
        fields = self.wire()
        nested = fields.get("reasoning")
        found = fields.get("reasoning_effort")
        if found is None and isinstance(nested, dict):
            found = nested.get("effort")
        return found if isinstance(found, str) else None

    def without(self, *names: str) -> Extra | None:
        """These fields less `names` (None when nothing is left)."""
        rest = {k: v for k, v in self.wire().items() if k not in names}
        return Extra(json.dumps(rest)) if rest else None


def extra(fields: Mapping[str, Any]) -> Extra | None:
    """The engine fields of a request, checked: each of `PASS_THROUGH` with its JSON type, an
    effort one of `EFFORTS`, and the two spellings of the effort agreeing. A ConfigError
    names the field otherwise; None when the request gave none."""
    given = {k: v for k, v in fields.items() if v is not None}
    for name, value in given.items():
        kind = PASS_THROUGH.get(name)
        if kind is None:
            raise ConfigError(
                f"{name!r} is not an engine field this server passes on; known: "
                f"{', '.join(PASS_THROUGH)}"
            )
        if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
            raise ConfigError(
                f"{name} must be a JSON {_JSON[kind]}, got {type(value).__name__} {value!r:.60}"
            )
        if isinstance(value, int) and value < -1:
            raise ConfigError(f"{name} must be a number of tokens >= 0 (-1: no limit), got {value}")
    nested: dict[str, Any] = given.get("reasoning") or {}
    efforts: list[Any] = [
        e for e in (given.get("reasoning_effort"), nested.get("effort")) if e is not None
    ]
    for e in efforts:
        if not isinstance(e, str) or e not in EFFORTS:
            raise ConfigError(
                f"reasoning_effort {e!r} is not allowed; use one of {', '.join(EFFORTS)}"
            )
    if len(set(efforts)) > 1:
        raise ConfigError(
            f"reasoning_effort {efforts[0]!r} and reasoning.effort {efforts[1]!r} disagree; "
            "give one"
        )
    return Extra(json.dumps(given)) if given else None


def thinking_budget(effort: str, max_tokens: int) -> int:
    """The thinking tokens `effort` buys on a model that is budget-forced: `EFFORTS[effort]`,
    clipped to half of `max_tokens` so the answer keeps the other half."""
    return min(EFFORTS[effort], max_tokens // 2)


_JSON = {str: "string", dict: "object", bool: "boolean", int: "integer"}
