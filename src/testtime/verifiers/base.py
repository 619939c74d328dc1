"""The verifier interface: score candidates, and say what scoring cost.

Outcome verifiers score finished candidates; process verifiers score every step of a
(possibly unfinished) candidate, and serve as outcome verifiers through an aggregate of
their step scores. A verifier built on a model reports the tokens and FLOPs it spent,
which the strategy's ledger charges as verifier cost.

Each verifier declares its traits where it is registered (`@verifier(name, Params, Traits(...))`):
whether it reads the gold answer, loads a file, needs the policy's logprobs, and how its
score becomes a vote weight. The server's and the allocator's lists derive from them.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from testtime.core.cost import Cost
from testtime.core.errors import ConfigError
from testtime.core.registry import Params, Registry
from testtime.core.steps import Aggregate, StepSplitter, aggregate
from testtime.core.types import Candidate, Problem
from testtime.core.voting import Weighting
from testtime.generators.base import Generator

Checker = Callable[[Problem, str | None], bool]
# a task's `grade`: each answer's gold check, and what checking cost (sandbox seconds)
Grader = Callable[[Problem, Sequence[str | None]], Awaitable[tuple[tuple[bool, ...], Cost]]]


@dataclass(frozen=True, slots=True)
class Traits:
    """What a verifier needs and touches, declared where it is registered."""

    reads_gold: bool = False  # compares with the gold answer: never a policy or served request
    # ... and that gold is nothing but the problem's own tests, which a served request may
    # bring itself (testtime.tests): the server allows it for such a request alone
    gold_is_tests: bool = False
    loads_file: bool = False  # loads a path named in its parameters
    needs_logprobs: bool = False  # the strategy must sample with logprobs=True
    weight: Weighting = "score"  # how a score becomes a vote weight (core.voting.vote_weight)
    wraps: str = ""  # a parameter naming another verifier, whose traits this one takes on
    # a candidate's score depends on the others scored with it (a cluster's size, tests
    # agreed on): a stored pool cannot replay it sample by sample, so the lab runs it
    relative: bool = False
    # sends what it scores to a URL named in its parameters (with a key from an environment
    # variable it names): a served request never chooses one
    calls_url: bool = False


@dataclass(frozen=True, slots=True)
class Scores:
    """One score per candidate (higher is better) and the cost of computing them."""

    values: tuple[float, ...]
    cost: Cost = field(default_factory=Cost)


class Verifier(ABC):
    """Scores candidates for a problem."""

    name: str = "verifier"
    traits: Traits = Traits()  # built by name: the registered traits (see `verifier`)

    @property
    def needs_logprobs(self) -> bool:
        """Whether the strategy must sample with logprobs=True (self-certainty, likelihood)."""
        return self.traits.needs_logprobs

    @abstractmethod
    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> Scores:
        """A score for each candidate, in order."""

    def flops_per_candidate(self, problem: Problem) -> float:
        """Worst-case FLOPs to score one candidate (0 for verifiers that run no model)."""
        return 0.0


@dataclass(frozen=True, slots=True)
class StepScores:
    """Per candidate, one score per step (higher is better), and what scoring cost."""

    values: tuple[tuple[float, ...], ...]
    cost: Cost = field(default_factory=Cost)


class ProcessVerifier(Verifier):
    """Scores each step of a candidate (a PRM). Its outcome score is the aggregate of its
    step scores (`how`: last, min, product or mean)."""

    def __init__(self, splitter: StepSplitter | None = None, how: Aggregate = "last") -> None:
        self.splitter = splitter or StepSplitter()
        self.how = how

    @abstractmethod
    async def score_steps(self, problem: Problem, candidates: Sequence[Candidate]) -> StepScores:
        """Each candidate's step scores, in order."""

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> Scores:
        got = await self.score_steps(problem, candidates)
        return Scores(tuple(aggregate(v, self.how) for v in got.values), got.cost)

    def steps(self, candidate: Candidate) -> tuple[str, ...]:
        """The candidate's steps as a search recorded them, else its text cut into steps."""
        return candidate.steps or self.splitter.split(candidate.text)

    def prefixes(self, candidate: Candidate) -> list[str]:
        """The candidate's first 1, 2, ... steps as texts: what each step score judges."""
        steps = self.steps(candidate)
        return ["\n\n".join(steps[: t + 1]) for t in range(len(steps))]


@dataclass(frozen=True)
class VerifierDeps:
    """What a verifier may be built from: the task's gold check (and its `grade`, which
    runs checks that execute code concurrently and says what they cost), a model to ask."""

    check: Checker | None = None
    generator: Generator | None = None
    grade: Grader | None = None


def gold_check(deps: VerifierDeps, what: str, remedy: str) -> Checker:
    """The task's gold check a verifier (`what`: its name as the user wrote it) scores by;
    without a task that has answers, a ConfigError saying so and `remedy`."""
    if deps.check is None:
        raise ConfigError(
            f"verifier {what} reads the gold answers of a task, but no task was given; {remedy}"
        )
    return deps.check


# a factory takes its own Params subclass, already validated by `VERIFIERS.spec`
VerifierFactory = Callable[[Any, VerifierDeps], Verifier]
# registered as the registry builds every component: what it needs first, then its params;
# each entry's traits are the verifier's `Traits`, as every kind of component declares its facts
VERIFIERS: Registry[Callable[[VerifierDeps, Any], Verifier]] = Registry("verifier")


def verifier(
    name: str, params: type[Params], traits: Traits = Traits()
) -> Callable[[VerifierFactory], VerifierFactory]:
    """Register a verifier factory under `name` with its traits; what it builds carries them."""

    def deco(factory: VerifierFactory) -> VerifierFactory:
        @functools.wraps(factory)
        def build(deps: VerifierDeps, p: Any) -> Verifier:
            built = factory(p, deps)
            built.traits = traits_of(name, p)
            return built

        VERIFIERS.register(name, params, traits)(build)
        return factory

    return deco


def _declared(name: str) -> Traits:
    """The traits `name` was registered with (an unknown name: a ConfigError listing the
    known ones)."""
    traits = VERIFIERS.get(name).traits
    assert isinstance(traits, Traits)  # `verifier` always registers them
    return traits


def traits_of(name: str, params: Params | None = None) -> Traits:
    """A registered verifier's traits; one that wraps another takes on the inner one's
    (with `params`, that inner verifier; without, any it may wrap: the worst case)."""
    own = _declared(name)
    if not own.wraps:
        return own
    if params is not None:
        return traits_of(str(getattr(params, own.wraps)))
    inner = [_declared(n) for n in VERIFIERS.names() if not _declared(n).wraps]
    return Traits(
        reads_gold=any(t.reads_gold for t in inner),
        loads_file=any(t.loads_file for t in inner),
        needs_logprobs=any(t.needs_logprobs for t in inner),
        relative=any(t.relative for t in inner),
        calls_url=any(t.calls_url for t in inner),
        weight=own.weight,
        wraps=own.wraps,
    )


def named(has: Callable[[Traits], bool]) -> tuple[str, ...]:
    """Registered verifier names whose traits (for any parameters) have `has`, sorted."""
    return tuple(n for n in VERIFIERS.names() if has(traits_of(n)))
