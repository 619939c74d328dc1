"""From a chat request to what to run: a plain model call, or a strategy on a problem.

Everything a request asks for is checked here, before any work or queueing: the model
name, the strategy and its parameters (through the registry, which lists what exists),
the budget against the server's maximum, the verifier, the sampling fields, and the tests a
request may bring (only to a server started with --run-tests). Every refusal is an ApiError
naming the field and what is allowed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import keyword
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from testtime.core.budget import UNITS, Budget
from testtime.core.cost import flops
from testtime.core.errors import ConfigError
from testtime.core.reasoning import Extra, extra, thinking_budget
from testtime.core.registry import Spec, parse_params, size_limit
from testtime.core.structured import ResponseFormat, response_format
from testtime.core.tools import Tools, calls_from_wire, tools
from testtime.core.types import Message, Problem, Request
from testtime.core.voting import Fallback
from testtime.generators.base import Generator
from testtime.sandbox import Case
from testtime.sandbox.problems import KEY, CodeSpec, TestsError, parse_tests, spec_of
from testtime.server.errors import ApiError
from testtime.server.limits import worst_tokens
from testtime.server.schemas import (
    BudgetObject,
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    TesttimeOptions,
    VerifierObject,
)
from testtime.server.settings import DEFAULT_MAX_TOKENS, Settings
from testtime.strategies.base import STRATEGIES
from testtime.verifiers.base import VERIFIERS, named

T = TypeVar("T")
FILE_VERIFIERS = named(lambda t: t.loads_file)  # they may load a path named in their parameters
GOLD_VERIFIERS = named(lambda t: t.reads_gold)  # they may read a gold answer, which no chat has
# ... but their gold is only the problem's tests: allowed on a request that brings its own
TEST_VERIFIERS = named(lambda t: t.gold_is_tests)
URL_VERIFIERS = named(lambda t: t.calls_url)  # they send text to a URL their parameters name
TESTS_VERIFIER = "unit_tests"  # the verifier of a request with tests that names none


@dataclass(frozen=True)
class Plain:
    """No strategy: the request's n samples straight from the generator."""

    request: Request


@dataclass(frozen=True)
class Completions:
    """/v1/completions without a strategy: `n` samples of each raw prompt, in order."""

    requests: tuple[Request, ...]
    echo: bool = False  # each choice's text starts with its prompt


@dataclass(frozen=True)
class Strategic:
    """A strategy run on one problem under a budget."""

    problem: Problem
    spec: Spec
    budget: Budget
    verifier: Spec | None
    max_tokens: int
    seed: int
    fallback: Fallback = "likelihood"  # chooses when the vote decided nothing (settings.py)
    response_format: ResponseFormat | None = None  # every sample's; the vote is on its JSON
    tools: Tools | None = None  # every sample's; the vote is on canonical calls (core.tools)
    raw: bool = False  # /v1/completions: the problem's one message is raw text, no template
    extra: Extra | None = None  # engine fields every sample sends on (core.reasoning)

    @property
    def code(self) -> CodeSpec | None:
        """The function and tests the request brought (testtime.tests), if it did."""
        return spec_of(self.problem)


async def plan_off_loop(body: ChatRequest, settings: Settings) -> Plain | Strategic:
    """`plan` in a worker thread: checking a request may read files (a policy) and hash
    its text, which must not hold up the event loop."""
    return await asyncio.to_thread(plan, body, settings)


def plan(body: ChatRequest, settings: Settings) -> Plain | Strategic:
    """What to run for `body`; an ApiError (400, or 404 for an unknown model) if not allowed."""
    named = strategy_in_model(body.model, settings.model)
    opts = body.testtime
    stream_options(body)
    code = request_code(opts, settings)
    if len(body.messages) > settings.max_messages:
        raise bad(f"at most {settings.max_messages} messages are allowed", "messages")
    max_tokens = body.max_completion_tokens or body.max_tokens or DEFAULT_MAX_TOKENS
    if max_tokens > settings.max_tokens:
        raise bad(
            f"max_tokens {max_tokens} is above this server's {settings.max_tokens}", "max_tokens"
        )
    if body.top_logprobs and not body.logprobs:
        raise bad("top_logprobs needs logprobs: true", "top_logprobs")
    if opts is None or (opts.strategy is None and named is None):
        if opts is not None and (
            opts.params
            or opts.budget is not None
            or opts.verifier
            or code is not None
            or opts.fallback is not None
        ):
            raise bad(
                "testtime.params, budget, verifier, tests and fallback need a strategy: set "
                f"testtime.strategy or name the model STRATEGY@{settings.model} (with tests, "
                "e.g. best_of_n, which keeps the sample passing most of them)",
                "testtime.strategy",
            )
        if named is None:
            return plain(body, settings, max_tokens)
    return strategic(body, settings, named, max_tokens, code)


def plan_completion(body: CompletionRequest, settings: Settings) -> Completions | Strategic:
    """What to run for a /v1/completions `body`: each raw prompt's n samples, or (one text
    prompt) a strategy on it, its samples continuing the text with no chat template."""
    stream_options(body)
    if body.suffix:
        raise bad("suffix (insertion) is not supported; send the prompt alone", "suffix")
    if body.best_of is not None and body.best_of != body.n:
        raise bad(
            f"best_of is not supported apart from n; for the best of several samples use a "
            f"strategy, e.g. model best_of_n:n={body.best_of}@{settings.model} with a verifier",
            "best_of",
        )
    prompts = prompt_list(body.prompt)
    if body.echo and body.logprobs is not None:
        raise bad(
            "echo with logprobs would need the prompt's logprobs, which this server does not "
            "compute; ask for echo or logprobs",
            "echo",
        )
    if body.echo and any(not isinstance(p, str) for p in prompts):
        raise bad("echo needs the prompt as text, not token ids", "echo")
    chat = ChatRequest(
        model=body.model,
        # the chat checks read text: token ids stand in as "ids" (a strategy refuses them)
        messages=[ChatMessage(role="user", content=p if isinstance(p, str) else "ids")
                  for p in prompts[:1]],
        n=body.n,
        max_tokens=body.max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        stop=body.stop,
        seed=body.seed,
        logprobs=body.logprobs is not None,
        top_logprobs=body.logprobs,
        stream=body.stream,
        testtime=body.testtime,
        engine=body.engine,
    )  # fmt: skip
    the_plan = plan(chat, settings)
    if isinstance(the_plan, Strategic):
        if len(prompts) != 1 or not isinstance(prompts[0], str):
            raise bad("a strategy runs on one prompt given as text", "prompt")
        if body.echo:
            raise bad("echo is not supported with a strategy, which returns one answer", "echo")
        return replace(the_plan, raw=True)
    if len(prompts) * body.n > (settings.max_budget.samples or 128):
        raise bad(
            f"{len(prompts)} prompts x n {body.n} is above this server's maximum of "
            f"{settings.max_budget.samples or 128} samples per request",
            "prompt",
        )
    one = the_plan.request
    requests = tuple(
        replace(one, messages=Request.raw(p).messages, prompt=Request.raw(p).prompt)
        for p in prompts
    )
    return Completions(requests, body.echo)


def prompt_list(raw: str | list[str] | list[int] | list[list[int]]) -> list[str | tuple[int, ...]]:
    """The prompts of a completions request: texts, or token-id tuples; a 400 if none is
    given or one is empty."""
    found: list[str | tuple[int, ...]] = []
    if isinstance(raw, str):
        found.append(raw)
    elif raw and all(isinstance(t, int) for t in raw):
        found.append(tuple(t for t in raw if isinstance(t, int)))
    else:
        found.extend(p if isinstance(p, str) else tuple(p) for p in raw if not isinstance(p, int))
    if not found or any(len(p) == 0 for p in found):
        raise bad("prompt is empty; give a text, texts, token ids or lists of token ids", "prompt")
    if any(isinstance(t, int) and t < 0 for p in found if not isinstance(p, str) for t in p):
        raise bad("token ids must be >= 0", "prompt")
    return found


def stream_options(body: ChatRequest | CompletionRequest) -> None:
    """A 400 for stream_options on a request that does not stream (OpenAI refuses it)."""
    if body.stream_options is not None and not body.stream:
        raise bad("stream_options is only allowed with stream: true", "stream_options")


def worst_case(
    the_plan: Plain | Strategic | Completions, generator: Generator
) -> tuple[int, int | None]:
    """The tokens a plan may charge an API key: its first call's worst case (a plain
    request's n samples, or one sample of a strategy's problem), and its whole worst case as
    its budget bounds it (every sample its prompt and max_tokens; None if nothing bounds it).
    A strategy's later prompts (revisions, tree steps) may be longer: each call reserves its
    own worst case too."""
    if isinstance(the_plan, Plain):
        worst = worst_tokens(generator, the_plan.request)
        return worst, worst
    if isinstance(the_plan, Completions):  # its prompts' calls run at once
        worst = sum(worst_tokens(generator, r) for r in the_plan.requests)
        return worst, worst
    one = Request(the_plan.problem.messages, n=1, max_tokens=the_plan.max_tokens)
    sample = worst_tokens(generator, one)
    b, counts = the_plan.budget, []
    if b.samples is not None:
        counts.append(b.samples)
    if b.tokens is not None:
        counts.append(-(-b.tokens // the_plan.max_tokens))
    if b.flops is not None and generator.n_params > 0:
        counts.append(int(b.flops // flops(generator.n_params, sample)) + 1)
    return sample, (min(counts) * sample if counts else None)


def readable(the_plan: Plain | Strategic | Completions, generator: Generator) -> None:
    """A 400 before any work when a message holds content parts (image_url, input_audio,
    file, ...) that the served model cannot read: only a multimodal generator (an upstream
    reached over HTTP) is sent them, as they came."""
    if generator.multimodal or isinstance(the_plan, Completions):
        return
    chat = the_plan.request.messages if isinstance(the_plan, Plain) else the_plan.problem.messages
    for i, m in enumerate(chat):
        for j, part in enumerate(m.parts):
            kind = part.get("type")
            if kind != "text":
                raise bad(
                    f"messages[{i}].content[{j}] is a {kind!r} part, but model "
                    f"{generator.name!r} reads text only; send text parts only, or serve a "
                    "model that reads them through an upstream (testtime serve --model "
                    "http://HOST:PORT/v1#MODEL)",
                    f"messages[{i}].content",
                )


def strategy_in_model(model: str, served: str) -> tuple[str, dict[str, Any]] | None:
    """The strategy named in 'STRATEGY[:k=v,...]@MODEL' (None for plain 'MODEL')."""
    if model == served:
        return None
    if not model.endswith("@" + served) or len(model) == len(served) + 1:
        raise ApiError(
            404,
            f"unknown model {model!r}; this server serves {served!r}, also as "
            f"STRATEGY@{served} or STRATEGY:k=v,k=v@{served} (e.g. self_consistency:n=8@"
            f"{served}); GET /v1/models lists them",
            param="model",
            code="model_not_found",
        )
    head = model[: -len(served) - 1]
    name, _, params = head.partition(":")
    try:
        return name.strip(), parse_params([p for p in params.split(",") if p.strip()])
    except ConfigError as e:
        raise bad(f"model {model!r}: {e}", "model") from None


def plain(body: ChatRequest, settings: Settings, max_tokens: int) -> Plain:
    messages, prefix = chat(body.messages, body)
    cap = settings.max_budget
    most = cap.samples or 128
    if body.n > most:
        raise bad(f"n {body.n} is above this server's maximum of {most} samples", "n")
    if cap.tokens is not None and body.n * max_tokens > cap.tokens:
        raise bad(
            f"n x max_tokens = {body.n * max_tokens} is above this server's maximum of "
            f"{cap.tokens} tokens per request; lower n or max_tokens",
            "max_tokens",
        )
    try:
        request = Request(
            messages,
            prefix=prefix,
            n=body.n,
            max_tokens=max_tokens,
            temperature=1.0 if body.temperature is None else body.temperature,
            top_p=1.0 if body.top_p is None else body.top_p,
            stop=stops(body),
            seed=body.seed,
            logprobs=body.logprobs,
            top_logprobs=body.top_logprobs or 0,
            response_format=output_format(body),
            tools=request_tools(body),
            extra=engine_extra(body),
        )
    except ConfigError as e:
        raise bad(str(e)) from None
    return Plain(request)


def engine_extra(body: ChatRequest | CompletionRequest) -> Extra | None:
    """The request's reasoning_effort and engine thinking-budget fields, checked (a 400
    naming the field); an upstream gets them as sent (core.reasoning)."""
    return checked(lambda: extra(body.engine), next(iter(body.engine), "reasoning_effort"))


def forcing_params(
    name: str, params: dict[str, Any], given: Extra | None, max_tokens: int
) -> tuple[dict[str, Any], Extra | None]:
    """budget_forcing's parameters with its thinking budget set by the request's
    reasoning_effort (`core.reasoning.thinking_budget`, unless thinking_tokens is given), and
    the engine fields left for the samples: the strategy spends the effort itself."""
    effort = given.effort if given is not None else None
    if name != "budget_forcing" or effort is None or given is None:
        return params, given
    tokens = thinking_budget(effort, max_tokens)
    if tokens == 0 and "thinking_tokens" not in params:
        raise bad(
            f"reasoning_effort {effort!r} means no thinking, but budget_forcing is a thinking "
            "budget; ask for low or more, or leave out the strategy",
            "reasoning_effort",
        )
    return {"thinking_tokens": tokens, **params}, given.without("reasoning_effort", "reasoning")


def forwardable(the_plan: Plain | Strategic | Completions, generator: Generator) -> None:
    """A 400 before any work for engine fields the served model cannot honour: a model
    that does not forward them (the embedded one, the fake) answers reasoning_effort alone,
    by budget forcing, and only on a plain chat request without stop strings, logprobs,
    tools, response_format or a prefix to continue (those would bind its thinking too)."""
    if generator.forwards_extra:
        return
    if isinstance(the_plan, Completions):
        given = next((r.extra for r in the_plan.requests if r.extra is not None), None)
    else:
        given = the_plan.request.extra if isinstance(the_plan, Plain) else the_plan.extra
    if given is None:
        return
    where = f"model {generator.name!r} is served here, not by an upstream engine"
    fields = given.wire()
    other = [k for k in fields if k not in ("reasoning_effort", "reasoning")]
    other += [f"reasoning.{k}" for k in fields.get("reasoning", {}) if k != "effort"]
    if other:
        raise bad(
            f"{other[0]} is an upstream engine's field, and {where}; use reasoning_effort "
            "(budget forcing), or serve the engine through testtime serve --model "
            "http://HOST:PORT/v1#MODEL",
            other[0],
        )
    if not isinstance(the_plan, Plain):
        raise bad(
            f"reasoning_effort on {where} is budget forcing, which runs on a plain chat "
            "request or as the strategy budget_forcing; drop the other strategy, or send it "
            "to /v1/chat/completions",
            "reasoning_effort",
        )
    r = the_plan.request
    for field, given_too in (
        ("stop", bool(r.stop)), ("logprobs", r.logprobs), ("tools", r.tools is not None),
        ("response_format", r.response_format is not None), ("continue_final_message",
        bool(r.prefix)),
    ):  # fmt: skip
        if given_too:
            raise bad(
                f"reasoning_effort on {where} is budget forcing (a thinking phase, then the "
                f"answer), which does not take {field}; send one or the other",
                field,
            )


def chat(raw: list[ChatMessage], body: ChatRequest) -> tuple[tuple[Message, ...], str]:
    """The messages, and the text to continue (vLLM's continue_final_message)."""
    messages = tuple(message(m, i) for i, m in enumerate(raw))
    prefix = ""
    if body.continue_final_message:
        if body.add_generation_prompt:
            raise bad(
                "continue_final_message needs add_generation_prompt: false", "add_generation_prompt"
            )
        if messages[-1].role != "assistant" or len(messages) < 2:
            raise bad(
                "continue_final_message continues the last message, which must be an "
                "assistant message after at least one other",
                "messages",
            )
        messages, prefix = messages[:-1], messages[-1].content
    elif not body.add_generation_prompt:
        raise bad(
            "add_generation_prompt: false is supported only with continue_final_message: true",
            "add_generation_prompt",
        )
    if not any(m.content.strip() or m.media for m in messages) and not prefix.strip():
        raise bad("the messages hold no text; give the model something to answer", "messages")
    return messages, prefix


def stops(body: ChatRequest) -> tuple[str, ...]:
    found = body.stops()
    if len(found) > 16 or any(not s for s in found):
        raise bad("stop must be at most 16 non-empty strings", "stop")
    return found


def strategic(
    body: ChatRequest,
    settings: Settings,
    named: tuple[str, dict[str, Any]] | None,
    max_tokens: int,
    code: CodeSpec | None = None,
) -> Strategic:
    opts = body.testtime
    name = opts.strategy if opts is not None and opts.strategy is not None else None
    if named is not None and name is not None and named[0] != name:
        raise bad(
            f"the model name picks strategy {named[0]!r} but testtime.strategy says "
            f"{name!r}; give one",
            "testtime.strategy",
        )
    name = name or (named[0] if named else "")
    params = {**(named[1] if named else {}), **(opts.params if opts else {})}
    params, engine = forcing_params(name, params, engine_extra(body), max_tokens)
    for field, given in (
        ("n", body.n != 1),
        ("stop", bool(body.stops())),
        ("logprobs", body.logprobs),
        ("continue_final_message", body.continue_final_message),
    ):
        if given:
            raise bad(
                f"{field} is not supported with a strategy, which returns one answer; "
                "set sampling through the strategy's parameters (testtime.params)",
                field,
            )
    if not name:
        raise bad(
            f"testtime.strategy is empty; available: {', '.join(STRATEGIES.names())}",
            "testtime.strategy",
        )
    params = allowed_paths(STRATEGIES.get(name).params._paths if name in STRATEGIES.entries
                           else frozenset(), params, settings, "testtime.params")  # fmt: skip
    if name in STRATEGIES.entries:
        no_models(STRATEGIES.get(name).params._models, params, settings)
    spec = checked(
        lambda: sized(lambda: STRATEGIES.spec(name, params), settings), "testtime.strategy"
    )
    messages, _ = chat(body.messages, body)
    metadata = {} if code is None else {KEY: code}
    problem = checked(
        lambda: Problem(messages, id=problem_id(messages), metadata=metadata), "messages"
    )
    raw_budget = opts.budget if opts is not None else None
    budget = within(
        checked(lambda: parse_budget(raw_budget), "testtime.budget"), settings.max_budget
    )
    raw_verifier = opts.verifier if opts else None
    if raw_verifier is None and code is not None:
        raw_verifier = TESTS_VERIFIER
    verifier = verifier_spec(raw_verifier, settings, tests=code is not None)
    rule = opts.fallback if opts is not None and opts.fallback is not None else settings.fallback
    fmt = output_format(body)
    offered = request_tools(body)
    return Strategic(
        problem, spec, budget, verifier, max_tokens, body.seed or 0, rule, fmt, offered,
        extra=engine,
    )  # fmt: skip


def request_tools(body: ChatRequest) -> Tools | None:
    """The request's tools and tool_choice, checked (a 400 naming what is wrong), with the
    argument keys its vote ignores (testtime.ignore_tool_arguments)."""
    ignore = (body.testtime.ignore_tool_arguments if body.testtime else None) or []
    return checked(lambda: tools(body.tools, body.tool_choice, ignore), "tools")


def message(m: ChatMessage, i: int) -> Message:
    """One message as core reads it: an assistant's tool calls parsed, a tool result's id
    required; a 400 naming the message otherwise."""
    role = "system" if m.role == "developer" else m.role
    if m.role == "tool" and not m.tool_call_id:
        raise bad(f"messages[{i}] has role tool but no tool_call_id; name the call it answers",
                  "messages")  # fmt: skip
    if m.content is None and not (m.role == "assistant" and m.tool_calls):
        raise bad(f"messages[{i}] has no content; only an assistant's tool calls may go without",
                  "messages")  # fmt: skip
    calls = checked(lambda: calls_from_wire(m.tool_calls, f"messages[{i}].tool_calls"), "messages")
    parts = m.parts()
    return checked(lambda: Message(role, m.text(), calls, m.tool_call_id, parts), "messages")


def output_format(body: ChatRequest) -> ResponseFormat | None:
    """The request's response_format, checked (a 400 naming what is wrong); whether the
    model can follow its schema is the generator's to say (the embedded model's compiler,
    an upstream), also as a 400."""
    return checked(lambda: response_format(body.response_format), "response_format")


def request_code(opts: TesttimeOptions | None, settings: Settings) -> CodeSpec | None:
    """The function a request's answer must define and the tests it must pass (None for a
    request without tests); a 400 when the server does not run tests or they cannot be read."""
    if opts is None or (opts.tests is None and opts.entry_point is None and opts.examples is None):
        return None
    if not settings.run_tests:
        raise bad(
            "this server does not run code, so it cannot run testtime.tests; its operator can "
            "allow it with `testtime serve --run-tests` (tests then run in a bubblewrap "
            "sandbox), or send the request without tests",
            "testtime.tests",
        )
    if opts.tests is None:
        raise bad(
            "testtime.entry_point and examples go with testtime.tests: give the tests the "
            'answer must pass, e.g. ["assert add(1, 2) == 3"]',
            "testtime.tests",
        )
    entry = opts.entry_point
    if not entry or not entry.isidentifier() or keyword.iskeyword(entry):
        given = "" if entry is None else f", not {entry[:60]!r}"
        raise bad(
            "testtime.tests need testtime.entry_point: the name of the Python function they "
            f"call{given}",
            "testtime.entry_point",
        )
    try:
        cases, script = parse_tests(opts.tests, entry)
        spec = CodeSpec(entry, cases, script, examples(opts.examples or [], entry))
    except TestsError as e:
        raise bad(f"testtime.tests: {e}", "testtime.tests") from None
    return spec


def examples(raw: list[str], entry: str) -> tuple[Case, ...]:
    """Public examples, each `assert CALL == LITERAL` (a TestsError naming one that is not)."""
    found: list[Case] = []
    for i, text in enumerate(raw):
        try:
            cases, script = parse_tests([text], entry)
        except TestsError as e:
            raise TestsError(str(e).replace("test 0", f"example {i}")) from None
        if script or len(cases) != 1:
            raise TestsError(
                f"example {i} must be one 'assert {entry}(...) == LITERAL', got {text[:60]!r}"
            )
        found.extend(cases)
    return tuple(found)


def problem_id(messages: tuple[Message, ...]) -> str:
    """A chat's id, from its text: the same chat and seed draw the same samples (as a task's
    problem id does in the library), and different chats draw independent ones."""
    text = "\x00".join(
        f"{m.role}\x01{m.content}"
        + "".join(f"\x02{c.name}\x01{c.arguments}" for c in m.tool_calls)
        + (f"\x03{json.dumps(m.parts, sort_keys=True)}" if m.parts else "")
        for m in messages
    )
    return "chat-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def no_models(fields: frozenset[str], params: Mapping[str, Any], settings: Settings) -> None:
    """A 400 for a parameter naming a model to open (a fusion's aggregator or proposers): a
    server runs only the model it serves, and never opens one a request names."""
    for name in sorted(fields & set(params)):
        value = params[name]
        given = value if isinstance(value, list | tuple) else [value]
        if any(isinstance(v, str) and v for v in given):  # other types: the spec says
            raise bad(
                f"parameter {name!r} names a model to open, but this server runs only "
                f"{settings.model!r}; leave {name!r} out and the served model does that part",
                "testtime.params",
            )


def allowed_paths(
    paths: frozenset[str], params: Mapping[str, Any], settings: Settings, param: str
) -> dict[str, Any]:
    """`params` with each file parameter resolved (symlinks, '..') to a path inside one of
    the server's --allow-policy-dir directories; a 400 otherwise, the same whether or not
    the file exists. A relative path is taken inside each directory in turn."""
    out = dict(params)
    for name in sorted(paths & set(params)):
        raw = params[name]
        if not isinstance(raw, str) or not raw:
            continue  # the registry refuses it by type
        if not settings.policy_dirs:
            raise bad(
                f"parameter {name!r} names a file, and this server takes no files from "
                "requests (its operator can allow a directory with --allow-policy-dir DIR)",
                param,
            )
        found = _inside(raw, settings.policy_dirs)
        if found is None:
            raise bad(
                f"parameter {name!r} must name a file inside this server's policy "
                "directories (symlinks and '..' are followed first); ask its operator which "
                "policies it serves",
                param,
            )
        out[name] = str(found)
    return out


def _inside(raw: str, dirs: tuple[Path, ...]) -> Path | None:
    """The real path of `raw` if it lies inside one of `dirs` (the first that has it)."""
    candidates = []
    for root in dirs:
        real_root = Path(os.path.realpath(root))
        try:  # an absolute raw replaces the root
            path = Path(os.path.realpath(real_root / raw))
        except (OSError, ValueError):  # a NUL byte, a symlink loop, ...
            return None
        if path != real_root and path.is_relative_to(real_root):
            candidates.append(path)
    found = [p for p in candidates if os.path.lexists(p)] or candidates
    return found[0] if found else None


def sized(make: Callable[[], T], settings: Settings) -> T:
    """make() with sizes (n, iterations, tokens, ...) capped at the server's --max-param."""
    with size_limit(settings.max_param, "this server's limit, set by its --max-param"):
        return make()


def parse_budget(raw: str | int | float | BudgetObject | None) -> Budget | None:
    """A budget from a string ('16 samples, 30 s'), a number (samples) or an object."""
    if raw is None:
        return None
    if isinstance(raw, BudgetObject):
        given = {k: v for k, v in raw.model_dump().items() if v is not None}
        if not given:
            raise ConfigError("the budget object is empty; give e.g. {'samples': 8}")
        return Budget(**given)
    if isinstance(raw, int | float):
        raw = repr(raw)
    return Budget.parse(raw)


def within(budget: Budget | None, maximum: Budget) -> Budget:
    """The request's budget, refused above the server's maximum, filled in with it."""
    budget = budget or Budget()
    for unit in UNITS:
        asked, most = getattr(budget, unit), getattr(maximum, unit)
        if asked is not None and most is not None and asked > most:
            raise bad(
                f"budget {asked:g} {unit} is above this server's maximum ({maximum}); "
                f"ask for at most {most:g} {unit}",
                "testtime.budget",
            )
    return Budget(**{u: getattr(budget, u) or getattr(maximum, u) for u in UNITS})


def verifier_spec(
    raw: str | VerifierObject | None, settings: Settings, *, tests: bool = False
) -> Spec | None:
    """The request's verifier, checked. A gold reader is refused (a chat has no gold answer),
    except one whose gold is only the problem's tests on a request that brought its own
    (`tests`): those tests are the user's, not a hidden answer."""
    if raw is None:
        return None
    name, params = (raw, {}) if isinstance(raw, str) else (raw.name, raw.params)
    if name in GOLD_VERIFIERS and not (tests and name in TEST_VERIFIERS):
        refused = GOLD_VERIFIERS + FILE_VERIFIERS + URL_VERIFIERS
        usable = [v for v in VERIFIERS.names() if v not in refused]
        also = f" ({', '.join(TEST_VERIFIERS)} with testtime.tests)" if TEST_VERIFIERS else ""
        raise bad(
            f"verifier {name!r} compares answers with a gold answer, which a chat request does "
            f"not have; use one of: {', '.join(usable)}{also}",
            "testtime.verifier",
        )
    if name in URL_VERIFIERS:
        raise bad(
            f"verifier {name!r} sends the text it scores, with a key from this server's "
            "environment, to a URL named in its parameters, which a request may not choose; "
            "use it from the library, the CLI or the lab",
            "testtime.verifier",
        )
    if name in FILE_VERIFIERS and not settings.allow_file_verifiers:
        raise bad(
            f"verifier {name!r} loads files named in the request, which this server does not "
            "allow (start it with --allow-file-verifiers to allow it)",
            "testtime.verifier",
        )
    return checked(
        lambda: sized(lambda: VERIFIERS.spec(name, params), settings), "testtime.verifier"
    )


def checked(make: Callable[[], T], param: str) -> T:
    """make(), with a ConfigError turned into a 400 naming `param`."""
    try:
        return make()
    except ConfigError as e:
        raise bad(str(e), param) from None


def bad(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code="invalid_value")
