"""Generative verification (GenRM-CoT) on the scripted fake: the judge's verifications are
scripted per verification prompt, so each test says what the judge writes about a solution."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import pytest

import testtime.strategies  # (registers the strategies)
import testtime.verifiers  # noqa: F401  (registers the verifiers)
from testtime.core.budget import Budget
from testtime.core.cost import flops
from testtime.core.errors import ConfigError
from testtime.core.templates import fill
from testtime.core.types import Candidate, Problem, Request
from testtime.generators import models
from testtime.generators.base import Generation
from testtime.generators.fake import FakeGenerator, count_tokens
from testtime.strategies.base import STRATEGIES
from testtime.strategies.run import build_verifier, solve
from testtime.verifiers.base import VERIFIERS, VerifierDeps, traits_of
from testtime.verifiers.genrm import QUESTION, TEMPLATE, GenRM, verdict

Q = "Write a haiku about rain."
P = Problem.from_prompt(Q, id="haiku")
GOOD, BAD = "Rain taps the window, grey clouds drift.", "Rain is wet."
N_PARAMS = 1000


def says(yes: bool, reasons: str = "The syllables count out.") -> str:
    """A verification that reasons, then gives its verdict."""
    return f"{reasons}\n\n{QUESTION} {'Yes' if yes else 'No'}"


def prompt(solution: str) -> str:
    return fill(TEMPLATE, {"problem": Q, "solution": solution})


Texts = Sequence[str] | Mapping[str, float]


def judge(scripts: Mapping[str, Texts], verdicts: Texts | None = None) -> FakeGenerator:
    """A fake whose verification of each solution is scripted (the policy answers Q), and
    its answer to the verdict question (even odds unless given)."""
    return FakeGenerator(
        {
            Q: [GOOD, BAD],
            **{prompt(s): v for s, v in scripts.items()},
            QUESTION: verdicts or {"Yes": 1.0, "No": 1.0},
        },
        n_params=N_PARAMS,
    )


def build(gen: FakeGenerator, name: str = "genrm", **params: Any) -> GenRM:
    built = VERIFIERS.build(VERIFIERS.spec(name, params), VerifierDeps(generator=gen))
    assert isinstance(built, GenRM)
    return built


def cands(*texts: str) -> list[Candidate]:
    return [Candidate(t, t, id=i) for i, t in enumerate(texts)]


# -- verdicts and their average --------------------------------------------------------------


async def test_votes_are_averaged_per_candidate() -> None:
    gen = judge({GOOD: [says(True), says(True), says(False), says(True)], BAD: [says(False)]})
    got = await build(gen, votes=4).score(P, cands(GOOD, BAD))
    assert got.values == (0.75, 0.0)
    asked = [r for r in gen.requests if r.messages[-1].content == prompt(GOOD)]
    assert len(asked) == 1 and asked[0].n == 4 and asked[0].temperature == 0.7


async def test_votes_is_the_number_of_verifications_sampled() -> None:
    gen = judge({GOOD: [says(True), says(False)]})
    v = build(gen, votes=3)
    assert (await v.score(P, cands(GOOD))).values[0] == pytest.approx(2 / 3)
    assert gen.requests[-1].n == 3 and v.verifications == 3


@pytest.mark.parametrize(
    ("text", "score"),
    [
        (says(True), 1.0),
        (says(False), 0.0),
        ("Looks right.\nIs the answer correct (yes/no)? **yes**, it is.", 1.0),
        (f"{QUESTION} Yes at first, but no.\n{QUESTION} No", 0.0),  # the last verdict
        ("Checked every line.\nNo.", 0.0),  # no question: a last line opening Yes/No
        ("Checked every line.\nYes, correct", 1.0),
        (f"{QUESTION} Maybe", None),
        ("The haiku is fine.", None),
        ("", None),
        ("Yes, the first line is fine.\nThe rest I cannot judge.", None),
    ],
)
def test_a_verdict_is_read_from_the_text(text: str, score: float | None) -> None:
    assert verdict(text) == score


async def test_unparsed_verifications_are_dropped_and_counted() -> None:
    gen = judge({GOOD: [says(True), "I am not sure.", says(True), "Hmm."], BAD: ["No idea"]})
    v = build(gen, votes=4)
    got = await v.score(P, cands(GOOD, BAD))
    assert got.values == (1.0, 0.5)  # dropped, not counted as 0.5; none read: undecided
    assert (v.verifications, v.unparsed) == (5 + 3, 2 + 4)


async def test_the_logprob_variant_scores_p_yes_of_the_verdict_token() -> None:
    reasons = "The imagery works."
    gen = judge({GOOD: [says(True, reasons), says(False, reasons)]}, {"Yes": 0.8, "No": 0.2})
    v = build(gen, votes=2, logprobs=True)
    got = await v.score(P, cands(GOOD))
    assert got.values[0] == pytest.approx(0.8, abs=1e-6)  # the text alone says 0.5
    verdicts = [r for r in gen.requests if r.messages[-1].content == QUESTION]
    assert len(verdicts) == 2
    for r in verdicts:  # the rationale, cut before the verdict it wrote, as the judge's turn
        assert [(m.role, m.content) for m in r.messages] == [
            ("user", prompt(GOOD)), ("assistant", reasons), ("user", QUESTION)
        ]  # fmt: skip
        assert r.max_tokens == 1 and r.greedy and r.top_logprobs > 0


async def test_a_logprob_verdict_with_neither_yes_nor_no_is_dropped() -> None:
    gen = judge({GOOD: [says(True)]}, ["Perhaps"])
    v = build(gen, votes=1, logprobs=True)
    assert (await v.score(P, cands(GOOD))).values == (0.5,) and v.unparsed == 1


class NoTops(FakeGenerator):
    """A backend whose completions carry `tops` as their top logprobs: None, never any; (),
    none for a reply that ended at its first token (the engine reports no EOS position)."""

    def __init__(self, tops: tuple[()] | None) -> None:
        super().__init__({prompt(GOOD): [says(True)], QUESTION: ["Yes"]})
        self.tops = tops

    async def generate(self, request: Request) -> Generation:
        gen = await super().generate(request)
        return replace(
            gen, completions=tuple(replace(c, top_logprobs=self.tops) for c in gen.completions)
        )


async def test_the_logprob_variant_needs_top_logprobs_and_says_so() -> None:
    with pytest.raises(ConfigError, match=r"top logprobs.*logprobs=false"):
        await build(NoTops(None), votes=1, logprobs=True).score(P, cands(GOOD))


async def test_a_verdict_call_that_ends_at_once_is_dropped() -> None:
    v = build(NoTops(()), votes=1, logprobs=True)
    assert (await v.score(P, cands(GOOD))).values == (0.5,) and v.unparsed == 1


async def test_a_response_is_verified_the_same_way_every_time() -> None:
    gen = judge({GOOD: {says(True): 0.5, says(False): 0.5}})
    v = build(gen, votes=8)
    first = (await v.score(P, cands(GOOD))).values
    assert (await v.score(P, cands(GOOD))).values == first
    assert 0 < first[0] < 1  # the votes differ within one verification, not between calls


# -- cost -------------------------------------------------------------------------------------


def spent_tokens(gen: FakeGenerator) -> int:
    """Every token the judge read or wrote, by the fake's own counts."""
    total = 0
    for r in gen.requests:
        script = gen._script(r)
        total += gen.count_prompt_tokens(r)
        for text in gen._pick(script, script.options(r.prefix), r):
            total += min(count_tokens(text), r.max_tokens)
    return total


@pytest.mark.parametrize("logprobs", [False, True])
async def test_every_judge_token_is_verifier_cost_within_the_worst_case(logprobs: bool) -> None:
    gen = judge({GOOD: [says(True), says(False)], BAD: [says(False)]})
    v = build(gen, votes=2, logprobs=logprobs)
    got = await v.score(P, cands(GOOD, BAD))
    calls = 2 * (1 + (2 if logprobs else 0))
    assert got.cost.verifier_calls == calls == len(gen.requests)
    assert got.cost.flops == flops(N_PARAMS, got.cost.verifier_tokens)
    assert got.cost.samples == 0 and got.cost.generated_tokens == 0
    assert got.cost.flops <= 2 * v.flops_per_candidate(P)


async def test_long_solutions_and_rationales_are_cut_so_the_worst_case_holds() -> None:
    long = "Rain " * 2000 + "falls."
    gen = FakeGenerator(default=[says(True, "Let me see. " * 500)], n_params=N_PARAMS)
    v = build(gen, votes=2, max_tokens=300, logprobs=True, max_solution_tokens=64)
    got = await v.score(P, cands(long))
    assert got.cost.flops <= v.flops_per_candidate(P)
    first, *verdicts = gen.requests
    assert first.n == 2 and "Rain " * 70 not in first.messages[-1].content  # kept its end
    assert "falls." in first.messages[-1].content
    assert len(verdicts) == 2
    assert all(gen.count_prompt_tokens(r) <= v._verdict_limit(P) for r in verdicts)
    assert got.values == (0.5,) and v.unparsed == 2  # cut off before any verdict


async def test_best_of_n_and_a_weighted_vote_use_it_unchanged_within_a_flops_budget() -> None:
    gen = judge({GOOD: [says(True)] * 3 + [says(False)], BAD: [says(False)] * 3 + [says(True)]})
    verifier = build_verifier("genrm", {"votes": 4}, generator=gen)
    for name in ("best_of_n", "weighted_majority"):
        r = await solve(P, STRATEGIES.spec(name, {"n": 2}), gen, verifier=verifier)
        assert r.text == GOOD and [c.scores["genrm"] for c in r.candidates] == [0.75, 0.25]
        assert r.cost.verifier_calls == 2
    worst = flops(N_PARAMS, 60 + 64) * 2 + 2 * verifier.flops_per_candidate(P)
    r = await solve(
        P, STRATEGIES.spec("best_of_n", {"n": 8}), gen, verifier=verifier,
        budget=Budget(flops=worst), max_tokens=64,
    )  # fmt: skip
    assert r.cost.flops <= worst and r.budget_exhausted and 1 <= r.cost.samples < 8


# -- parameters, the judge model, and the server ---------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "says_"),
    [
        ("genrm", {"votes": 4, "temperature": 0.0}, "all the same"),
        ("genrm", {"votes": 0}, "'votes' must be > 0"),
        ("genrm", {"prompt": "Is {problem} solved?"}, "lacks {solution}"),
        ("genrm_model", {}, "needs parameter 'judge'"),
    ],
)
def test_bad_parameters_are_refused_in_one_line(
    name: str, params: dict[str, Any], says_: str
) -> None:
    with pytest.raises(ConfigError, match=says_.replace("{", r"\{").replace("}", r"\}")):
        VERIFIERS.spec(name, params)


def test_one_vote_may_be_greedy() -> None:
    assert VERIFIERS.spec("genrm", {"votes": 1, "temperature": 0.0})


def test_genrm_needs_a_model_to_ask() -> None:
    with pytest.raises(ConfigError, match="needs a model to ask"):
        VERIFIERS.build(VERIFIERS.spec("genrm", {}), VerifierDeps())


async def test_a_judge_model_of_its_own_is_opened_once(monkeypatch: pytest.MonkeyPatch) -> None:
    own = judge({GOOD: [says(True)]})
    opened: list[str] = []

    def load(name: str) -> FakeGenerator:
        opened.append(name)
        return own

    monkeypatch.setattr(models, "OPENED", {})
    monkeypatch.setattr(models, "load_generator", load)
    policy = FakeGenerator({Q: [GOOD]})
    for _ in range(2):
        v = build(policy, "genrm_model", judge="the-judge", votes=1)
        assert v.generator is own and v.name == "genrm_model"
        assert (await v.score(P, cands(GOOD))).values == (1.0,)
    assert opened == ["the-judge"] and policy.requests == []


def test_the_verifier_that_loads_a_model_is_kept_from_served_requests() -> None:
    from testtime.server.errors import ApiError
    from testtime.server.plan import FILE_VERIFIERS, verifier_spec
    from testtime.server.schemas import VerifierObject
    from testtime.server.settings import Settings

    assert not traits_of("genrm").reads_gold and not traits_of("genrm").loads_file
    assert "genrm_model" in FILE_VERIFIERS and "genrm" not in FILE_VERIFIERS
    with pytest.raises(ApiError, match="--allow-file-verifiers"):
        verifier_spec(VerifierObject(name="genrm_model", params={"judge": "x"}), Settings("fake"))
    assert verifier_spec("genrm", Settings("fake")) is not None
