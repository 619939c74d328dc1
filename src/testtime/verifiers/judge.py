"""LLM-as-judge: ask a model whether a solution is correct and score it by P("Yes").

The judge (the policy itself unless another generator is given) reads the problem and the
solution and answers with one greedy token; the score is P(yes) / (P(yes) + P(no)) over its
top-20 next tokens, summing case and space variants (0.5 when neither appears). Every
token it processes is charged as verifier cost, in tokens and FLOPs.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from testtime.core.cost import Cost, flops
from testtime.core.errors import ConfigError
from testtime.core.registry import Params
from testtime.core.templates import fill, short
from testtime.core.types import Candidate, Message, Problem, Request
from testtime.generators.base import Generator
from testtime.verifiers.base import Scores, Verifier, VerifierDeps, verifier

TEMPLATE = (
    "Problem:\n{problem}\n\nProposed solution:\n{solution}\n\n"
    "Is this solution correct? Answer Yes or No."
)
TOP = 20  # next tokens to look at for "yes" and "no"


@dataclass(frozen=True)
class JudgeParams(Params):
    prompt: str = TEMPLATE  # must contain {problem} and {solution}
    max_solution_tokens: int = 512  # longer solutions keep only their end (the answer)

    def validate(self) -> None:
        self.positive("max_solution_tokens")
        short("prompt", self.prompt)  # it may arrive in a server request: bounded, fields only
        fill(self.prompt, {"problem": "", "solution": ""}, "prompt")
        missing = [k for k in ("{problem}", "{solution}") if k not in self.prompt]
        if missing:
            raise ConfigError(
                f"judge prompt lacks {' and '.join(missing)}; write a text with both "
                "placeholders, e.g. the default: " + repr(TEMPLATE)
            )


class Judge(Verifier):
    """Scores each candidate by the judge model's P(Yes) that it is correct."""

    name = "judge"

    def __init__(self, generator: Generator, params: JudgeParams = JudgeParams()) -> None:
        self.generator = generator
        self.template = params.prompt
        self.max_solution_tokens = params.max_solution_tokens

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> Scores:
        # all at once, so a batching generator judges them in one forward pass
        results = await asyncio.gather(*(self.one(problem, c) for c in candidates))
        cost = sum((cost for _, cost in results), Cost())
        return Scores(tuple(score for score, _ in results), cost)

    def flops_per_candidate(self, problem: Problem) -> float:
        """The bound holds because longer solutions are cut to `max_solution_tokens`."""
        return flops(self.generator.n_params, self._limit(problem) + 1)

    async def one(self, problem: Problem, c: Candidate) -> tuple[float, Cost]:
        """One candidate's P(Yes) and what judging it cost."""
        gen = await self.generator.generate(self._fitted(problem, c.text))
        tokens = gen.cost.prompt_tokens + gen.cost.generated_tokens
        cost = Cost.of_verification(self.generator.n_params, tokens)
        tops = gen.completions[0].top_logprobs if gen.completions else None
        if not tops:
            raise ConfigError(
                f"verifier 'judge' needs top logprobs from its model, but generator "
                f"{self.generator.name!r} returned none; use a backend that returns them"
            )
        return p_yes(tops[0]), cost

    def _request(self, problem: Problem, solution: str) -> Request:
        text = fill(self.template, {"problem": problem.prompt, "solution": solution}, "prompt")
        return Request(
            (Message("user", text),), n=1, max_tokens=1, temperature=0.0, top_logprobs=TOP
        )

    def _limit(self, problem: Problem) -> int:
        """The most prompt tokens a judge request may have for this problem."""
        return self.generator.count_prompt_tokens(self._request(problem, "")) + (
            self.max_solution_tokens
        )

    def _fitted(self, problem: Problem, solution: str) -> Request:
        """The judge request, with the solution's head cut until the prompt fits the limit."""
        limit = self._limit(problem)
        request = self._request(problem, solution)
        while solution and self.generator.count_prompt_tokens(request) > limit:
            solution = solution[len(solution) // 8 + 1 :]
            request = self._request(problem, solution)
        return request


def p_yes(top: Mapping[str, float]) -> float:
    """P(yes) / (P(yes) + P(no)) from next-token logprobs; 0.5 when neither is there."""
    mass = {"yes": 0.0, "no": 0.0}
    for token, logprob in top.items():
        word = token.strip().lower()
        if word in mass:
            mass[word] += math.exp(logprob)
    total = mass["yes"] + mass["no"]
    return mass["yes"] / total if total > 0 else 0.5


@verifier("judge", JudgeParams)  # a probability P(yes): it weighs a vote as it is
def judge(params: JudgeParams, deps: VerifierDeps) -> Verifier:
    """Asks a model "is this solution correct?" and scores by P(Yes); costs its tokens."""
    if deps.generator is None:
        raise ConfigError(
            "verifier 'judge' needs a model to ask; give it a generator (the policy model "
            "serves by default)"
        )
    return Judge(deps.generator, params)
