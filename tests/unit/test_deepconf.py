"""DeepConf (strategies/deepconf.py) on the scripted fake, whose top logprobs follow its script:
a text many scripted texts share is confident, a rare one is not. The confidence measures are
checked against hand-computed values, the percentile against numpy's."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import numpy as np
import pytest

import testtime.strategies  # noqa: F401  (registers the strategies)
from testtime.core.budget import Budget
from testtime.core.errors import ConfigError
from testtime.core.types import Problem, Request, Result
from testtime.core.voting import SINGLETONS
from testtime.generators.base import Generation
from testtime.generators.fake import FakeGenerator
from testtime.strategies.base import STRATEGIES
from testtime.strategies.deepconf import (
    group_confidences,
    percentile,
    token_confidences,
    trace_confidence,
)
from testtime.strategies.run import solve
from testtime.verifiers.base import Verifier
from testtime.verifiers.fake import FakeVerifier

Q = "What is 3 + 4?"
P = Problem.from_prompt(Q, id="q")
# three identical confident traces answer 7; five hesitant ones, each worded its own way, 8
SPLIT = ["So the sum is 7. Answer: 7"] * 3 + [
    f"Hmm, {w} guess 8. Answer: 8" for w in ("maybe", "perhaps", "I", "we", "one")
]


def run(
    params: dict[str, Any],
    gen: FakeGenerator,
    *,
    budget: Budget | None = None,
    verifier: Verifier | None = None,
    name: str = "deepconf",
) -> Result:
    spec = STRATEGIES.spec(name, params)
    return asyncio.run(solve(P, spec, gen, budget=budget, verifier=verifier, max_tokens=32, seed=0))


# -- the measures ------------------------------------------------------------------------------


def test_token_confidence_is_minus_the_mean_top_k_logprob() -> None:
    top = {"a": math.log(0.9), "b": math.log(0.09), "c": math.log(0.01)}
    assert token_confidences([top], 2) == [pytest.approx(-(math.log(0.9) + math.log(0.09)) / 2)]
    assert token_confidences([top], 3)[0] > token_confidences([top], 2)[0]  # the tail counts
    peaked = {"a": math.log(0.999), "b": math.log(0.0005)}
    flat = {"a": math.log(0.5), "b": math.log(0.5)}
    assert token_confidences([peaked], 2)[0] > token_confidences([flat], 2)[0]
    # fewer than k listed: those given; -inf carries nothing; a position with nothing: skipped
    assert token_confidences([{"a": -1.0, "b": -math.inf}, {}], 5) == [1.0]


def test_groups_slide_over_windows_and_a_short_trace_is_one_group() -> None:
    assert group_confidences([1.0, 2.0, 3.0, 4.0], 2) == [1.5, 2.5, 3.5]
    assert group_confidences([1.0, 2.0, 3.0], 8) == [2.0]
    assert group_confidences([], 2) == []


def test_trace_confidence_by_each_measure() -> None:
    tokens = [5.0] * 10 + [1.0] * 2 + [5.0] * 10  # one hesitant stretch in the middle
    assert trace_confidence(tokens, "lowest", 2, 4) == 1.0
    assert trace_confidence(tokens, "mean", 2, 4) == pytest.approx(102 / 22)
    assert trace_confidence(tokens, "tail", 2, 4) == 5.0
    groups = sorted(group_confidences(tokens, 2))  # 21 groups: the lowest 2 (10%) averaged
    assert trace_confidence(tokens, "bottom10", 2, 4) == pytest.approx(sum(groups[:2]) / 2)
    assert trace_confidence([], "lowest", 2, 4) is None


@pytest.mark.parametrize("q", [0.0, 0.1, 0.37, 0.5, 0.9, 1.0])
def test_the_threshold_is_numpys_percentile(q: float) -> None:
    values = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6]
    assert percentile(values, q) == pytest.approx(np.percentile(values, 100 * q))
    assert percentile([], q) is None


# -- offline ----------------------------------------------------------------------------------


def test_offline_keeps_the_confident_traces_and_they_outvote_the_majority() -> None:
    majority = run({"n": 8}, FakeGenerator({Q: SPLIT}), name="self_consistency")
    assert majority.answer == "8"  # five of eight
    r = run({"mode": "offline", "n": 8, "eta": 0.3, "window": 4}, FakeGenerator({Q: SPLIT}))
    t = r.trace or {}
    conf, s = t["confidences"], t["threshold"]
    assert r.answer == "7" and len(r.candidates) == 8 and t["stopped"] == "n"
    assert t["filtered"] == [3, 4, 5, 6, 7]  # the hesitant traces
    assert min(conf[:3]) >= s > max(conf[3:])
    assert t["votes"] == {"7": pytest.approx(sum(conf[:3]))}  # weighted by confidence
    assert "groups" not in t


def test_offline_with_eta_one_keeps_all_and_weighs_votes_by_confidence() -> None:
    r = run({"mode": "offline", "n": 8, "eta": 1.0, "window": 4}, FakeGenerator({Q: SPLIT}))
    t = r.trace or {}
    assert t["filtered"] == [] and r.answer == "8"  # five weaker votes still outweigh three
    assert t["votes"]["8"] == pytest.approx(sum(t["confidences"][3:]))


def test_it_asks_for_the_top_k_logprobs() -> None:
    gen = FakeGenerator({Q: SPLIT})
    run({"mode": "offline", "n": 4, "top_k": 5}, gen)
    assert [r.top_logprobs for r in gen.requests] == [5]


# -- online -----------------------------------------------------------------------------------


def test_online_stops_once_the_weighted_vote_is_settled() -> None:
    gen = FakeGenerator({Q: SPLIT})
    r = run({"n": 8, "n_init": 4, "window": 4}, gen)
    t = r.trace or {}
    # warm-up: three confident 7s and one hesitant 8, which falls under the threshold
    assert t["stopped"] == "consensus" and len(r.candidates) == t["samples"] == 4
    assert t["filtered"] == [3] and t["consensus"] == 1.0 and r.answer == "7"
    assert [q.n for q in gen.requests] == [4]  # no sample past the warm-up


def test_online_samples_in_rounds_until_n_without_consensus() -> None:
    alternating = ["So it is 7. Answer: 7", "So it is 8. Answer: 8"]
    gen = FakeGenerator({Q: alternating})
    r = run({"n": 7, "n_init": 2, "batch": 2, "window": 4, "eta": 1.0}, gen)
    t = r.trace or {}
    assert t["stopped"] == "n" and len(r.candidates) == 7 and t["consensus"] < 0.95
    assert [q.n for q in gen.requests] == [2, 2, 2, 1]  # warm-up, then rounds, capped at n


def test_online_stops_at_the_budget_with_its_best_so_far() -> None:
    gen = FakeGenerator({Q: ["So it is 7. Answer: 7", "So it is 8. Answer: 8"]})
    r = run({"n": 8, "n_init": 2, "window": 4, "eta": 1.0}, gen, budget=Budget(samples=5))
    t = r.trace or {}
    assert t["stopped"] == "budget" and len(r.candidates) == 5 and r.budget_exhausted
    assert r.answer == "7"  # three 7s against two 8s of equal confidence


def test_a_warm_up_cut_by_the_budget_stops_there() -> None:
    r = run({"n": 8, "n_init": 4}, FakeGenerator({Q: SPLIT}), budget=Budget(samples=2))
    assert (r.trace or {})["stopped"] == "budget" and len(r.candidates) == 2


# -- free text --------------------------------------------------------------------------------

HAIKUS = [  # the first two share a start, so they are likelier, hence more confident
    "Rain on the roof taps\nsoftly through the night",
    "Rain on the roof drums\nloud until the dawn",
    "Grey clouds drift away\nand the puddles shine",
]


def test_free_text_picks_the_most_confident_trace_and_says_every_sample_is_alone() -> None:
    r = run({"mode": "offline", "n": 3, "measure": "mean"}, FakeGenerator({Q: HAIKUS}))
    t = r.trace or {}
    conf = t["confidences"]
    assert (t["groups"], t["selection"]) == (SINGLETONS, "confidence")
    assert len(set(conf)) > 1 and r.chosen == conf.index(max(conf))
    assert t["filtered"] == [conf.index(min(conf))]  # eta 0.9 drops the least confident


def test_free_text_with_a_verifier_lets_it_choose_among_the_kept_traces() -> None:
    scored: list[str] = []

    def score(problem: Problem, c: Any) -> float:
        scored.append(c.text)
        return 1.0 if "drums" in c.text else 0.0

    r = run(
        {"mode": "offline", "n": 3, "measure": "mean"},
        FakeGenerator({Q: HAIKUS}),
        verifier=FakeVerifier(score),
    )
    t = r.trace or {}
    assert (t["groups"], t["selection"]) == (SINGLETONS, "verifier")
    assert r.text == HAIKUS[1]
    kept = [c.text for c in r.candidates if c.id not in t["filtered"]]
    assert sorted(scored) == sorted(kept) and len(scored) == 2  # the dropped one is not read


# -- bad input --------------------------------------------------------------------------------


class NoTops(FakeGenerator):
    """A backend that returns no top logprobs."""

    async def generate(self, request: Request) -> Generation:
        gen = await super().generate(request)
        from dataclasses import replace

        return replace(
            gen, completions=tuple(replace(c, top_logprobs=None) for c in gen.completions)
        )


def test_a_backend_without_top_logprobs_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="needs the generator's top logprobs"):
        run({"n": 4, "n_init": 2}, NoTops({Q: SPLIT}))


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"eta": 0.0}, "eta"),
        ({"tau": 0.5}, "tau"),
        ({"top_k": 21}, "top_k"),
        ({"window": 0}, "window"),
    ],
)
def test_parameters_out_of_range_are_refused(params: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        STRATEGIES.spec("deepconf", params)


def test_empty_traces_have_no_confidence_and_never_vote() -> None:
    gen = FakeGenerator({Q: ["", "So it is 7. Answer: 7"]})
    r = run({"mode": "offline", "n": 4, "eta": 1.0}, gen)
    t = r.trace or {}
    assert t["confidences"][0] is None and t["filtered"] == [0, 2] and r.answer == "7"


def test_one_kept_trace_is_no_consensus() -> None:
    # a warm-up of two: the threshold drops the hesitant one, and the one left proves nothing
    gen = FakeGenerator({Q: [SPLIT[0], SPLIT[3], *SPLIT[1:3], *SPLIT[4:]]})  # 7, 8, 7, 7, 8...
    r = run({"n": 4, "n_init": 2, "window": 4}, gen)
    t = r.trace or {}
    assert (t["samples"], t["stopped"], t["filtered"]) == (3, "consensus", [1])
    assert [q.n for q in gen.requests] == [2, 1]
