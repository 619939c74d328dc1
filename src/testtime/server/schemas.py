"""The request body of `/v1/chat/completions`: OpenAI's fields plus a `testtime` object.

Pydantic checks types and ranges (and the app turns its complaints into 400s). Types are
strict, as OpenAI's are: `"stream": "yes"`, `"n": "4"` or `"temperature": "0.5"` is a 400,
never read as true, 4 or 0.5 (an integer is still a valid number). What needs
the registries or the server's limits (strategy names, budgets) is checked in `plan.py`.
Unknown top-level fields are ignored, as OpenAI-compatible servers do; unknown fields
inside `testtime` are refused, so a typo there is never silently lost.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from testtime.core.reasoning import PASS_THROUGH
from testtime.core.voting import Fallback

MAX_N = 1024  # a hard schema ceiling; the server's --max-budget usually refuses far fewer
MAX_TOKENS = 1 << 20
MAX_STOP = 16


class TextPart(BaseModel):
    """One part of a message's content: text, or a non-text part (image_url, input_audio,
    file, ...) kept as sent (`sent`) for a model that reads it; a text-only model refuses
    those in plan.py."""

    model_config = ConfigDict(extra="allow")
    type: StrictStr
    text: StrictStr | None = None

    @model_validator(mode="after")
    def _text_has_text(self) -> TextPart:
        if self.type == "text" and self.text is None:
            raise ValueError("a content part of type 'text' needs a string 'text'")
        return self

    def sent(self) -> dict[str, Any]:
        """The part as the caller wrote it (its fields, nested objects included)."""
        return self.model_dump(exclude_unset=True)


WIRE_CALL: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "type": {"const": "function"},
        "function": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "arguments": {"anyOf": [{"type": "string"}, {"type": "object"}]},
            },
            "required": ["name"],
        },
    },
    "required": ["function"],
}


def by_role(schema: dict[str, Any]) -> None:
    """The message's API schema as plan.py reads it, one alternative per role, so a client
    or fuzzer that follows it sends messages the server accepts: content (a text or parts)
    except beside an assistant's tool calls, and a tool result's non-empty tool_call_id.
    Validation stays loose so that plan.py answers a wrong combination with a 400 naming it."""
    fields = schema.pop("properties")
    schema.pop("required", None)
    text = {"anyOf": [s for s in fields["content"]["anyOf"] if s.get("type") != "null"]}

    def role(names: list[str], need: list[str], **more: Any) -> dict[str, Any]:
        props = {"role": {"type": "string", "enum": names}, "name": {"type": "string"}, **more}
        return {"type": "object", "properties": props, "required": ["role", *need]}

    calls = {"type": "array", "items": WIRE_CALL, "minItems": 1}
    schema["anyOf"] = [
        role(["system", "developer", "user"], ["content"], content=text),
        role(["assistant"], ["content"], content=text),
        role(
            ["assistant"],
            ["tool_calls"],
            content={"anyOf": [text, {"type": "null"}]},
            tool_calls=calls,
        ),
        role(
            ["tool"],
            ["content", "tool_call_id"],
            content=text,
            tool_call_id={"type": "string", "minLength": 1},
        ),
    ]


class ChatMessage(BaseModel):
    """One chat message; `developer` is read as `system`, text parts are joined. An
    assistant message may carry `tool_calls` (its content then may be null), a `tool`
    message answers one call (`tool_call_id`); both are checked in plan.py, and the API
    schema says so (`by_role`)."""

    model_config = ConfigDict(extra="ignore", json_schema_extra=by_role)
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: StrictStr | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text or "" for part in self.content if part.type == "text")

    def parts(self) -> tuple[dict[str, Any], ...]:
        """Every content part as sent, when any is not text (else none: the text is all)."""
        if isinstance(self.content, str | None) or all(p.type == "text" for p in self.content):
            return ()
        return tuple(part.sent() for part in self.content)


class BudgetObject(BaseModel):
    """A budget written as an object; every field is a ceiling, absent means none."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    samples: StrictInt | None = Field(default=None, ge=1)
    tokens: StrictInt | None = Field(default=None, ge=1)
    flops: StrictFloat | None = Field(default=None, gt=0)
    seconds: StrictFloat | None = Field(default=None, gt=0)


class VerifierObject(BaseModel):
    """A verifier by registry name with its parameters."""

    model_config = ConfigDict(extra="forbid")
    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class TesttimeOptions(BaseModel):
    """How to spend compute on this request: a strategy, its parameters, a budget, a verifier,
    and for code, the tests that judge the answer's function."""

    model_config = ConfigDict(extra="forbid")
    strategy: str | None = Field(default=None, description="a strategy name (see /v1/models)")
    params: dict[str, Any] = Field(default_factory=dict, description="the strategy's parameters")
    budget: StrictStr | StrictInt | StrictFloat | BudgetObject | None = Field(
        default=None, description="e.g. 16, '4096 tokens', '1e12 flops', {'samples': 8}"
    )
    verifier: str | VerifierObject | None = None
    tests: list[StrictStr] | StrictStr | None = Field(
        default=None,
        description="tests the answer's code must pass: assert statements, or one test script "
        "(e.g. HumanEval's def check(candidate)); run in a sandbox, only by a server started "
        "with --run-tests",
    )
    entry_point: StrictStr | None = Field(
        default=None, description="the name of the function the tests call"
    )
    examples: list[StrictStr] | None = Field(
        default=None,
        description="public examples, each 'assert CALL == LITERAL' (for verifiers that do not "
        "read the tests)",
    )
    fallback: Fallback | None = Field(
        default=None,
        description="how to choose when the vote decided nothing (every sample its own answer "
        "group): likelihood (the highest mean token logprob) or first; default: the server's",
    )
    ignore_tool_arguments: list[StrictStr] | None = Field(
        default=None,
        description="argument keys a vote over tool calls leaves out (ids, timestamps)",
    )


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: StrictBool = False


class _Generation(BaseModel):
    """What the chat and completions requests share: their stop strings, and the engine
    fields gathered from the top level (core.reasoning.PASS_THROUGH)."""

    stop: str | list[str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _gather_engine(cls, data: Any) -> Any:
        return engine_fields(data)

    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class ChatRequest(_Generation):
    """An OpenAI chat-completions request, with vLLM's continuation flags and `testtime`."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)
    model: str = Field(description="MODEL, STRATEGY@MODEL or STRATEGY:k=v,k=v@MODEL")
    messages: list[ChatMessage] = Field(min_length=1)
    n: StrictInt = Field(default=1, ge=1, le=MAX_N)
    max_tokens: StrictInt | None = Field(default=None, ge=1, le=MAX_TOKENS)
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1, le=MAX_TOKENS)
    temperature: StrictFloat | None = Field(default=None, ge=0, le=2)
    top_p: StrictFloat | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: StrictInt | None = Field(default=None, ge=-(1 << 63), lt=1 << 63)  # any int64
    logprobs: StrictBool = False
    top_logprobs: StrictInt | None = Field(default=None, ge=0, le=20)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    continue_final_message: StrictBool = False  # vLLM: continue the last (assistant) message
    add_generation_prompt: StrictBool = True  # vLLM: must be false with continue_final_message
    testtime: TesttimeOptions | None = None
    tools: list[dict[str, Any]] | None = Field(
        default=None, description="functions the model may call; checked in plan.py"
    )
    tool_choice: str | dict[str, Any] | None = Field(
        default=None, description="'auto', 'none', 'required' or {'type': 'function', ...}"
    )
    response_format: dict[str, Any] | None = Field(
        default=None,
        description="{'type': 'text' | 'json_object'} or {'type': 'json_schema', 'json_schema': "
        "{'name': ..., 'schema': {...}, 'strict': true}}; checked in plan.py",
    )
    # reasoning_effort and the engines' thinking-budget fields, gathered from the top level
    # (core.reasoning.PASS_THROUGH; checked in plan.py); not a field of the API's schema
    engine: SkipJsonSchema[dict[str, Any]] = Field(default_factory=dict)


Prompt = StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]]


class CompletionRequest(_Generation):
    """An OpenAI (legacy) completions request: a raw prompt continued as it is, no chat
    template. `prompt` is a text, a list of texts, token ids, or a list of token-id lists;
    each prompt gets `n` choices. `logprobs` is an int here: the alternatives per position."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)
    model: str = Field(description="MODEL, STRATEGY@MODEL or STRATEGY:k=v,k=v@MODEL")
    prompt: Prompt = Field(description="a text, texts, token ids, or lists of token ids")
    suffix: StrictStr | None = None
    echo: StrictBool = False
    logprobs: StrictInt | None = Field(default=None, ge=0, le=20)
    n: StrictInt = Field(default=1, ge=1, le=MAX_N)
    best_of: StrictInt | None = Field(default=None, ge=1, le=MAX_N)
    max_tokens: StrictInt | None = Field(default=16, ge=1, le=MAX_TOKENS)  # OpenAI's default
    temperature: StrictFloat | None = Field(default=None, ge=0, le=2)
    top_p: StrictFloat | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: StrictInt | None = Field(default=None, ge=-(1 << 63), lt=1 << 63)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    testtime: TesttimeOptions | None = None
    engine: SkipJsonSchema[dict[str, Any]] = Field(default_factory=dict)  # as for chat


def engine_fields(data: Any) -> Any:
    """A request body with the engine fields it carries at the top level (reasoning_effort,
    thinking budgets: `core.reasoning.PASS_THROUGH`) moved into `engine`, so an upstream gets
    them as sent; other unknown fields are still ignored."""
    if not isinstance(data, dict) or not any(k in data for k in PASS_THROUGH):
        return data
    out = {k: v for k, v in data.items() if k not in PASS_THROUGH}
    prior = out.get("engine")
    out["engine"] = {
        **(prior if isinstance(prior, dict) else {}),
        **{k: data[k] for k in PASS_THROUGH if k in data},
    }
    return out
