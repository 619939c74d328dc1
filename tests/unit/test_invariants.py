"""The invariants every registered strategy keeps, run on each from the registry (as TreeQuest
tests every algorithm): a strategy missing from a hand list cannot escape them.

Each strategy declares its traits where it is registered (`strategies/base.py: Traits`): the
parameter a budget sets, the pool rule that replays it, the verifier it needs, what a budget
too small for one sample does, and small examples. Here every example runs on the scripted
fake generator under samples, tokens and FLOPs budgets: it never spends past any of them,
the same seed gives the same result, candidates form a tree, the result is JSON; and the
declarations are checked against what the strategy does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import testtime.strategies  # noqa: F401  (registers the strategies)
from testtime.core.budget import Budget
from testtime.core.cost import Cost
from testtime.core.errors import BudgetError, ConfigError
from testtime.core.registry import Spec
from testtime.core.types import Candidate, Problem, Result
from testtime.generators.fake import FakeGenerator
from testtime.lab.analysis.pools import rule
from testtime.strategies.base import STRATEGIES, strategy, traits_of
from testtime.strategies.policy import Choice, Pilot, Policy, save_policy
from testtime.strategies.run import solve
from testtime.tasks.base import Task
from testtime.verifiers.base import StepScores, Verifier
from testtime.verifiers.fake import FakeVerifier
from testtime.verifiers.step_check import StepCheck

Q = "What is (3 + 4) * 2?"
P = Problem.from_prompt(Q, answer="14", id="p")
SCRIPT = {  # steps a process verifier can check; a wrong one, and a right chain gone wrong
    "3 + 4 = 7\n\n7 * 2 = 14\n\nAnswer: 14": 0.4,
    "3 + 4 = 8\n\n8 * 2 = 16\n\nAnswer: 16": 0.4,
    "So 3 + 4 = 7.\n\nAnswer: 15": 0.2,
}
N_PARAMS = 1000


class Sums(Task):
    name = "sums"

    def problems(self) -> Sequence[Problem]:
        return [P]


class CostlyStepCheck(StepCheck):
    """The exact step checker, charged as a pretend PRM (so FLOPs budgets must count it)."""

    def flops_per_candidate(self, problem: Problem) -> float:
        return 2.0 * N_PARAMS * 50

    async def score_steps(self, problem: Problem, candidates: Sequence[Candidate]) -> StepScores:
        got = await super().score_steps(problem, candidates)
        cost = Cost.of_verification(N_PARAMS, 50 * len(candidates), calls=len(candidates))
        return StepScores(got.values, cost)


def verifier_for(name: str) -> Verifier:
    """What the strategy declares it needs, charged: a PRM, else an outcome verifier."""
    if traits_of(name).verifier == "process":
        return CostlyStepCheck()
    return FakeVerifier(check=Sums().check, n_params=N_PARAMS, tokens_per_candidate=50)


def tiny_policy(folder: Path) -> str:
    """A compute-optimal policy for the fake model: a vote of 2 pilot samples, then
    self-consistency with 4 samples."""
    sc = {"name": "self_consistency", "params": {"n": 4, "temperature": 0.8, "top_p": 1.0}}
    policy = Policy(
        model="fake", fingerprint="f", n_params=N_PARAMS, task={}, run="r", trained_on=(),
        max_tokens=64, axis="samples",
        pilot=Pilot(samples=2, temperature=0.8, top_p=1.0, feature="vote"),
        edges=(), frontiers=((Choice("sc4", sc, None, 4, 4.0, 0.9),),),
    )  # fmt: skip
    path = folder / "policy.json"
    save_policy(policy, path)
    return str(path)


# parameters that name a file: how the suite makes one (a new kind fails below, by name)
FILES: dict[str, Callable[[Path], str]] = {"policy": tiny_policy}
# faults this suite found, each an expected failure until fixed (strict: then remove it here)
KNOWN: dict[str, str] = {}
CASES = [(n, i) for n in STRATEGIES.names() for i in range(len(traits_of(n).examples))]
REFUSING = [  # the cases a small budget refuses all of: a known fault is an expected failure
    pytest.param(n, i, marks=pytest.mark.xfail(raises=ConfigError, strict=True, reason=KNOWN[n]))
    if n in KNOWN
    else (n, i)
    for n, i in CASES
]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("files")


def spec_of(name: str, example: int, folder: Path) -> Spec:
    params = dict(traits_of(name).examples[example])
    for field in sorted(STRATEGIES.get(name).params._paths):
        assert field in FILES, f"{name}'s parameter {field!r} names a file: add a maker to FILES"
        params[field] = FILES[field](folder)
    return STRATEGIES.spec(name, params)


def run(
    spec: Spec, *, budget: Budget | None = None, seed: int = 0, verifier: Verifier | None = None,
    gen: FakeGenerator | None = None,
) -> Result:  # fmt: skip
    gen = gen or FakeGenerator({Q: SCRIPT}, n_params=N_PARAMS)
    return asyncio.run(
        solve(P, spec, gen, task=Sums(), verifier=verifier, budget=budget, seed=seed,
              max_tokens=16)
    )  # fmt: skip


def plain(r: Result) -> dict[str, Any]:
    """The result as data, less the wall-clock seconds (which no seed fixes)."""
    out = r.to_dict()
    out["cost"] = {k: v for k, v in out["cost"].items() if k != "seconds"}
    return out


def check_tree(r: Result) -> None:
    """Candidate ids are 0..n-1 in order, each parent an earlier candidate, the chosen one of
    them, and the whole result plain JSON that loads back equal."""
    assert [c.id for c in r.candidates] == list(range(len(r.candidates)))
    assert all(c.parent is None or 0 <= c.parent < c.id for c in r.candidates)
    assert r.chosen is None or 0 <= r.chosen < len(r.candidates)
    assert json.loads(json.dumps(r.to_dict(), allow_nan=False)) == r.to_dict()


# -- the declarations: complete, well formed, and true ---------------------------------------


def test_every_strategy_declares_its_traits_where_it_is_registered() -> None:
    undeclared = {n for n in STRATEGIES.names() if STRATEGIES.get(n).traits is None}
    assert undeclared == set()  # a new strategy declares its own


def test_a_strategy_cannot_be_registered_without_its_traits() -> None:
    from testtime.core.registry import Params
    from testtime.verifiers.base import Traits as VerifierTraits

    with pytest.raises(TypeError):
        strategy("undeclared", Params)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"strategies\.base\.Traits"):
        strategy("undeclared", Params, VerifierTraits())  # type: ignore[arg-type]
    assert "undeclared" not in STRATEGIES.names()


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_the_declared_traits_name_real_parameters_and_rules(name: str, files: Path) -> None:
    traits = traits_of(name)
    fields = {f.name for f in dataclasses.fields(STRATEGIES.get(name).params)}
    assert traits.examples, "at least one example"
    example = spec_of(name, 0, files)
    if traits.budget_param:
        assert traits.budget_param in fields
        size = getattr(example.params, traits.budget_param)
        assert isinstance(size, int | float) and not isinstance(size, bool)
        STRATEGIES.spec(name, {**example.to_dict()["params"], traits.budget_param: 2 * size})
    if traits.replay:
        record = {"strategy": example.to_dict(), "verifier": None, "verifier_key": ""}
        rule(traits.replay, record, draws=4, seed=0)  # a rule the lab's pools know


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_the_declared_verifier_is_the_one_it_needs(name: str, files: Path) -> None:
    spec, needs = spec_of(name, 0, files), traits_of(name).verifier
    gen = FakeGenerator({Q: SCRIPT}, n_params=N_PARAMS)
    if not needs:
        assert run(spec, gen=gen).candidates  # runs with none
        return
    with pytest.raises(ConfigError, match=f"strategy '{name}' needs a verifier"):
        run(spec, gen=gen)
    if needs == "process":
        with pytest.raises(ConfigError, match="needs a process verifier"):
            run(spec, gen=gen, verifier=FakeVerifier(check=Sums().check))
    assert gen.requests == []  # refused before sampling


@pytest.mark.parametrize("name", [n for n in STRATEGIES.names() if traits_of(n).one_request])
def test_a_replayed_strategy_draws_all_its_samples_in_one_request(name: str, files: Path) -> None:
    gen = FakeGenerator({Q: SCRIPT}, n_params=N_PARAMS)
    r = run(spec_of(name, 0, files), gen=gen, verifier=verifier_for(name))
    sampled = [q for q in gen.requests if q.messages == P.messages]  # not a judge's (ctx.ask)
    assert len(sampled) == 1 and sampled[0].n == len(r.candidates)
    assert gen.requests[0] is sampled[0]  # its first request: the pool's seed stream


# -- the invariants, for every example of every strategy -------------------------------------

BUDGETS = st.one_of(  # FLOPs log-uniform: one sample costs ~6e4 here, one score 1e5
    st.builds(Budget, samples=st.integers(1, 12)),
    st.builds(Budget, tokens=st.integers(1, 300)),
    st.builds(Budget, flops=st.floats(4.0, 6.5).map(lambda e: 10**e)),
)


@pytest.mark.parametrize(("name", "example"), REFUSING)
def test_no_budget_is_ever_exceeded(name: str, example: int, files: Path) -> None:
    spec = spec_of(name, example, files)

    @settings(max_examples=20, deadline=None, database=None, derandomize=True)
    @given(budget=BUDGETS, seed=st.integers(0, 3))
    def check(budget: Budget, seed: int) -> None:
        try:
            r = run(spec, budget=budget, seed=seed, verifier=verifier_for(name))
        except BudgetError:  # too small for one unit of its work: refused before spending
            assert traits_of(name).too_small == "error"
            return
        assert r.cost.samples == len(r.candidates) <= (budget.samples or 10**9)
        assert r.cost.generated_tokens <= (budget.tokens or 10**9)
        assert r.cost.flops <= (budget.flops or float("inf"))
        check_tree(r)

    check()


@pytest.mark.parametrize(("name", "example"), CASES)
def test_the_same_seed_gives_the_same_result(name: str, example: int, files: Path) -> None:
    spec = spec_of(name, example, files)
    budget = Budget(samples=10)

    def once(seed: int) -> dict[str, Any]:
        return plain(run(spec, budget=budget, seed=seed, verifier=verifier_for(name)))

    first = once(1)
    assert once(1) == first
    check_tree(run(spec, seed=1, verifier=verifier_for(name)))
    if float(getattr(spec.params, "temperature", 0.0)) > 0:  # sampling: the seed matters
        assert any(once(s)["candidates"] != first["candidates"] for s in range(2, 6))


@pytest.mark.parametrize("budget", [Budget(tokens=1), Budget(flops=1.0)], ids=["tokens", "flops"])
@pytest.mark.parametrize(("name", "example"), REFUSING)
def test_a_budget_too_small_for_one_sample_is_refused(
    name: str, example: int, budget: Budget, files: Path
) -> None:
    gen = FakeGenerator({Q: SCRIPT}, n_params=N_PARAMS)
    spec = spec_of(name, example, files)
    if traits_of(name).too_small == "error":
        with pytest.raises(BudgetError, match="budget"):
            run(spec, budget=budget, verifier=verifier_for(name), gen=gen)
    else:
        r = run(spec, budget=budget, verifier=verifier_for(name), gen=gen)
        assert (r.answer, r.candidates, r.budget_exhausted) == (None, (), True)
        assert r.cost.generated_tokens == 0
    assert gen.requests == []
