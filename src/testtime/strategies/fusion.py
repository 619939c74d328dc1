"""Fusion, or mixture-of-agents (Wang et al. 2024, "Mixture-of-Agents Enhances Large Language
Model Capabilities"): N proposers answer, then an aggregator writes a new answer from theirs.

Layer 1's proposers answer the problem; in each further layer (`layers`) they answer it again
shown the previous layer's answers, and the aggregator, shown the last layer's, writes the
answer returned. Shown answers go where the paper's code puts them: its aggregate-and-
synthesize prompt (a template parameter) with the numbered answers, as the system message (or
after the problem's own system message). Proposers may be several models, taken in turn
(`proposers`: model names, proposal i by model i mod their number), and the aggregator
another (`aggregator`), which makes multi-model ensembles; "" (the default) is the policy.
Named models load once per process and stay loaded (`generators/models.py: opened`, shared
with every component that names a model); a server refuses them, since it runs only the
model it serves.

Cost: every proposal and the aggregate are samples, charged at the FLOPs of the model that
wrote them. The aggregator's tokens are generation, not verifier cost: its text is the
answer returned (a candidate, as the issue asks every answer to be), so a tokens or samples
budget holds it like any sample and `samples == candidates` stays true. No token goes
uncounted either way. A budget sets the proposers per layer (`n`, its size): the lab gives
fusion no ceiling, and it draws `n * layers + 1` samples.

Bad input and budgets: answers too long for a model's context lose their middle until its
prompt fits (`strategies/select.py: fitted`; the trace counts the cut ones). When the
aggregate cannot be written, because the budget refused it ("budget") or the prompt cannot
fit even with each answer cut to a few characters ("context"), the trace names that
`fallback` and the last layer's proposals are voted on (`by`: "vote" when two answers agree),
else the first proposal stands ("first"). A layer that the budget or context refuses
entirely ends the layers there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from testtime.core.errors import ConfigError
from testtime.core.registry import Params
from testtime.core.templates import fill, short
from testtime.core.types import Candidate, Message, Result
from testtime.generators.base import Generator
from testtime.generators.models import opened
from testtime.strategies.base import Context, Traits, strategy
from testtime.strategies.parallel import check_sampling
from testtime.strategies.select import fitted, prompt_limit, vote_or_first

TEMPLATE = (  # Wang et al. 2024, Table 1: the aggregate-and-synthesize prompt
    "You have been provided with a set of responses from various open-source models to the "
    "latest user query. Your task is to synthesize these responses into a single, high-quality "
    "response. It is crucial to critically evaluate the information provided in these "
    "responses, recognizing that some of it may be biased or incorrect. Your response should "
    "not simply replicate the given answers but should offer a refined, accurate, and "
    "comprehensive reply to the instruction. Ensure your response is well-structured, "
    "coherent, and adheres to the highest standards of accuracy and reliability.\n\n"
    "Responses from models:\n{responses}"
)
POLICY = "policy"  # how the trace names the policy model ("" in the parameters)


@dataclass(frozen=True)
class FusionParams(Params):
    _models: ClassVar[frozenset[str]] = frozenset({"proposers", "aggregator"})
    n: int = 4  # proposals per layer
    layers: int = 1  # proposer layers; layer 2 on sees the previous layer's proposals
    proposers: tuple[str, ...] = ()  # model names taken in turn; () or "": the policy
    aggregator: str = ""  # the model that writes the answer; "": the policy
    prompt: str = TEMPLATE  # shows a layer's proposals: {responses}, once
    temperature: float = 0.7  # the paper's, for proposers and aggregator alike
    aggregate_temperature: float = 0.7
    top_p: float = 1.0
    max_prompt_tokens: int = 4096  # a prompt showing proposals, at most (contexts lower it)

    def validate(self) -> None:
        self.positive("n", "layers", "max_prompt_tokens")
        check_sampling(self.temperature, self.top_p)
        check_sampling(self.aggregate_temperature, self.top_p)
        short("prompt", self.prompt)
        fill(self.prompt, {"responses": ""}, "prompt")
        if "{responses}" not in self.prompt:
            raise ConfigError(
                "parameter 'prompt' lacks {responses}, where the numbered proposals go; "
                "write a text with it, e.g. the default: " + repr(TEMPLATE)
            )


@strategy(
    "fusion",
    FusionParams,
    Traits("n", budget_is_size=True, examples=({"n": 2}, {"n": 2, "layers": 2})),
)
async def fusion(ctx: Context, p: FusionParams) -> Result:
    """Mixture-of-agents (Wang et al. 2024): layers of N proposals, each layer shown the
    last; an aggregator synthesizes the answer from the final layer."""
    names = p.proposers or ("",)
    models = [await _model(ctx, name) for name in names]  # a bad name fails before spending
    aggregator = await _model(ctx, p.aggregator)
    trace: dict[str, Any] = {
        "proposers": [name or POLICY for name in names],
        "aggregator": p.aggregator or POLICY,
        "layers": [],
        "cut": 0,
    }
    proposals: list[Candidate] = []
    for _ in range(p.layers):
        drawn = await _layer(ctx, p, models, proposals, trace)
        if not drawn:
            break  # the budget (or a context) refused the whole layer
        proposals = drawn
        trace["layers"].append([c.id for c in drawn])
    if not proposals:
        return ctx.finish(None, trace=trace)
    shown = _shown(ctx, p, aggregator, proposals, ctx.max_tokens, trace)
    if shown is None:
        return _fallback(ctx, proposals, trace, "context")
    written = await ctx.sample(
        1,
        messages=shown,
        generator=aggregator,
        temperature=p.aggregate_temperature,
        top_p=p.top_p,
    )
    if not written:
        return _fallback(ctx, proposals, trace, "budget")
    return ctx.finish(written[0], trace={**trace, "by": "aggregate"})


async def _layer(
    ctx: Context,
    p: FusionParams,
    models: Sequence[Generator],
    previous: Sequence[Candidate],
    trace: dict[str, Any],
) -> list[Candidate]:
    """One layer's proposals, in turn over the models (proposal i by model i mod m), each
    model shown the previous layer's proposals when there are any."""
    m = len(models)

    async def draw(j: int) -> list[Candidate]:
        count = len(range(j, p.n, m))
        chat = _shown(ctx, p, models[j], previous, ctx.max_tokens, trace) if previous else None
        if count == 0 or (previous and chat is None):
            return []
        return await ctx.sample(
            count, messages=chat, generator=models[j], temperature=p.temperature, top_p=p.top_p
        )

    drawn = await asyncio.gather(*(draw(j) for j in range(m)))
    return [drawn[i % m][i // m] for i in range(p.n) if i // m < len(drawn[i % m])]


def _shown(
    ctx: Context,
    p: FusionParams,
    model: Generator,
    proposals: Sequence[Candidate],
    reply_tokens: int,
    trace: dict[str, Any],
) -> tuple[Message, ...] | None:
    """The problem's chat with the proposals shown in the prompt, fitted to `model`'s
    context; None when it cannot fit."""

    def build(texts: Sequence[str]) -> list[Message]:
        numbered = "\n".join(f"{i}. {t}" for i, t in enumerate(texts, 1))
        system = fill(p.prompt, {"responses": numbered}, "prompt")
        messages = list(ctx.problem.messages)
        if messages[0].role == "system":  # as the paper's code: after the chat's own
            return [Message("system", messages[0].content + "\n\n" + system), *messages[1:]]
        return [Message("system", system), *messages]

    limit = prompt_limit(model, p.max_prompt_tokens, reply_tokens)
    fit = fitted(model, build, [c.text for c in proposals], limit)
    if fit is None:
        return None
    chat, cut = fit
    trace["cut"] += cut
    return chat


def _fallback(
    ctx: Context, proposals: Sequence[Candidate], trace: dict[str, Any], why: str
) -> Result:
    """No aggregate (`why`): the last layer's vote when two agree, else its first proposal."""
    chosen, by = vote_or_first(ctx, proposals)
    return ctx.finish(chosen, trace={**trace, "by": by, "fallback": why})


async def _model(ctx: Context, name: str) -> Generator:
    """The policy for "", else the named model, opened once per process (off the loop:
    loading a local model takes seconds)."""
    return ctx.generator if not name else await asyncio.to_thread(opened, name)
