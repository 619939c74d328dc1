"""`instructions`: writing prompts with verifiable constraints, in the manner of IFEval
(Zhou et al. 2023), generated from a seed and shipped (nothing is downloaded).

A problem is one of the writing prompts below ("Write a short story about ...", "Explain
...", "Write an email to ...") followed by `constraints` instructions of different kinds
that never contradict each other ("Answer with at most 60 words. Include the keywords river,
candle in the response."). The kinds, their instruction texts and their exact checkers live
in `core/constraints.py`, so the `constraints` verifier checks with the same code; the drawn
constraints ride on `Problem.metadata["constraints"]` as plain data.

The answer is the whole reply (stripped), not a string read out of it. `check` is IFEval's
prompt-level accuracy (every constraint followed) in the task's mode, strict or loose;
`followed` gives the instruction-level results. Two replies are one vote only when they are
the same text once stripped (in practice every sample is its own group).

Problem i depends only on (seed, i) and the number of constraints, and its constraints are
the first ones of the same draw that a larger number of constraints makes: the problems at
2 constraints are those at 1 with one more (paired comparisons across levels). A larger
`size` adds problems and changes none. The screening that chose the defaults is in
docs/instructions.md.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from testtime.core import constraints as cs
from testtime.core.errors import ConfigError
from testtime.core.registry import Params
from testtime.core.types import Message, Problem
from testtime.tasks.base import TASKS, Task

KEY = "constraints"  # Problem.metadata key: the problem's constraints, plain data
MAX_CONSTRAINTS = 6
DEFAULT_CONSTRAINTS = 1  # chosen by measurement (docs/instructions.md)

PROMPTS = (
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how rainbows form.",
    "Write an email to your neighbour asking them to water your plants while you are away.",
    "Describe your ideal weekend.",
    "Explain why the sky is blue.",
    "Write a product description for a reusable water bottle.",
    "Give advice to a student starting their first job.",
    "Write a short story about a robot learning to paint.",
    "Explain how a bicycle works.",
    "Write an email to a teacher explaining why your homework is late.",
    "Describe a busy market in the morning.",
    "Write a blog post about the benefits of walking every day.",
    "Explain what photosynthesis is to a ten-year-old.",
    "Write a letter to your future self.",
    "Write a review of a restaurant that does not exist.",
    "Explain how to make a cup of tea.",
    "Write a short story about a cat who becomes mayor of a small town.",
    "Describe the changing seasons in a forest.",
    "Write an email to a colleague proposing a new meeting time.",
    "Explain why sleep matters for health.",
    "Write a speech for a school graduation.",
    "Give tips for keeping a small vegetable garden.",
    "Write a short story about two friends lost in a snowstorm.",
    "Explain how a message travels across the internet.",
    "Write an advertisement for a new bakery.",
    "Describe a journey on a night train.",
    "Write an email to a hotel asking about room availability.",
    "Explain the water cycle.",
    "Write a short story about a dragon who is afraid of fire.",
    "Give advice on how to prepare for a job interview.",
    "Describe your favourite book and why you like it.",
    "Write a thank-you note to a friend who helped you move house.",
    "Explain how vaccines help the body fight disease.",
    "Write a short story about a child who discovers a secret door.",
    "Describe a city on a rainy evening.",
    "Write a pitch for a mobile app that helps people save money.",
    "Explain what makes a good team leader.",
    "Write an email to a customer apologising for a delayed order.",
    "Write a short story about an astronaut returning home.",
    "Explain the difference between weather and climate.",
    "Describe a memorable meal.",
    "Give advice to someone learning to cook.",
    "Write a short biography of an imaginary inventor.",
    "Explain why recycling matters.",
    "Write a welcome message for new members of a hiking club.",
    "Describe the view from the top of a mountain.",
    "Write a short story about a musician who loses their voice.",
    "Explain how to plan a monthly budget.",
    "Write a complaint letter about a noisy construction site.",
    "Write a short story about a village where it never stops raining.",
    "Explain how bees make honey.",
    "Write a toast for a friend's wedding.",
)


def generate(seed: int, index: int, k: int) -> tuple[str, tuple[dict[str, object], ...]]:
    """Problem `index` of `seed` with `k` constraints: its prompt and its constraints."""
    rng = random.Random(f"instructions:{seed}:{index}")  # str seeds hash stably
    base = rng.choice(PROMPTS)
    drawn = cs.draw(rng, k)
    return " ".join([base, *(cs.say(c) for c in drawn)]), drawn


class InstructionsTask(Task):
    """Writing prompts with verifiable constraints, checked strictly or loosely."""

    name = "instructions"

    def __init__(self, size: int, seed: int, constraints: int, mode: cs.Mode = "strict") -> None:
        check_constraints(constraints)
        check_mode(mode)
        self.seed, self.k, self.mode = seed, constraints, mode
        self._problems = tuple(self.problem(i) for i in range(size))

    def problem(self, index: int) -> Problem:
        prompt, drawn = generate(self.seed, index, self.k)
        return Problem(
            (Message("user", prompt),),
            id=f"instructions-K{self.k}-{self.seed}-{index}",
            metadata={KEY: drawn},
        )

    def problems(self) -> Sequence[Problem]:
        return self._problems

    def extract(self, text: str) -> str | None:
        """The whole reply, stripped (None when blank): the constraints are on all of it."""
        return text.strip() or None

    def graded(self, problem: Problem) -> bool:
        return bool(problem.metadata.get(KEY))

    def followed(
        self, problem: Problem, answer: str | None, mode: cs.Mode | None = None
    ) -> tuple[bool, ...]:
        """Each of the problem's constraints followed or not (IFEval's instruction level),
        in the task's mode unless `mode` is given."""
        drawn = problem.metadata.get(KEY, ())
        if answer is None:
            return tuple(False for _ in drawn)
        return cs.results(answer, drawn, mode or self.mode)

    def check(self, problem: Problem, answer: str | None) -> bool:
        """IFEval's prompt level: every constraint followed (False with none to follow)."""
        got = self.followed(problem, answer)
        return bool(got) and all(got)

    @staticmethod
    def canonical(answer: str) -> str:
        """The reply stripped, nothing else: a checker counts lines, spaces and case, so any
        other merging could pool a reply that passes with one that fails."""
        return answer.strip()


def check_constraints(k: int) -> None:
    if not 1 <= k <= MAX_CONSTRAINTS:
        raise ConfigError(
            f"parameter 'constraints' must be 1 to {MAX_CONSTRAINTS} (instructions per "
            f"prompt), got {k}; e.g. constraints={DEFAULT_CONSTRAINTS}"
        )


def check_mode(mode: str) -> None:
    if mode not in cs.MODES:
        raise ConfigError(
            f"parameter 'mode' must be one of {', '.join(cs.MODES)} (IFEval's strict or loose "
            f"accuracy), got {mode!r}"
        )


@dataclass(frozen=True)
class InstructionsParams(Params):
    size: int = 50
    seed: int = 0
    constraints: int = DEFAULT_CONSTRAINTS  # verifiable instructions per prompt
    mode: cs.Mode = "strict"  # IFEval's strict or loose accuracy

    def validate(self) -> None:
        self.positive("size")
        check_constraints(self.constraints)


@TASKS.register("instructions", InstructionsParams, InstructionsTask)
def instructions_task(p: InstructionsParams) -> Task:
    """Writing prompts with verifiable constraints (IFEval-style), strict or loose."""
    return InstructionsTask(p.size, p.seed, p.constraints, p.mode)
