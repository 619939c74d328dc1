"""A step judge: a model asked whether the steps so far are correct, scored by P("Yes").

A process verifier built from the outcome judge: each prefix of a solution (its first t
steps) is judged once and remembered, so a search that extends a parent only pays for the
new step, and siblings share their ancestors' judgements. At most `max_steps` prefixes of
a candidate are judged (the last ones; earlier steps take the earliest judged score), so
its cost per candidate is bounded for budgets. A judgement remembered from an earlier
call is not charged again, also across runs that share this verifier (the lab builds one
per task): the ledger counts work actually done.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from testtime.core.cost import Cost
from testtime.core.errors import ConfigError
from testtime.core.registry import Params
from testtime.core.steps import Aggregate, SplitMode, StepSplitter
from testtime.core.types import Candidate, Problem
from testtime.verifiers.base import ProcessVerifier, StepScores, Verifier, VerifierDeps, verifier
from testtime.verifiers.judge import Judge, JudgeParams

CACHE = 4096  # judgements remembered (a search's siblings share their ancestors')
STEP_TEMPLATE = (
    "Problem:\n{problem}\n\nSteps so far:\n{solution}\n\n"
    "Are these steps correct so far? Answer Yes or No."
)


@dataclass(frozen=True)
class StepJudgeParams(Params):
    prompt: str = STEP_TEMPLATE  # must contain {problem} and {solution}
    max_solution_tokens: int = 512
    max_steps: int = 8  # prefixes judged per candidate (the last ones)
    split: SplitMode = "blank_line"
    pattern: str = ""
    aggregate: Aggregate = "last"

    def validate(self) -> None:
        self.positive("max_steps")
        JudgeParams(self.prompt, self.max_solution_tokens)  # the same checks as the judge
        StepSplitter(self.split, self.pattern)


class StepJudge(ProcessVerifier):
    """P(Yes) that the first t steps are correct, for every t, each prefix judged once."""

    name = "step_judge"

    def __init__(self, judge: Judge, p: StepJudgeParams) -> None:
        super().__init__(StepSplitter(p.split, p.pattern), p.aggregate)
        self.judge, self.max_steps = judge, p.max_steps
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()  # LRU of judgements

    def flops_per_candidate(self, problem: Problem) -> float:
        return self.max_steps * self.judge.flops_per_candidate(problem)

    async def score_steps(self, problem: Problem, candidates: Sequence[Candidate]) -> StepScores:
        prefixes = [self.prefixes(c) for c in candidates]
        todo = sorted({t for ps in prefixes for t in ps[-self.max_steps :]}
                      - {t for (pid, t) in self._seen if pid == problem.id})  # fmt: skip
        judged = await asyncio.gather(*(self.judge.one(problem, Candidate(t)) for t in todo))
        cost = sum((c for _, c in judged), Cost())
        for text, (score, _) in zip(todo, judged, strict=True):
            self._seen[(problem.id, text)] = score
        for ps in prefixes:  # keep this batch's prefixes fresh, forget the oldest others
            for t in ps:
                if (problem.id, t) in self._seen:
                    self._seen.move_to_end((problem.id, t))
        while len(self._seen) > CACHE:
            self._seen.popitem(last=False)
        out = []
        for ps in prefixes:
            scores = [self._seen.get((problem.id, t)) for t in ps]
            first = next((s for s in scores if s is not None), 0.5)
            out.append(tuple(first if s is None else s for s in scores))
        return StepScores(tuple(out), cost)


@verifier("step_judge", StepJudgeParams)
def step_judge(params: StepJudgeParams, deps: VerifierDeps) -> Verifier:
    """Asks a model "are these steps correct so far?" for each step; P(Yes), each prefix once."""
    if deps.generator is None:
        raise ConfigError("verifier 'step_judge' needs a model to ask (the policy by default)")
    judge = Judge(deps.generator, JudgeParams(params.prompt, params.max_solution_tokens))
    return StepJudge(judge, params)
