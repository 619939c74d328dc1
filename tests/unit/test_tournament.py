"""The pairwise tournament on the scripted fake: the policy samples, then judges pairs in both
orders. The judge is scripted prompt by prompt (the exact comparison prompt of each ordered
pair), so each test says what the judge answers when shown A and B."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

import testtime.strategies  # noqa: F401  (registers the strategies)
from testtime.core.budget import Budget
from testtime.core.cost import flops
from testtime.core.errors import ConfigError
from testtime.core.templates import fill
from testtime.core.types import Message, Problem, Request, Result
from testtime.generators import models
from testtime.generators.fake import FakeGenerator
from testtime.strategies.base import STRATEGIES
from testtime.strategies.run import solve
from testtime.strategies.tournament import TEMPLATE, circle, verdict

Q = "Write a haiku about rain."
P = Problem.from_prompt(Q)
N_PARAMS = 1000
Judge = Callable[[str, str], str]  # the reply when shown (Response A, Response B)


def haiku(i: int, quality: int) -> str:
    return f"Haiku {i}: rain on the roof, grey sky, puddles of quality {quality}."


def ranked(*qualities: int) -> list[str]:
    """One response per quality, in sampling order."""
    return [haiku(i, q) for i, q in enumerate(qualities)]


def prefers_better(a: str, b: str) -> str:
    """A fair judge: the response of higher quality (written last in its text)."""
    qa, qb = (int(t.rstrip(".").split()[-1]) for t in (a, b))
    return "A" if qa > qb else "B" if qb > qa else "A"


def always_a(a: str, b: str) -> str:
    return "A"


def judged(texts: Sequence[str], judge: Judge, *, problem: str = Q) -> dict[str, list[str]]:
    """The judge's script: its reply to the exact comparison prompt of each ordered pair."""
    return {
        fill(TEMPLATE, {"problem": problem, "a": a, "b": b}): [judge(a, b)]
        for a in texts
        for b in texts
        if a != b
    }


def fake(texts: Sequence[str], judge: Judge) -> FakeGenerator:
    return FakeGenerator({Q: list(texts), **judged(texts, judge)}, n_params=N_PARAMS)


async def run(gen: FakeGenerator, budget: Budget | None = None, **params: Any) -> Result:
    spec = STRATEGIES.spec("tournament", params)
    return await solve(P, spec, gen, budget=budget, max_tokens=32)


def judge_requests(gen: FakeGenerator) -> list[Request]:
    return [r for r in gen.requests if r.messages[-1].content != Q]


def wins(r: Result) -> list[Any]:
    assert r.trace is not None
    return [c["winner"] for c in r.trace["comparisons"]]


# -- who wins ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["knockout", "round_robin"])
@pytest.mark.parametrize("best", [0, 2, 3])
async def test_the_judges_choice_wins_wherever_it_was_sampled(fmt: str, best: int) -> None:
    qualities = [1, 1, 1, 1]
    qualities[best] = 5
    texts = ranked(*qualities)
    r = await run(fake(texts, prefers_better), n=4, format=fmt)
    assert r.text == texts[best] and r.chosen == best
    assert r.trace is not None and r.trace["unparsed"] == 0 and not r.trace["stopped"]


async def test_every_comparison_is_asked_in_both_orders() -> None:
    texts = ranked(1, 2, 3, 4)
    gen = fake(texts, prefers_better)
    r = await run(gen, n=4)
    assert r.trace is not None
    for c in r.trace["comparisons"]:
        first, second = c["orders"]
        assert (first["a"], first["b"]) == (second["b"], second["a"]) == tuple(c["pair"])
        assert first["vote"] == second["vote"] == c["winner"]  # a fair judge agrees with itself
    asked = [r.messages[-1].content for r in judge_requests(gen)]
    assert len(asked) == 2 * len(r.trace["comparisons"]) == 2 * 3  # a knockout: N - 1 of them
    assert all(q.greedy and q.max_tokens == 16 for q in judge_requests(gen))


@pytest.mark.parametrize("fmt", ["knockout", "round_robin"])
async def test_a_judge_that_always_says_A_decides_nothing(fmt: str) -> None:
    """Position bias cancels: each comparison ties, and the documented rule (the earlier
    sample) makes the first sample win, as one sample would."""
    texts = ranked(1, 5, 2, 9)  # the judge would pick 3 if it read them
    r = await run(fake(texts, always_a), n=4, format=fmt)
    assert r.chosen == 0 and r.trace is not None
    assert wins(r) and set(wins(r)) == {None}
    assert r.trace["ties"] == len(r.trace["comparisons"])
    if fmt == "round_robin":
        assert [p for _, p in r.trace["points"]] == [1.5, 1.5, 1.5, 1.5]


async def test_split_verdicts_are_ties_and_the_earlier_sample_moves_on() -> None:
    r = await run(fake(ranked(1, 9), lambda a, b: "B"), n=2)  # each order votes the other
    assert r.trace is not None
    (c,) = r.trace["comparisons"]
    assert [o["vote"] for o in c["orders"]] == [1, 0]
    assert c["winner"] is None and c["advances"] == 0 and r.chosen == 0


# -- judge replies that do not parse -----------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "letter"),
    [
        ("A", "A"),
        ("B.", "B"),
        ("(A)", "A"),
        ("**B**", "B"),
        ("B\nBecause it rhymes.", "B"),
        ("Response A is better.", "A"),
        ("Answer: B", "B"),
        ("Both are fine, but [[A]]", "A"),
        ("[[A]] at first, on reflection [[B]]", "B"),
        ("I prefer Response B; it uses imagery.", "B"),
        ("", None),
        ("A good haiku has 17 syllables.", None),  # "A" the article
        ("Response A is vivid and Response B is calm.", "A"),  # it opens with its choice
        ("Both Response A and Response B are good.", None),
        ("Neither.", None),
        ("Both.", None),
    ],
)
def test_a_reply_names_a_letter_or_none(reply: str, letter: str | None) -> None:
    assert verdict(reply) == letter


async def test_unparsed_replies_are_no_vote_and_counted() -> None:
    texts = ranked(1, 9, 2)
    r = await run(fake(texts, lambda a, b: "Both have merit."), n=3, format="round_robin")
    assert r.trace is not None and r.chosen == 0
    assert r.trace["unparsed"] == 2 * 3 and r.trace["ties"] == 3
    order = r.trace["comparisons"][0]["orders"][0]
    assert order["reply"] == "Both have merit." and order["parsed"] is None
    assert order["vote"] is None


async def test_one_vote_against_no_vote_decides() -> None:
    texts = ranked(1, 9)

    def half(a: str, b: str) -> str:  # reads the better one only when it is Response B
        return "B" if prefers_better(a, b) == "B" else "hmm"

    r = await run(fake(texts, half), n=2)
    assert r.chosen == 1 and r.trace is not None and r.trace["unparsed"] == 1


# -- sizes: one candidate, identical ones, byes, round robin ---------------------------------


async def test_one_candidate_asks_no_judge() -> None:
    gen = fake(ranked(3), prefers_better)
    r = await run(gen, n=1)
    assert r.chosen == 0 and judge_requests(gen) == []
    assert r.trace is not None and r.trace["comparisons"] == []
    assert r.cost.verifier_calls == 0


async def test_identical_candidates_are_one_entrant_and_ask_no_judge() -> None:
    same = haiku(0, 1)
    gen = FakeGenerator({Q: [same, same + "  ", same]}, default=["A"], n_params=N_PARAMS)
    r = await run(gen, n=3)
    assert r.chosen == 0 and judge_requests(gen) == []
    assert r.trace is not None and r.trace["entrants"] == [0]


async def test_duplicates_enter_once() -> None:
    texts = ranked(1, 5)
    gen = FakeGenerator({Q: [texts[0], texts[1], texts[0]], **judged(texts, prefers_better)})
    r = await run(gen, n=3)
    assert r.trace is not None and r.trace["entrants"] == [0, 1] and r.chosen == 1
    assert len(judge_requests(gen)) == 2


async def test_a_knockout_of_five_gives_three_byes_in_the_first_round_only() -> None:
    texts = ranked(1, 2, 3, 4, 9)  # the best is the last entrant, who has a bye
    gen = fake(texts, prefers_better)
    r = await run(gen, n=5)
    assert r.trace is not None and r.chosen == 4
    assert r.trace["byes"] == [[0, 2], [0, 3], [0, 4]]
    rounds = [(c["round"], c["pair"], c["winner"]) for c in r.trace["comparisons"]]
    assert rounds == [(0, [0, 1], 1), (1, [1, 2], 2), (1, [3, 4], 4), (2, [2, 4], 4)]
    assert len(judge_requests(gen)) == 2 * 4  # N - 1 comparisons


def test_the_circle_method_plays_every_pair_once_each_entrant_once_a_round() -> None:
    for n in range(1, 9):
        rounds = circle(n)
        pairs = [p for r in rounds for p in r]
        assert sorted(pairs) == [(i, j) for i in range(n) for j in range(i + 1, n)]
        for r in rounds:
            seen = [x for p in r for x in p]
            assert len(seen) == len(set(seen))


async def test_a_round_robin_counts_wins_and_half_points_for_ties() -> None:
    texts = ranked(3, 1, 3, 2)  # 0 and 2 tie with each other, beat the rest
    gen = fake(texts, prefers_better)
    r = await run(gen, n=4, format="round_robin")
    assert r.trace is not None
    assert dict(r.trace["points"]) == {0: 2.5, 1: 0.0, 2: 2.5, 3: 1.0}
    assert r.chosen == 0  # equal points: the earlier entrant
    assert len(r.trace["comparisons"]) == 6 and len(judge_requests(gen)) == 12
    assert sum(p for _, p in r.trace["points"]) == 6


# -- cost and budget --------------------------------------------------------------------------


async def test_judge_calls_are_verifier_cost_never_samples() -> None:
    gen = fake(ranked(1, 2, 3), prefers_better)
    r = await run(gen, n=3)
    assert r.cost.samples == 3 == len(r.candidates)
    assert r.cost.verifier_calls == 2 * 2
    tokens = r.cost.prompt_tokens + r.cost.generated_tokens
    assert r.cost.flops == flops(N_PARAMS, tokens + r.cost.verifier_tokens)
    assert not r.budget_exhausted


def ask_worst(gen: FakeGenerator, a: str, b: str, judge_tokens: int) -> float:
    """What the context holds for one judge call at its worst: the prompt and every token."""
    chat = (Message("user", fill(TEMPLATE, {"problem": Q, "a": a, "b": b})),)
    return flops(gen.n_params, gen.count_prompt_tokens(Request(chat)) + judge_tokens)


async def sampling_flops(texts: list[str], **params: Any) -> float:
    """What sampling costs in a full run: all of it less the judge's FLOPs."""
    r = await run(fake(texts, prefers_better), **params)
    return r.cost.flops - flops(N_PARAMS, r.cost.verifier_tokens)


async def test_a_knockout_out_of_budget_returns_the_leader_so_far() -> None:
    texts = ranked(1, 5, 1, 9)  # 1 and 3 win round one; 3 would win the final
    assert (await run(fake(texts, prefers_better), n=4)).chosen == 3
    gen = fake(texts, prefers_better)
    first_round = [(texts[0], texts[1]), (texts[1], texts[0]), (texts[2], texts[3]),
                   (texts[3], texts[2])]  # fmt: skip
    budget = await sampling_flops(texts, n=4, judge_tokens=4) + sum(
        ask_worst(gen, a, b, 4) for a, b in first_round
    )
    r = await run(gen, Budget(flops=budget), n=4, judge_tokens=4)
    assert r.trace is not None and r.trace["stopped"] and r.budget_exhausted
    assert [c["complete"] for c in r.trace["comparisons"]] == [True, True, False]
    assert r.chosen == 1  # the earliest winner of the last round played
    assert r.cost.flops <= budget and r.cost.samples == 4


async def test_a_round_robin_out_of_budget_ranks_the_games_played() -> None:
    texts = ranked(1, 2, 5, 9)  # round one: 0-3 and 1-2; 2 and 3 win; 3 wins it all
    assert (await run(fake(texts, prefers_better), n=4, format="round_robin")).chosen == 3
    gen = fake(texts, prefers_better)
    first_round = [(texts[0], texts[3]), (texts[3], texts[0]), (texts[1], texts[2]),
                   (texts[2], texts[1])]  # fmt: skip
    budget = await sampling_flops(texts, n=4, judge_tokens=4, format="round_robin") + sum(
        ask_worst(gen, a, b, 4) for a, b in first_round
    )
    r = await run(gen, Budget(flops=budget), n=4, judge_tokens=4, format="round_robin")
    assert r.trace is not None and r.trace["stopped"] and r.budget_exhausted
    assert [c["complete"] for c in r.trace["comparisons"]] == [True] * 2 + [False] * 4
    assert dict(r.trace["points"]) == {0: 0.0, 1: 0.0, 2: 1.0, 3: 1.0}
    assert r.chosen == 2 and r.cost.flops <= budget


async def test_no_sample_no_judge() -> None:
    gen = fake(ranked(1, 2), prefers_better)
    r = await run(gen, Budget(tokens=1), n=2)
    assert r.chosen is None and r.budget_exhausted and gen.requests == []


async def test_a_samples_budget_does_not_stop_the_judge() -> None:
    r = await run(fake(ranked(1, 2, 9), prefers_better), Budget(samples=3), n=3)
    assert r.chosen == 2 and not r.budget_exhausted


# -- the judge model, its context, its prompt -------------------------------------------------


async def test_a_judge_model_of_its_own_is_opened_once_and_charged_at_its_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    texts = ranked(1, 2)
    judge = FakeGenerator(judged(texts, prefers_better), n_params=10)
    opened: list[str] = []

    def load(name: str) -> FakeGenerator:
        opened.append(name)
        return judge

    monkeypatch.setattr(models, "OPENED", {})
    monkeypatch.setattr(models, "load_generator", load)
    policy = FakeGenerator({Q: texts}, n_params=N_PARAMS)
    for _ in range(2):
        r = await run(policy, n=2, judge="my-judge")
        assert r.chosen == 1 and r.trace is not None and r.trace["judge"] == "my-judge"
    assert opened == ["my-judge"] and len(judge.requests) == 4
    assert judge_requests(policy) == []
    assert r.cost.flops == flops(N_PARAMS, r.cost.prompt_tokens + r.cost.generated_tokens) + (
        flops(10, r.cost.verifier_tokens)
    )


async def test_an_unknown_judge_fails_before_sampling() -> None:
    gen = fake(ranked(1, 2), prefers_better)
    with pytest.raises(ConfigError, match="unknown model 'no-such-judge'"):
        await run(gen, n=2, judge="no-such-judge")
    assert gen.requests == []


async def test_long_responses_lose_their_middle_and_unfit_ones_get_no_vote() -> None:
    texts = [f"Haiku {i}: " + "drip " * 200 + "the end." for i in range(2)]
    gen = FakeGenerator({Q: texts}, n_params=N_PARAMS)  # the judge replies with a haiku
    gen.context_window = 120  # the bare comparison prompt is 70 tokens, each response 32
    r = await run(gen, n=2)
    assert r.trace is not None
    orders = r.trace["comparisons"][0]["orders"]
    assert [o["cut"] for o in orders] == [2, 2] and all(o["reply"] for o in orders)
    assert all(q.messages[-1].content.count("[...]") == 2 for q in judge_requests(gen))
    assert all(gen.count_prompt_tokens(q) <= 120 - 16 for q in judge_requests(gen))
    gen = FakeGenerator({Q: texts}, n_params=N_PARAMS)
    gen.context_window = 80  # not even a few characters of each fit
    r = await run(gen, n=2)
    assert r.trace is not None and r.trace["unfit"] == 2 and r.chosen == 0
    assert judge_requests(gen) == [] and not r.budget_exhausted


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"prompt": "Which is better, {a} or {b}?"}, "lacks {problem}"),
        ({"prompt": "{problem} {a} {a}"}, "each once"),
        ({"format": "swiss"}, "one of 'knockout', 'round_robin'"),
        ({"judge_tokens": 0}, "'judge_tokens' must be > 0"),
    ],
)
def test_bad_parameters_are_refused_in_one_line(params: Mapping[str, Any], says: str) -> None:
    with pytest.raises(ConfigError, match=says.replace("{", r"\{").replace("}", r"\}")):
        STRATEGIES.spec("tournament", params)


async def test_the_trace_is_plain_data_that_replays_the_verdicts() -> None:
    texts = ranked(4, 1, 3, 2, 5)
    r = await run(fake(texts, prefers_better), n=5, format="round_robin")
    assert r.trace is not None
    assert json.loads(json.dumps(r.trace)) == r.trace
    for c in r.trace["comparisons"]:  # each verdict follows from its two stored replies
        votes = {o["vote"] for o in c["orders"]} - {None}
        for o in c["orders"]:
            shown = {"A": o["a"], "B": o["b"]}
            assert o["vote"] == (shown[o["parsed"]] if o["parsed"] else None)
            assert verdict(o["reply"]) == o["parsed"]
        assert c["winner"] == (votes.pop() if len(votes) == 1 else None)
