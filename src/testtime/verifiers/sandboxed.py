"""What the code verifiers (`public_tests`, `codet`, `mbr_exec`) share.

They read the problem's `CodeSpec` (a problem without one is refused in one line), run
candidates only in the sandbox under the limits their parameters set, and may ask a model
for text (tests, inputs), charged as verifier tokens and FLOPs. What the model writes is
read with `ast` only: a call of the entry point whose arguments are Python literals. Nothing
the model wrote is evaluated in this process; the call itself runs in the jail.
"""

from __future__ import annotations

import ast
import asyncio
import json
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from testtime.core.cost import Cost, flops
from testtime.core.errors import ConfigError
from testtime.core.registry import Params
from testtime.core.templates import fill, short
from testtime.core.types import Message, Problem, Request
from testtime.generators.base import Generator
from testtime.sandbox import Execution, Limits
from testtime.sandbox.harness import NotPlain, encode
from testtime.sandbox.problems import CodeSpec, spec_of

MAX_WALL_SECONDS = 60.0  # the most one candidate's run may take (parameters reach the server)
NEUTRAL = 0.5  # the score of every candidate with code when there is nothing to tell them by


@dataclass(frozen=True)
class SandboxParams(Params):
    """The limits each candidate's run in the jail gets (all its calls in one run)."""

    wall_seconds: float = 10.0  # wall clock; CPU seconds are capped at the same, rounded up

    def validate(self) -> None:
        if not 0 < self.wall_seconds <= MAX_WALL_SECONDS:
            raise ConfigError(
                f"parameter 'wall_seconds' must be in (0, {MAX_WALL_SECONDS:g}], "
                f"got {self.wall_seconds}"
            )

    @property
    def limits(self) -> Limits:
        return Limits(wall_seconds=self.wall_seconds, cpu_seconds=math.ceil(self.wall_seconds))


async def run_each(
    codes: Sequence[str | None], run: Callable[[str], Awaitable[Execution]]
) -> tuple[list[Execution | None], float]:
    """Each distinct program run once (concurrently, by `run`): every candidate's run (None
    for one without code, which runs nothing) and the sandbox seconds spent in all."""
    distinct = list(dict.fromkeys(c for c in codes if c is not None))
    runs = dict(zip(distinct, await asyncio.gather(*(run(c) for c in distinct)), strict=True))
    return [None if c is None else runs[c] for c in codes], sum(r.seconds for r in runs.values())


def code_spec(problem: Problem, name: str) -> CodeSpec:
    """The problem's code spec; a ConfigError naming verifier `name` when it has none."""
    spec = spec_of(problem)
    if spec is None:
        raise ConfigError(
            f"verifier {name!r} runs candidate code, but problem {problem.id!r} is not a code "
            "problem (it has no function to call); use it with a code task (e.g. --task "
            "humaneval), or choose a verifier for text answers"
        )
    return spec


def check_template(param: str, template: str, fields: Mapping[str, str]) -> None:
    """Refuse a prompt template that is too long, misuses braces or lacks one of `fields`."""
    short(param, template)  # it may arrive in a server request: bounded, fields only
    fill(template, fields, param)
    missing = [f"{{{k}}}" for k in fields if f"{{{k}}}" not in template]
    if missing:
        raise ConfigError(
            f"parameter {param!r} lacks {' and '.join(missing)}; write a text with "
            f"{', '.join('{' + k + '}' for k in fields)}, or leave it at its default"
        )


def check_sampling(temperature: float, tokens: int) -> None:
    """Range checks of a verifier's own model request."""
    if not (temperature >= 0 and math.isfinite(temperature)):
        raise ConfigError(f"parameter 'temperature' must be >= 0 (0 = greedy), got {temperature}")
    if tokens <= 0:
        raise ConfigError(f"parameter 'max_tokens' must be > 0, got {tokens}")


def request(text: str, n: int, temperature: float, max_tokens: int, seed: int) -> Request:
    """A verifier's own request to the model: `n` completions of one user message."""
    return Request(
        (Message("user", text),), n=n, max_tokens=max_tokens, temperature=temperature, seed=seed
    )


async def ask(generator: Generator, asked: Request) -> tuple[list[str], Cost]:
    """The model's completions, and what they cost as verifier tokens and FLOPs."""
    gen = await generator.generate(asked)
    tokens = gen.cost.prompt_tokens + gen.cost.generated_tokens
    return [c.text for c in gen.completions], Cost.of_verification(generator.n_params, tokens)


def worst_flops(generator: Generator, asked: Request) -> float:
    """The most FLOPs `asked` may cost: every completion its full length, each with its
    prompt (a backend may count the prompt once per completion)."""
    per = generator.count_prompt_tokens(asked) + asked.max_tokens
    return flops(generator.n_params, asked.n * per)


def entry_call(node: ast.AST, entry: str) -> str | None:
    """`node` as source when it is a call of `entry` whose arguments are all Python literals
    (so a model's input is data, not code), else None."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        return None
    if node.func.id != entry:
        return None
    values = [*node.args, *(k.value for k in node.keywords)]
    if any(isinstance(a, ast.Starred) for a in node.args) or any(
        k.arg is None for k in node.keywords
    ):
        return None
    try:
        for value in values:
            encode(ast.literal_eval(value))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError, NotPlain):
        return None
    return ast.unparse(node)


def plain_key(value: object) -> str:
    """A hashable, exact-type key of plain tagged data (what the harness reports)."""
    return json.dumps(value, sort_keys=True)
