"""Verifiers: oracle, math equivalence, self-certainty and likelihood, the LLM judge, and the
traits each declares (gold, files, logprobs, vote weights) that keep gold out of policies and
served requests."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

import testtime.tasks
import testtime.verifiers  # noqa: F401  (registers the verifiers)
from testtime.core.cost import Cost
from testtime.core.errors import ConfigError
from testtime.core.registry import Params, Spec
from testtime.core.types import Candidate, Completion, Problem, Request
from testtime.generators.base import Generation, Generator
from testtime.generators.fake import FakeGenerator, render
from testtime.strategies.base import Context
from testtime.tasks.base import TASKS
from testtime.verifiers.base import VERIFIERS, Traits, Verifier, VerifierDeps, named, traits_of
from testtime.verifiers.judge import TOP, p_yes

P = Problem.from_prompt("What is 3 + 4?", answer="7", id="q")


def verifier(name: str, deps: VerifierDeps | None = None, **params: Any) -> Verifier:
    spec = VERIFIERS.spec(name, params)
    return VERIFIERS.build(spec, deps or VerifierDeps())


def cands(*answers: str | None) -> list[Candidate]:
    return [Candidate(render(a), a, id=i) for i, a in enumerate(answers)]


async def scores(v: Verifier, candidates: list[Candidate], problem: Problem = P) -> list[float]:
    return list((await v.score(problem, candidates)).values)


# -- oracle and math --------------------------------------------------------------------


async def test_oracle_scores_the_tasks_check() -> None:
    oracle = verifier("oracle", VerifierDeps(check=lambda p, a: a == p.answer))
    assert await scores(oracle, cands("7", "8", None)) == [1.0, 0.0, 0.0]
    assert (await oracle.score(P, cands("7"))).cost == Cost()


async def test_oracle_uses_the_reasoning_gym_scorer_so_partial_credit_is_wrong() -> None:
    spec = TASKS.spec("reasoning_gym", {"dataset": "basic_arithmetic", "size": 20})
    task = TASKS.build(spec)
    p = next(p for p in task.problems() if p.answer and len(p.answer) == 1)
    oracle = verifier("oracle", VerifierDeps(check=task.check))
    assert await scores(oracle, cands(p.answer, "1" + (p.answer or "")), p) == [1.0, 0.0]


def test_oracle_without_a_task_says_what_to_do() -> None:
    with pytest.raises(ConfigError, match="no task was given"):
        verifier("oracle")


async def test_math_compares_extracted_answers_symbolically() -> None:
    half = Problem.from_prompt("What is 1/2?", answer="0.5")
    v = verifier("math")
    got = await scores(v, [*cands("\\frac{1}{2}", "1/2", "0.25", None), Candidate("So: 0.5")], half)
    assert got == [1.0, 1.0, 0.0, 0.0, 1.0]  # the last one has its answer read from its text
    assert await scores(v, cands("7"), Problem.from_prompt("no gold")) == [0.0]


# -- self-certainty and likelihood ------------------------------------------------------


def with_series(values: tuple[float, ...] | None, answer: str = "7") -> Candidate:
    comp = Completion("x", 5, len(values or ()), "eos", logprobs=values, certainty=values)
    return Candidate(render(answer), answer, completion=comp)


@pytest.mark.parametrize(("name", "empty"), [("self_certainty", 0.0), ("likelihood", -math.inf)])
async def test_token_scores_are_means_of_the_generators_series(name: str, empty: float) -> None:
    v = verifier(name)
    assert v.needs_logprobs
    assert await scores(v, [with_series((1.0, 2.0, 6.0)), with_series(())]) == [3.0, empty]
    with pytest.raises(ConfigError, match="logprobs"):
        await v.score(P, [with_series(None)])


@pytest.mark.parametrize("name", ["self_certainty", "likelihood"])
async def test_token_scores_rank_the_likely_answer_first(name: str) -> None:
    gen = FakeGenerator.from_answers({P.prompt: {"7": 0.8, "8": 0.2}})
    ctx = Context(P, gen, spec=Spec("strategy", "test", Params()), verifier=verifier(name))
    sampled = await ctx.sample(24, temperature=1.0)
    assert all(r.logprobs for r in gen.requests)  # asked for, because the verifier needs them
    scored = await ctx.score(sampled)
    by = {c.answer: c.scores[name] for c in scored}
    assert set(by) == {"7", "8"} and by["7"] > by["8"]


async def test_strategies_do_not_ask_for_logprobs_when_the_verifier_needs_none() -> None:
    gen = FakeGenerator.from_answers({P.prompt: {"7": 1.0}})
    oracle = verifier("oracle", VerifierDeps(check=lambda p, a: a == p.answer))
    ctx = Context(P, gen, spec=Spec("strategy", "test", Params()), verifier=oracle)
    await ctx.sample(2)
    assert not any(r.logprobs for r in gen.requests)


# -- the judge --------------------------------------------------------------------------


class Scripted(Generator):
    """Answers every request with one token whose top logprobs are given; tokens are words."""

    def __init__(self, top: Mapping[str, float] | None, n_params: int = 1000) -> None:
        self.top = top
        self.n_params = n_params
        self.requests: list[Request] = []

    def count_prompt_tokens(self, request: Request) -> int:
        return sum(len(m.content.split()) for m in request.messages) + 3

    async def generate(self, request: Request) -> Generation:
        self.requests.append(request)
        tops = None if self.top is None else (self.top,)
        comp = Completion("Yes", self.count_prompt_tokens(request), 1, "length", top_logprobs=tops)
        cost = Cost.of_generation(self.n_params, comp.prompt_tokens, 0, 1, 1)
        return Generation((comp,), cost)


def test_p_yes_sums_case_and_space_variants() -> None:
    top = {"Yes": math.log(0.5), " yes": math.log(0.1), "YES": math.log(0.1), "No": math.log(0.2)}
    assert p_yes(top | {"Maybe": math.log(0.1)}) == pytest.approx(0.7 / 0.9)
    assert p_yes({" no": 0.0}) == 0.0
    assert p_yes({"Maybe": -0.1, "The": -3.0}) == 0.5  # neither appears


async def test_judge_asks_one_greedy_token_and_charges_its_tokens() -> None:
    gen = Scripted({"Yes": math.log(0.6), "No": math.log(0.2)}, n_params=1000)
    judge = verifier("judge", VerifierDeps(generator=gen))
    got = await judge.score(P, cands("7", "8"))
    assert got.values == pytest.approx((0.75, 0.75))
    asked = gen.requests[0]
    assert (asked.max_tokens, asked.temperature, asked.top_logprobs, asked.n) == (1, 0.0, TOP, 1)
    assert P.prompt in asked.messages[-1].content and "Answer: 7" in asked.messages[-1].content
    tokens = sum(gen.count_prompt_tokens(r) + 1 for r in gen.requests)
    assert got.cost == Cost.of_verification(1000, tokens, calls=2)
    assert got.cost.flops == 2 * 1000 * tokens and got.cost.generated_tokens == 0


async def test_judge_flops_bound_holds_even_for_very_long_solutions() -> None:
    gen = Scripted({"No": 0.0})
    judge = verifier("judge", VerifierDeps(generator=gen), max_solution_tokens=50)
    long = Candidate("word " * 5000 + "Answer: 7", "7")
    got = await judge.score(P, [long, *cands("7")])
    assert got.values == (0.0, 0.0)
    for r in gen.requests:  # each judged prompt, long or short, fits the worst case
        assert 2.0 * gen.n_params * (gen.count_prompt_tokens(r) + 1) <= judge.flops_per_candidate(P)
    assert got.cost.flops <= 2 * judge.flops_per_candidate(P)
    assert "Answer: 7" in gen.requests[0].messages[-1].content  # the end is what is kept


async def test_judge_with_the_fake_generator_scores_by_its_yes_mass() -> None:
    gen = FakeGenerator({"Is this solution correct?": {"Yes": 0.9, "No": 0.1}})
    got = await verifier("judge", VerifierDeps(generator=gen)).score(P, cands("7"))
    assert got.values[0] == pytest.approx(0.9, abs=0.02)
    assert got.cost.verifier_calls == 1 and got.cost.verifier_tokens > 0


async def test_judge_errors_say_what_is_missing() -> None:
    with pytest.raises(ConfigError, match="needs a model"):
        verifier("judge")
    with pytest.raises(ConfigError, match=r"lacks \{solution\}"):
        verifier("judge", VerifierDeps(generator=Scripted(None)), prompt="Is {problem} solved?")
    judge = verifier("judge", VerifierDeps(generator=Scripted(None)))
    with pytest.raises(ConfigError, match="top logprobs"):
        await judge.score(P, cands("7"))


# -- traits: what a verifier reads, loads and weighs -----------------------------------------

GOLD = named(lambda t: t.reads_gold)


def test_the_servers_and_the_allocators_lists_derive_from_the_traits() -> None:
    from testtime.lab.policy.allocate import SKIPPED
    from testtime.server.plan import FILE_VERIFIERS, GOLD_VERIFIERS

    assert {"oracle", "math", "fake", "noisy"} <= set(GOLD)  # noisy may wrap a gold reader
    assert set(GOLD_VERIFIERS) == set(SKIPPED) == set(GOLD)  # the allocator missed math
    assert {"prm", "probe"} <= set(FILE_VERIFIERS) == set(named(lambda t: t.loads_file))
    assert not {"judge", "self_certainty", "likelihood", "step_check"} & set(GOLD)


@pytest.mark.parametrize("name", GOLD)
def test_no_gold_reading_verifier_reaches_a_served_request(name: str) -> None:
    from testtime.server.errors import ApiError
    from testtime.server.plan import verifier_spec
    from testtime.server.settings import Settings

    with pytest.raises(ApiError, match="gold answer"):
        verifier_spec(name, Settings("smollm2-135m"))


@pytest.mark.parametrize("inner", ["oracle", "math", "fake"])
def test_noisy_over_a_gold_reader_needs_a_tasks_gold_check(inner: str) -> None:
    from testtime.server.work import build_verifier

    spec = VERIFIERS.spec("noisy", {"inner": inner})
    with pytest.raises(ConfigError, match="reads the gold answer"):
        build_verifier(spec, FakeGenerator())  # as the server builds it: no gold check
    built = verifier("noisy", VerifierDeps(check=lambda p, a: a == p.answer), inner=inner)
    assert built.traits.reads_gold  # a lab run may study it; a policy never uses it


@pytest.mark.parametrize(
    ("name", "params"), [("oracle", {}), ("fake", {}), ("noisy", {"inner": "oracle"})]
)
def test_a_verifier_scoring_by_gold_without_a_task_says_so_in_one_way(
    name: str, params: dict[str, Any]
) -> None:
    with pytest.raises(
        ConfigError, match="reads the gold answers of a task, but no task was given"
    ):
        verifier(name, VerifierDeps(generator=FakeGenerator()), **params)


@pytest.mark.parametrize("name", GOLD)
def test_no_gold_reading_verifier_reaches_a_policy(name: str) -> None:
    from testtime.lab.data.spec import ArmSpec
    from testtime.lab.policy.allocate import _usable
    from testtime.strategies.base import STRATEGIES

    arm = ArmSpec("arm", STRATEGIES.spec("best_of_n"), VERIFIERS.spec(name), (1, 2))
    assert not _usable(arm)
    assert _usable(ArmSpec("arm", STRATEGIES.spec("best_of_n"), VERIFIERS.spec("judge"), (1,)))


def test_every_verifier_declares_its_traits_in_the_registry_entry() -> None:
    """Verifiers keep their facts where strategies do: on the registry's entry."""
    for name in VERIFIERS.names():
        declared = VERIFIERS.get(name).traits
        assert isinstance(declared, Traits), name
        if not declared.wraps:
            assert traits_of(name) == declared
    assert VERIFIERS.get("oracle").traits.reads_gold
    assert VERIFIERS.get("noisy").traits.wraps == "inner"


@pytest.mark.parametrize(
    ("name", "weight", "logprobs"),
    [("likelihood", "exp", True), ("self_certainty", "score", True), ("judge", "score", False)],
)
def test_built_verifiers_carry_their_registered_traits(
    name: str, weight: str, logprobs: bool
) -> None:
    built = verifier(name, VerifierDeps(generator=FakeGenerator()))
    assert (built.traits.weight, built.needs_logprobs) == (weight, logprobs)
    assert built.traits == traits_of(name)
    noisy = verifier("noisy", VerifierDeps(generator=FakeGenerator()), inner=name)
    assert noisy.traits == built.traits  # a wrapper takes on its inner verifier's traits


async def test_token_scores_without_logprobs_are_the_least_certain() -> None:
    for name, empty in (("self_certainty", 0.0), ("likelihood", -math.inf)):
        got = await scores(verifier(name), [with_series((1.0, 2.0)), with_series(None)])
        assert got == [1.5, empty]


# -- the math verifier never matches, nor parses, text that is not an answer ----------------


async def test_math_never_matches_nor_evaluates_code(tmp_path: Path, monkeypatch: Any) -> None:
    """math-verify hands some text to sympy's parse_expr, which evaluates Python."""
    import math_verify
    import sympy

    live = tmp_path / "live"
    payload = "1 + __import__('pathlib').Path('{}').touch()"
    with contextlib.suppress(Exception):  # the hazard is real: parse_expr runs the payload
        sympy.parse_expr(payload.format(live))
    assert live.exists()

    marker = tmp_path / "evaluated"
    answers = [
        payload.format(marker),
        f"1 + __import__('os').system('touch {marker}')",
        "1 + os.system",
        "1 apple and exec",
    ]
    parsed: list[str] = []
    real = math_verify.parse
    monkeypatch.setattr(math_verify, "parse", lambda t, *a, **k: parsed.append(t) or real(t))
    one = Problem.from_prompt("What is 0 + 1?", answer="1")
    assert await scores(verifier("math"), cands(*answers), one) == [0.0] * len(answers)
    assert not marker.exists() and parsed == []
    assert await scores(verifier("math"), cands("\\frac{2}{2}"), one) == [1.0]  # math still is
