"""Universal self-consistency (Chen et al. 2023, "Universal Self-Consistency for Large
Language Model Generation"): sample N responses, show the model all of them, numbered, and
let it pick the one most consistent with the others.

Self-consistency votes on extracted answers, so it cannot choose among free texts (every
haiku is its own group); USC asks the model itself for the consensus. The selector is the
policy, greedy, asked through `ctx.ask`, so its tokens and FLOPs are verifier cost and it is
never a sample. Responses are numbered from 1 and the selection prompt (the paper's, a
template parameter) asks for "The most consistent response is Response X".

No judge call is made when there is nothing to choose: one sample, or samples whose texts are
all the same (`by`: "only", "identical"). When the selector cannot decide, a fallback chooses,
named in the trace (`fallback`): its reply names no response in range ("unparsed"), the
budget refused the call ("budget"), or the prompt cannot fit the model's context even with
each response cut to a few characters ("context"). The fallback is a vote over the
extracted answers when two samples agree (`by`: "vote"), else the first sample ("first").
Responses too long for the context lose their middle, equally, until the prompt fits
(`strategies/select.py: fitted`); the trace counts the cut ones.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from testtime.core.errors import ConfigError
from testtime.core.registry import Params
from testtime.core.templates import fill, short
from testtime.core.types import Candidate, Message, Result
from testtime.strategies.base import Context, Traits, strategy
from testtime.strategies.parallel import check_sampling
from testtime.strategies.select import fitted, prompt_limit, vote_or_first

TEMPLATE = (  # Chen et al. 2023, Figure 2 (responses numbered from 1 here)
    "I have generated the following responses to the question: {problem}\n\n"
    "{responses}\n\n"
    "Evaluate these responses.\n"
    "Select the most consistent response based on majority consensus.\n"
    'Start your answer with "The most consistent response is Response X" (without quotes).'
)
_SAID = re.compile(r"most\s+consistent\s+response\s+is\W{0,4}(?:response\W{0,4})?(\d{1,6})\b", re.I)
_NAMED = re.compile(r"\bresponse\W{0,4}(\d{1,6})\b", re.I)
_NUMBER = re.compile(r"\b\d{1,6}\b")


@dataclass(frozen=True)
class USCParams(Params):
    n: int = 8  # N, responses sampled
    temperature: float = 0.8
    top_p: float = 1.0
    prompt: str = TEMPLATE  # the selection prompt: {problem} and {responses}, each once
    select_tokens: int = 32  # the selector's reply, at most
    max_prompt_tokens: int = 4096  # the selection prompt, at most (the context lowers it)

    def validate(self) -> None:
        self.positive("n", "select_tokens", "max_prompt_tokens")
        check_sampling(self.temperature, self.top_p)
        short("prompt", self.prompt)
        fill(self.prompt, {"problem": "", "responses": ""}, "prompt")
        if "{responses}" not in self.prompt:
            raise ConfigError(
                "parameter 'prompt' lacks {responses}, where the numbered responses go; "
                "write a text with it, e.g. the default: " + repr(TEMPLATE)
            )


@strategy("usc", USCParams, Traits("n", examples=({"n": 3},)))
async def usc(ctx: Context, p: USCParams) -> Result:
    """Universal self-consistency (Chen et al. 2023): N samples; the model, shown them all,
    names the most consistent one."""
    samples = await ctx.sample(p.n, temperature=p.temperature, top_p=p.top_p)
    trace: dict[str, Any] = {"samples": len(samples)}
    if len(samples) <= 1:
        return ctx.finish(samples[0] if samples else None, trace={**trace, "by": "only"})
    if len({c.text.strip() for c in samples}) == 1:
        return ctx.finish(samples[0], trace={**trace, "by": "identical"})

    def build(texts: Sequence[str]) -> list[Message]:
        shown = "\n\n".join(f"Response {i}: {t}" for i, t in enumerate(texts, 1))
        text = fill(p.prompt, {"problem": ctx.problem.prompt, "responses": shown}, "prompt")
        return [Message("user", text)]

    limit = prompt_limit(ctx.generator, p.max_prompt_tokens, p.select_tokens)
    fit = fitted(ctx.generator, build, [c.text for c in samples], limit)
    if fit is None:
        return _fallback(ctx, samples, trace, "context")
    chat, trace["cut"] = fit
    replies = await ctx.ask(chat, temperature=0.0, max_tokens=p.select_tokens)
    if not replies:
        return _fallback(ctx, samples, trace, "budget")
    trace["reply"] = replies[0].text
    index = picked(replies[0].text, len(samples))
    if index is None:
        return _fallback(ctx, samples, trace, "unparsed")
    return ctx.finish(samples[index], trace={**trace, "by": "judge", "selected": index + 1})


def picked(reply: str, n: int) -> int | None:
    """The index (from 0) of the response a selector's reply names, of `n` numbered from 1;
    None when it names none in range. Read in order of trust: "the most consistent response
    is (Response) X", else the first "Response X", else the reply's only number."""
    for pattern in (_SAID, _NAMED):
        found = pattern.search(reply)
        if found:
            return _in_range(int(found.group(1)), n)
    numbers = set(_NUMBER.findall(reply))
    return _in_range(int(numbers.pop()), n) if len(numbers) == 1 else None


def _in_range(number: int, n: int) -> int | None:
    return number - 1 if 1 <= number <= n else None


def _fallback(
    ctx: Context, samples: Sequence[Candidate], trace: dict[str, Any], why: str
) -> Result:
    """The selector did not choose (`why`): a vote when two samples agree, else the first."""
    chosen, by = vote_or_first(ctx, samples)
    return ctx.finish(chosen, trace={**trace, "by": by, "fallback": why})
