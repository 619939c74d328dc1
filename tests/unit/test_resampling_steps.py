"""Core's resampling (one copy for every particle and tree method), steps, and the exact
arithmetic step checker."""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from testtime.core import resampling as rs
from testtime.core.arith import equations, evaluate, expression_in, worked_steps
from testtime.core.errors import ConfigError
from testtime.core.steps import StepSplitter, aggregate
from testtime.core.types import Candidate, Problem
from testtime.strategies.run import build_verifier

log_weights = st.lists(st.floats(-50, 50), min_size=1, max_size=12)


@given(log_weights)
def test_normalize_gives_probabilities(lw) -> None:
    w = rs.normalize(lw)
    assert math.isclose(sum(w), 1.0, abs_tol=1e-9) and all(x >= 0 for x in w)
    assert lw[max(range(len(w)), key=w.__getitem__)] >= max(lw) - 1e-9  # the heaviest stays
    assert 1.0 - 1e-9 <= rs.ess(w) <= len(w) + 1e-9


@given(log_weights, st.integers(1, 40), st.integers(0, 2**16))
def test_systematic_counts_are_within_one_of_expected(lw, n, seed) -> None:
    w = rs.normalize(lw)
    got = Counter(rs.systematic(w, n, random.Random(seed)))
    assert sum(got.values()) == n
    for i, p in enumerate(w):
        assert math.floor(n * p) - 1e-9 <= got[i] <= math.ceil(n * p) + 1e-9 or n * p < 1e-9


@given(log_weights, st.integers(0, 40))
def test_allocate_sums_to_n_and_tracks_the_weights(lw, n) -> None:
    w = rs.normalize(lw)
    counts = rs.allocate(w, n)
    assert sum(counts) == n
    assert all(abs(c - n * p) < 1 for c, p in zip(counts, w, strict=True))


def test_multinomial_expected_counts_and_seeding() -> None:
    w = [0.5, 0.3, 0.2, 0.0]
    draws = Counter(rs.multinomial(w, 20_000, random.Random(1)))
    assert draws[3] == 0
    for i, p in enumerate(w[:3]):
        assert abs(draws[i] / 20_000 - p) < 0.015
    assert rs.multinomial(w, 8, random.Random(5)) == rs.multinomial(w, 8, random.Random(5))


def test_softmax_ess_and_bad_weights() -> None:
    assert rs.softmax([1.0, 1.0, 0.0], temperature=0) == [0.5, 0.5, 0.0]
    hot, cold = rs.softmax([0.0, 1.0], 10.0), rs.softmax([0.0, 1.0], 0.1)
    assert hot[1] < cold[1]
    assert rs.ess([0.25] * 4) == pytest.approx(4.0) and rs.ess([1.0, 0.0]) == pytest.approx(1.0)
    assert rs.normalize([-math.inf, -math.inf]) == [0.5, 0.5]
    for bad in ([], [0.7, 0.7], [-0.1, 1.1]):
        with pytest.raises(ConfigError):
            rs.systematic(bad, 2, random.Random(0))


def test_steps_split_and_aggregate() -> None:
    text = "First 3 + 4 = 7.\n\nThen 7 * 2 = 14.\n  \nAnswer: 14"
    assert StepSplitter().split(text) == ("First 3 + 4 = 7.", "Then 7 * 2 = 14.", "Answer: 14")
    marked = "Plan.\nStep 1: a\nStep 2: b"
    assert StepSplitter("markers").split(marked) == ("Plan.", "Step 1: a", "Step 2: b")
    assert StepSplitter("stop", "<s>").split("a<s>b<s>") == ("a", "b")
    assert not StepSplitter("regex", r"\n---\n").matches("no separator here")
    with pytest.raises(ConfigError, match="not a valid regex"):
        StepSplitter("regex", "(")
    with pytest.raises(ConfigError, match="needs a pattern"):
        StepSplitter("stop")
    scores = [0.9, 0.4, 0.8]
    assert aggregate(scores, "last") == 0.8 and aggregate(scores, "min") == 0.4
    assert aggregate(scores, "product") == pytest.approx(0.288)
    assert aggregate(scores, "mean") == pytest.approx(0.7) and aggregate([], "last") == 0.0


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("12 * 3 = 36", [True]),
        ("So 4 + 5 = 9, and 9 x 2 = 19.", [True, False]),
        ("3 + 4 = 7 + 1 = 8", [True, True]),
        ("1,000 + 1 = 1,001", [True]),
        ("0.1 + 0.2 = 0.3", [True]),
        ("-3 - 4 = -7", [True]),
        ("x = 5 and x + 1 = 6", []),
    ],
)
def test_equations_are_found_and_checked_exactly(text: str, want: list[bool]) -> None:
    assert [e.holds for e in equations(text)] == want


def test_evaluate_is_exact_and_safe() -> None:
    assert evaluate("1/3 + 1/6") == evaluate("0.5", single=True)
    assert evaluate("7") is None and evaluate("__import__('os')") is None
    assert evaluate("1 / 0") is None


@given(st.lists(st.integers(-9, 9), min_size=2, max_size=6), st.data())
def test_worked_steps_reduce_one_operation_at_a_time_to_the_value(nums, data) -> None:
    ops = data.draw(
        st.lists(st.sampled_from("+-*"), min_size=len(nums) - 1, max_size=len(nums) - 1)
    )
    terms = [f"({n})" if n < 0 else str(n) for n in nums]
    expression = terms[0] + "".join(f" {o} {t}" for o, t in zip(ops, terms[1:], strict=True))
    steps = worked_steps(expression)
    assert steps is not None and len(steps) == len(nums) - 1
    assert all(len(equations(s)) == 1 and equations(s)[0].holds for s in steps)
    assert steps[-1].split(" = ")[-1] == str(evaluate(expression, single=True))


def test_worked_steps_follow_precedence_and_refuse_what_they_cannot_teach() -> None:
    assert worked_steps("3 + 4 * (2 - 7)") == ["2 - 7 = -5", "4 * -5 = -20", "3 + -20 = -17"]
    assert worked_steps("7 / 2") is None and worked_steps("x + 1") is None
    assert expression_in("What is 4 - 1 + 8 =") == "4 - 1 + 8"


def test_step_check_scores_each_step_until_the_first_false_equation() -> None:
    verifier = build_verifier("step_check")
    problem = Problem.from_prompt("What is (3 + 4) * 2?", answer="14")
    cands = [
        Candidate("3 + 4 = 7\n\n7 * 2 = 14\n\nAnswer: 14"),
        Candidate("3 + 4 = 8\n\n8 * 2 = 16\n\nAnswer: 16"),
        Candidate("Hmm.\n\n3 + 4 = 7\n\n7 x 2 = 15", steps=("3 + 4 = 7", "7 x 2 = 15")),
    ]
    steps = asyncio.run(verifier.score_steps(problem, cands))
    assert steps.values == ((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1.0, 0.0))
    assert asyncio.run(verifier.score(problem, cands)).values == (1.0, 0.0, 0.0)
    lenient = build_verifier("step_check", {"aggregate": "mean"})
    assert asyncio.run(lenient.score(problem, cands[2:])).values == (0.5,)
    with pytest.raises(ConfigError, match="'split' must be one of"):
        build_verifier("step_check", {"split": "words"})


def _scores(verifier, cands):  # type: ignore[no-untyped-def]
    problem = Problem.from_prompt("What is (3 + 4) * 2?", answer="14", id="q")
    return asyncio.run(verifier.score_steps(problem, cands)).values


def test_noisy_verifier_flips_at_the_rates_it_is_given() -> None:
    right = [Candidate(f"3 + 4 = 7\n\n7 * 2 = 14\n\nNote {i}.") for i in range(400)]
    wrong = [Candidate(f"3 + 4 = 8\n\n8 * 2 = 16\n\nNote {i}.") for i in range(400)]
    clean = build_verifier("noisy")
    assert _scores(clean, right[:2]) == ((1.0, 1.0, 1.0),) * 2  # no noise: the inner scores
    flawed = build_verifier("noisy", {"false_positive": 0.3, "false_negative": 0.1, "seed": 1})
    fp = sum(s[-1] >= 0.5 for s in _scores(flawed, wrong)) / 400
    fn = sum(s[-1] < 0.5 for s in _scores(flawed, right)) / 400
    assert abs(fp - 0.3) < 0.07 and abs(fn - 0.1) < 0.05
    assert _scores(flawed, wrong[:5]) == _scores(flawed, wrong[:5])  # seeded: same step, same score


def test_noisy_overconfidence_is_strongest_early() -> None:
    eager = build_verifier("noisy", {"overconfidence": 0.9, "horizon": 1.0})
    many = [Candidate(f"Try {i}: 3 + 4 = 8\n\n8 * 2 = 16\n\nNote") for i in range(200)]
    early, late = zip(*[(v[0], v[2]) for v in _scores(eager, many)], strict=True)
    assert min(early) >= 0.45 and sum(early) / 200 > 0.6  # confident about wrong first steps
    assert sum(late) / 200 < sum(early) / 200 / 2  # ... less so two steps later
    right = [Candidate(f"Try {i}: 3 + 4 = 7\n\nNote") for i in range(200)]
    ranked = sum(r[0] > w[0] for r, w in zip(_scores(eager, right), _scores(eager, many),
                                              strict=False))  # fmt: skip
    assert 0.3 < ranked / 200 < 0.95  # early scores rank right over wrong only loosely
    with pytest.raises(ConfigError, match="'false_positive' must be in"):
        build_verifier("noisy", {"false_positive": 2})
    with pytest.raises(ConfigError, match="unknown verifier"):
        build_verifier("noisy", {"inner": "nope"})


def test_step_judge_judges_each_prefix_once_and_charges_it() -> None:
    from testtime.generators.fake import FakeGenerator

    judge_model = FakeGenerator(
        {"3 + 4 = 8": {"No": 0.9, "Yes": 0.1}, "Steps so far": {"Yes": 0.8, "No": 0.2}},
        n_params=1000,
    )
    verifier = build_verifier("step_judge", generator=judge_model)
    problem = Problem.from_prompt("What is (3 + 4) * 2?", answer="14", id="q")
    good = Candidate("3 + 4 = 7\n\n7 * 2 = 14")
    bad = Candidate("3 + 4 = 8\n\n8 * 2 = 16")
    got = asyncio.run(verifier.score_steps(problem, [good, bad]))
    (g1, g2), (b1, b2) = got.values
    assert g1 > 0.5 and g2 > 0.5 and b1 < 0.5 and b2 < 0.5
    assert got.cost.verifier_calls == 4 and got.cost.flops > 0
    calls = len(judge_model.requests)
    child = Candidate("3 + 4 = 7\n\n7 * 2 = 14\n\nAnswer: 14")
    again = asyncio.run(verifier.score_steps(problem, [child]))
    assert len(judge_model.requests) == calls + 1  # only the new step is judged
    assert again.values[0][:2] == (g1, g2) and again.cost.verifier_calls == 1
    with pytest.raises(ConfigError, match="needs a model"):
        build_verifier("step_judge")
