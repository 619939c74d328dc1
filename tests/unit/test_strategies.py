"""Every strategy, driven by the fake generator and verifier: selection, ties, budgets, costs."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from testtime.core.budget import Budget
from testtime.core.cost import Cost
from testtime.core.errors import ConfigError
from testtime.core.types import Completion, Problem, Request, Result
from testtime.generators.base import Generation, Generator
from testtime.generators.fake import FakeGenerator, render
from testtime.strategies import adaptive, parallel
from testtime.strategies.base import STRATEGIES, traits_of
from testtime.strategies.run import build_verifier, solve, solve_many
from testtime.tasks.base import Task
from testtime.verifiers.base import Verifier
from testtime.verifiers.fake import FakeVerifier

Q = "What is 3 + 4?"
P = Problem.from_prompt(Q, answer="7", id="q")
# the strategies that sample whole solutions, then vote or pick (parallel.py, adaptive.py);
# the invariants every strategy keeps are in test_invariants.py
ALL = [
    n for n in STRATEGIES.names()
    if STRATEGIES.get(n).factory.__module__ in (parallel.__name__, adaptive.__name__)
]  # fmt: skip
SCORED = {n for n in ALL if traits_of(n).verifier}
SAMPLING = [n for n in ALL if traits_of(n).budget_param]  # more than one sample


class Arithmetic(Task):
    name = "arithmetic-test"

    def problems(self) -> Sequence[Problem]:
        return [P]


def answers(dist: Mapping[str | None, float]) -> FakeGenerator:
    return FakeGenerator.from_answers({Q: dist})


def in_turn(*answers: str | None) -> FakeGenerator:
    """A generator whose samples carry exactly these answers, in this order."""
    return FakeGenerator({Q: [render(a) for a in answers]})


def gold() -> FakeVerifier:
    return FakeVerifier(check=Arithmetic().check)


async def run(
    name: str,
    gen: FakeGenerator,
    *,
    verifier: Verifier | None = None,
    budget: Budget | None = None,
    seed: int = 0,
    max_tokens: int = 64,
    **params: Any,
) -> Result:
    if name in SCORED and verifier is None:
        verifier = gold()
    spec = STRATEGIES.spec(name, params)
    return await solve(
        P,
        spec,
        gen,
        task=Arithmetic(),
        verifier=verifier,
        budget=budget,
        seed=seed,
        max_tokens=max_tokens,
    )


# -- the common cases, for every strategy ---------------------------------------------------


@pytest.mark.parametrize("name", ALL)
async def test_unanimous_samples_give_the_answer(name: str) -> None:
    r = await run(name, answers({"7": 1.0}))
    assert (r.answer, r.correct, r.budget_exhausted) == ("7", True, False)
    assert r.text is not None and r.text.endswith("Answer: 7")


@pytest.mark.parametrize("name", ALL)
async def test_all_wrong_gives_a_wrong_answer_not_none(name: str) -> None:
    r = await run(name, answers({"8": 0.5, "9": 0.5}))
    assert r.answer in {"8", "9"} and r.correct is False


@pytest.mark.parametrize("name", ALL)
async def test_all_unparseable_gives_none_without_crashing(name: str) -> None:
    r = await run(name, answers({None: 1.0}))
    assert r.answer is None and r.correct is False
    assert r.candidates and all(c.answer is None for c in r.candidates)


@pytest.mark.parametrize("name", SAMPLING)
async def test_an_exhausted_budget_uses_what_it_has(name: str) -> None:
    params = {"max_samples": 8} if name == "adaptive_consistency" else {"n": 8}
    r = await run(name, in_turn("7", "8", "7", "8", "7"), budget=Budget(samples=3), **params)
    assert r.budget_exhausted and r.cost.samples == len(r.candidates) == 3
    assert r.answer == "7"


# -- selection rules, ties first-seen -------------------------------------------------------


async def test_self_consistency_ties_go_to_the_first_seen_answer() -> None:
    r = await run("self_consistency", in_turn("8", "7", "7", "8"), n=4)
    assert r.answer == "8" and r.chosen == 0
    assert r.trace == {"votes": {"8": 2.0, "7": 2.0}}


async def test_self_consistency_groups_equivalent_answers() -> None:
    r = await run("self_consistency", in_turn("0.5", "3", "1/2", "3", "0.50"), n=5)
    assert r.answer == "0.5" and r.trace == {"votes": {"0.5": 3.0, "3": 2.0}}


async def test_weighted_majority_lets_verifier_scores_outvote_the_plurality() -> None:
    v = FakeVerifier({"7": 0.9, "8": 0.2})
    gen = in_turn("8", "8", "8", "7", "7")
    assert (await run("self_consistency", gen, n=5)).answer == "8"
    r = await run("weighted_majority", in_turn("8", "8", "8", "7", "7"), verifier=v, n=5)
    assert r.answer == "7" and r.trace is not None
    assert r.trace["votes"] == pytest.approx({"8": 0.6, "7": 1.8})


async def test_weighted_majority_ties_go_to_the_first_seen_answer() -> None:
    r = await run("weighted_majority", in_turn("9", "7"), verifier=FakeVerifier({}), n=2)
    assert r.answer == "9"


async def test_best_of_n_takes_the_top_score_even_in_the_minority() -> None:
    v = FakeVerifier({"7": 0.9, "8": 0.2})
    r = await run("best_of_n", in_turn("8", "8", "7", "8"), verifier=v, n=4)
    assert (r.answer, r.chosen) == ("7", 2)


async def test_best_of_n_never_picks_a_nan_score() -> None:
    v = FakeVerifier({"7": float("nan"), "8": 0.2})
    r = await run("best_of_n", in_turn("7", "8"), verifier=v, n=2)
    assert r.answer == "8"  # max() with a NaN first keeps the NaN: it compares False


async def test_best_of_n_ties_go_to_the_first_sample() -> None:
    r = await run("best_of_n", in_turn("8", "7", "9"), verifier=FakeVerifier({}), n=3)
    assert (r.answer, r.chosen) == ("8", 0)


async def test_best_of_majority_filters_rare_answers_before_the_verifier() -> None:
    v = FakeVerifier({"9": 1.0, "7": 0.8, "8": 0.5})
    gen = in_turn("8", "7", "8", "9", "7", "8", "7", "8")
    r = await run("best_of_majority", gen, verifier=v, n=8, alpha=0.3)
    assert r.answer == "7"  # 9 scores higher but was sampled once (1/8 < alpha)
    assert r.trace == {"kept": ["8", "7"], "samples": 8}
    assert r.cost.verifier_calls == 2  # only the kept samples, each distinct text once


async def test_best_of_majority_falls_back_to_the_most_frequent_answer() -> None:
    v = FakeVerifier({"9": 1.0})
    r = await run("best_of_majority", in_turn("8", "9", "8", "7"), verifier=v, n=4, alpha=1.0)
    assert r.answer == "8" and r.trace == {"kept": ["8"], "samples": 4}


async def test_first_finish_returns_the_shortest_and_cancels_the_rest() -> None:
    short = "Answer: 7"
    gen = FakeGenerator({Q: ["Let me think at great length first.\nAnswer: 8", short]})
    r = await run("first_finish", gen, n=4)
    assert r.answer == "7" and r.text == short
    reasons = [c.completion.finish_reason for c in r.candidates if c.completion]
    assert reasons == ["cancelled", "eos", "cancelled", "eos"]
    assert r.cost.generated_tokens == 4 * 3  # every sequence stopped after 3 tokens


async def test_single_is_greedy_by_default_and_samples_when_asked() -> None:
    gen = answers({"7": 0.4, "8": 0.35, "9": 0.25})
    assert (await run("single", gen)).answer == "7"
    assert gen.requests[-1].temperature == 0.0
    sampled = {(await run("single", gen, temperature=1.0, seed=s)).answer for s in range(12)}
    assert len(sampled) > 1


@pytest.mark.parametrize("name", sorted(SCORED))
async def test_verifier_cost_is_charged_to_the_result(name: str) -> None:
    gen = FakeGenerator({Q: [f"Step {i}.\n\nAnswer: 7" for i in range(4)]}, n_params=1000)
    v = FakeVerifier({"7": 1.0}, n_params=500, tokens_per_candidate=10)
    r = await run(name, gen, verifier=v, n=4)
    assert (r.cost.verifier_calls, r.cost.verifier_tokens) == (4, 40)
    policy = 2 * 1000 * (r.cost.prompt_tokens + r.cost.generated_tokens)
    assert r.cost.flops == policy + 2 * 500 * 40


@pytest.mark.parametrize("name", sorted(SCORED))
async def test_identical_responses_are_scored_once(name: str) -> None:
    """its_hub's best-of-N scores each distinct response once: a verifier call is cost."""
    gen = in_turn("7", "8", "7", "7", "8", "7")
    v = FakeVerifier({"7": 0.9, "8": 0.2}, n_params=500, tokens_per_candidate=10)
    extra = {"alpha": 0.3} if name == "best_of_majority" else {}
    r = await run(name, gen, verifier=v, n=6, **extra)
    assert (r.cost.verifier_calls, r.cost.verifier_tokens) == (2, 20)
    assert [c.scores["fake"] for c in r.candidates] == [0.9, 0.2, 0.9, 0.9, 0.2, 0.9]
    assert r.answer == "7"


# -- adaptive self-consistency --------------------------------------------------------------


async def test_adaptive_stops_early_on_an_easy_problem_and_late_on_a_split_one() -> None:
    easy = await run("adaptive_consistency", answers({"7": 1.0}))
    split = await run("adaptive_consistency", answers({"7": 0.5, "8": 0.5}), seed=2)
    assert easy.trace is not None and split.trace is not None
    assert easy.trace["samples"] == 4  # Beta(5, 1): P(p1 > p2) = 1 - 2^-5 >= 0.95
    assert easy.trace["stopped"] == "confident" and easy.trace["confidence"] >= 0.95
    assert split.trace["samples"] > 2 * easy.trace["samples"]
    assert len(split.candidates) == split.trace["samples"]


async def test_adaptive_stops_at_max_samples_and_samples_in_batches() -> None:
    gen = in_turn("7", "8")
    r = await run("adaptive_consistency", gen, max_samples=9, batch=4)
    assert r.trace is not None
    assert (r.trace["samples"], r.trace["stopped"]) == (9, "max_samples")
    assert [q.n for q in gen.requests] == [4, 4, 1]
    assert r.answer == "7"  # 5 votes to 4


@pytest.mark.parametrize(("threshold", "stop"), [(0.6, 2), (0.75, 2), (0.9, 3), (0.95, 4)])
async def test_adaptive_never_stops_on_one_sample(threshold: float, stop: int) -> None:
    """its_hub checks the Beta rule from two samples on: 1 - I_0.5(v1 + 1, 1) is 0.875 at
    two unanimous votes, 0.9375 at three, 0.96875 at four (one vote alone is 0.75)."""
    r = await run("adaptive_consistency", answers({"7": 1.0}), threshold=threshold)
    assert r.trace is not None and (r.trace["samples"], r.trace["stopped"]) == (stop, "confident")


async def test_adaptive_threshold_one_spends_the_whole_budget() -> None:
    """The posterior of 53 unanimous votes rounds to 1.0; threshold 1 still never stops."""
    r = await run("adaptive_consistency", answers({"7": 1.0}), threshold=1.0, max_samples=64)
    assert r.trace is not None and (r.trace["samples"], r.trace["stopped"]) == (64, "max_samples")


@pytest.mark.parametrize(
    ("answers_in_turn", "cap", "sizes", "stopped"),
    [
        (("7", "8", "7", "7"), 16, [2, 2], "confident"),  # 3 of 4 agree: 0.75 >= 0.75
        (("7", "7"), 16, [2], "confident"),
        (("1", "2", "3", "4", "5", "6", "7", "8", "9", "10"), 10, [2, 2, 4, 2], "max_samples"),
    ],
)
async def test_adaptive_doubling_rule_matches_its_hub(
    answers_in_turn: tuple[str, ...], cap: int, sizes: list[int], stopped: str
) -> None:
    """its_hub's AdaptiveSelfConsistency: 2 samples, then double the total, stopping once
    a supermajority (0.75) agrees; the check is skipped at the budget."""
    gen = in_turn(*answers_in_turn)
    r = await run("adaptive_consistency", gen, rule="doubling", max_samples=cap)
    assert [q.n for q in gen.requests] == sizes
    assert r.trace is not None and (r.trace["samples"], r.trace["stopped"]) == (sum(sizes), stopped)


async def test_adaptive_reports_a_budget_stop() -> None:
    r = await run("adaptive_consistency", in_turn("7", "8"), budget=Budget(samples=5))
    assert r.budget_exhausted and r.trace is not None
    assert (r.trace["samples"], r.trace["stopped"]) == (5, "budget")


# -- many problems ----------------------------------------------------------------------------


async def test_solve_many_runs_concurrently_and_keeps_the_order() -> None:
    problems = [Problem.from_prompt(f"What is {i} + {i}?", str(i + i), f"p{i}") for i in range(6)]
    gen = FakeGenerator(latency=0.01)
    spec = STRATEGIES.spec("adaptive_consistency", {"max_samples": 6})
    results = await solve_many(problems, spec, gen, task=Arithmetic(), concurrency=4)
    assert [r.problem_id for r in results] == [p.id for p in problems]
    assert gen.peak_in_flight == 4
    assert all(r.answer is not None for r in results)


# -- parameters -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("self_consistency", {"n": 0}, "n"),
        ("best_of_n", {"temperature": -0.5}, "temperature"),
        ("single", {"top_p": 0.0}, "top_p"),
        ("weighted_majority", {"top_p": 1.5}, "top_p"),
        ("best_of_majority", {"alpha": 0.0}, "alpha"),
        ("adaptive_consistency", {"threshold": 1.5}, "threshold"),
        ("adaptive_consistency", {"threshold": 0.5}, "threshold"),  # a tie would stop it
        ("adaptive_consistency", {"supermajority": 0.5}, "supermajority"),
        ("adaptive_consistency", {"rule": "halving"}, "rule"),
        ("adaptive_consistency", {"batch": 0}, "batch"),
        ("first_finish", {"n": "eight"}, "n"),
    ],
)
def test_bad_parameters_are_refused_naming_the_field(
    name: str, params: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError, match=f"{name}.*'{field}'"):
        STRATEGIES.spec(name, params)


# -- weighted majority with token-probability verifiers -------------------------------------


class Logprobbed(Generator):
    """Answers in turn, each with a given mean token log-probability (None: no logprobs)."""

    name = "logprobbed"

    def __init__(self, *samples: tuple[str, float | None]) -> None:
        self.samples, self.turn = samples, 0

    def count_prompt_tokens(self, request: Request) -> int:
        return 5

    async def generate(self, request: Request) -> Generation:
        out = []
        for _ in range(request.n):
            answer, lp = self.samples[self.turn % len(self.samples)]
            self.turn += 1
            series = None if lp is None else (lp, lp)
            text = f"Sample {self.turn}.\nAnswer: {answer}"
            out.append(Completion(text, 5, 2, "eos", logprobs=series, certainty=series))
        return Generation(tuple(out), Cost.of_generation(0, 5, 0, 2 * request.n, request.n))


async def test_weighted_majority_by_likelihood_elects_the_majority() -> None:
    """15 samples answering 42 at mean log-probability -0.5 and one answering 99 at -3.0:
    summed log-probabilities (-7.5 against -3) elected 99; exp weights (its_hub) elect 42."""
    gen = Logprobbed(*[("42", -0.5)] * 15, ("99", -3.0))
    r = await run("weighted_majority", gen, verifier=build_verifier("likelihood"), n=16)
    assert r.answer == "42" and r.trace is not None
    assert r.trace["votes"] == pytest.approx({"42": 15 * math.exp(-0.5), "99": math.exp(-3.0)})


async def test_a_sample_without_logprobs_weighs_nothing_instead_of_failing() -> None:
    gen = Logprobbed(("7", -0.2), ("8", None), ("8", None), ("7", -0.4))
    for name in ("likelihood", "self_certainty"):
        r = await run("weighted_majority", gen, verifier=build_verifier(name), n=4)
        assert r.answer == "7" and r.trace is not None and r.trace["votes"]["8"] == 0.0


async def test_no_sample_with_logprobs_is_a_clear_error() -> None:
    gen = Logprobbed(("7", None), ("8", None))
    with pytest.raises(ConfigError, match="no candidate has them; sample with logprobs=True"):
        await run("weighted_majority", gen, verifier=build_verifier("likelihood"), n=2)


def test_rebase_weighted_selection_weighs_scores_as_the_verifier_declares() -> None:
    from testtime.core.registry import Params, Spec
    from testtime.core.types import Candidate
    from testtime.strategies.base import Context
    from testtime.strategies.rebase import _select

    ctx = Context(P, FakeGenerator(), spec=Spec("strategy", "rebase", Params()),
                  verifier=build_verifier("likelihood"))  # fmt: skip
    pool = [Candidate(render(a), a, id=i, scores={"likelihood": lp})
            for i, (a, lp) in enumerate([("42", -0.5)] * 15 + [("99", -3.0)])]  # fmt: skip
    chosen = _select(ctx, pool, "weighted")
    assert chosen is not None and chosen.answer == "42"  # raw log-probabilities chose 99
