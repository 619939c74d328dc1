"""The fake generator and fake verifier: scripted, seeded, with real token counts and costs."""

from __future__ import annotations

import asyncio
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testtime.core.answers import extract
from testtime.core.errors import ConfigError
from testtime.core.types import Candidate, Message, Problem, Request
from testtime.generators.fake import FakeGenerator, arithmetic, count_tokens, render, tokens
from testtime.verifiers.base import VERIFIERS, VerifierDeps
from testtime.verifiers.fake import FakeVerifier

Q = "What is 3 + 4?"
CHAT = (Message("user", Q),)


def req(**kw: object) -> Request:
    return Request(CHAT, **kw)  # type: ignore[arg-type]


async def texts(gen: FakeGenerator, **kw: object) -> list[str]:
    return [c.text for c in (await gen.generate(req(**kw))).completions]


# -- tokenizer and counts -------------------------------------------------------------------


def test_tokens_are_words_punctuation_and_newlines() -> None:
    assert tokens("Answer: 7.\n\nOk") == ["Answer", ":", " 7", ".", "\n", "\n", "Ok"]
    assert count_tokens("") == 0


@given(st.text(max_size=80))
def test_tokens_cover_the_text_except_spaces(text: str) -> None:
    joined = "".join(tokens(text))
    assert [ch for ch in joined if not ch.isspace() or ch == "\n"] == [
        ch for ch in text if not ch.isspace() or ch == "\n"
    ]


async def test_cost_counts_the_prompt_once_and_every_generated_token() -> None:
    gen = FakeGenerator({Q: ["Answer: 7", "So the answer is 7"]}, n_params=1000)
    out = await gen.generate(req(n=2))
    prompt = count_tokens(f"<|user|>\n{Q}\n<|assistant|>\n")
    assert gen.count_prompt_tokens(req()) == prompt
    assert [c.generated_tokens for c in out.completions] == [3, 5]
    assert out.cost.prompt_tokens == prompt  # one shared prefill, not n
    assert out.cost.generated_tokens == 8 and out.cost.samples == 2
    assert out.cost.flops == 2 * 1000 * (prompt + 8)
    assert gen.requests == [req(n=2)]


# -- scripts: lists in turn, weighted draws, greedy -----------------------------------------


async def test_a_list_comes_back_in_turn_across_calls() -> None:
    gen = FakeGenerator({Q: ["a", "b", "c"]})
    assert await texts(gen, n=2) == ["a", "b"]
    assert await texts(gen, n=3) == ["c", "a", "b"]


async def test_greedy_returns_the_most_likely_text() -> None:
    gen = FakeGenerator({Q: {"Answer: 8": 0.3, "Answer: 7": 0.6, "Answer: 9": 0.1}})
    assert await texts(gen, n=3, temperature=0.0) == ["Answer: 7"] * 3
    listed = FakeGenerator({Q: ["x", "y", "y", "z"]})
    assert await texts(listed, n=2, temperature=0.0) == ["y", "y"]


async def test_same_seed_same_draws_and_other_seeds_differ() -> None:
    gen = FakeGenerator({Q: {"A": 0.5, "B": 0.5}})
    first = await texts(gen, n=20, seed=1)
    assert await texts(gen, n=20, seed=1) == first
    assert await texts(gen, n=20, seed=2) != first


async def test_draws_follow_the_weights_and_temperature_sharpens_them() -> None:
    gen = FakeGenerator({Q: {"A": 0.7, "B": 0.3}})
    share = (await texts(gen, n=1000, seed=3)).count("A") / 1000
    assert 0.65 < share < 0.75
    cold = (await texts(gen, n=1000, seed=3, temperature=0.25)).count("A") / 1000
    assert cold > 0.95  # 0.7^4 / (0.7^4 + 0.3^4) = 0.967


async def test_top_p_keeps_only_the_nucleus() -> None:
    gen = FakeGenerator({Q: {"A": 0.6, "B": 0.3, "C": 0.1}})
    assert set(await texts(gen, n=200, seed=0, top_p=0.8)) == {"A", "B"}


async def test_an_unscripted_prompt_is_refused_with_the_scripted_ones() -> None:
    gen = FakeGenerator({"something else": ["x"]})
    with pytest.raises(ConfigError, match=r"no script.*'something else'"):
        await gen.generate(req())


async def test_a_key_contained_in_the_prompt_matches_and_default_covers_the_rest() -> None:
    gen = FakeGenerator({"3 + 4": ["seven"]}, default=["other"])
    assert await texts(gen) == ["seven"]
    other = await gen.generate(Request((Message("user", "hello"),)))
    assert other.completions[0].text == "other"


@pytest.mark.parametrize("bad", [[], {"a": -1.0}, {"a": 0.0}, "just one string"])
def test_bad_scripts_are_refused(bad: object) -> None:
    with pytest.raises(ConfigError, match="script"):
        FakeGenerator({Q: bad})  # type: ignore[dict-item]


# -- limits: max_tokens, stop strings, prefixes, first finish -------------------------------


async def test_max_tokens_truncates_with_finish_length() -> None:
    gen = FakeGenerator({Q: ["one two three four five"]})
    (c,) = (await gen.generate(req(max_tokens=3))).completions
    assert (c.text, c.generated_tokens, c.finish_reason) == ("one two three", 3, "length")
    (c,) = (await gen.generate(req(max_tokens=5))).completions
    assert (c.generated_tokens, c.finish_reason) == (5, "eos")


async def test_a_stop_string_ends_the_text_but_its_tokens_are_paid() -> None:
    gen = FakeGenerator({Q: ["Step 1.\n\nStep 2.\n\nAnswer: 3"]})
    (c,) = (await gen.generate(req(stop=("\n\n",)))).completions
    assert (c.text, c.finish_reason) == ("Step 1.", "stop")
    assert c.generated_tokens == count_tokens("Step 1.\n\n")


async def test_a_prefix_is_continued_from_the_matching_text() -> None:
    gen = FakeGenerator({Q: ["Step 1.\n\nStep 2.\n\nAnswer: 3", "Other.\n\nAnswer: 4"]})
    request = req(prefix="Step 1.\n\n", stop=("\n\n",))
    (c,) = (await gen.generate(request)).completions
    assert c.text == "Step 2."
    extra = count_tokens("Step 1.\n\n")
    assert gen.count_prompt_tokens(request) == gen.count_prompt_tokens(req()) + extra


async def test_first_finish_cancels_the_rest_at_the_shortest_length() -> None:
    gen = FakeGenerator({Q: ["a b c d e f", "a b", "a b c d"]})
    out = await gen.generate(req(n=3, first_finish=True))
    got = [(c.text, c.generated_tokens, c.finish_reason) for c in out.completions]
    assert got == [("a b", 2, "cancelled"), ("a b", 2, "eos"), ("a b", 2, "cancelled")]
    assert out.cost.generated_tokens == 6


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.text(alphabet="ab .\n", max_size=30), min_size=1, max_size=4),
    st.integers(1, 12),
    st.sampled_from([(), ("\n",), (".", "b")]),
    st.booleans(),
)
def test_completions_respect_every_limit(
    script: list[str], max_tokens: int, stop: tuple[str, ...], first: bool
) -> None:
    gen = FakeGenerator({Q: script})
    request = req(n=3, max_tokens=max_tokens, stop=stop, first_finish=first, logprobs=True)
    out = asyncio.run(gen.generate(request))
    for c in out.completions:
        assert c.generated_tokens <= max_tokens
        assert any(s.startswith(c.text) for s in script)
        assert not any(s in c.text for s in stop)
        assert c.logprobs is not None and len(c.logprobs) == c.generated_tokens
        assert all(lp <= 0 for lp in c.logprobs)
    assert out.cost.generated_tokens == sum(c.generated_tokens for c in out.completions)


# -- logprobs, certainty, top_logprobs ------------------------------------------------------


async def test_top_logprobs_script_a_judge() -> None:
    gen = FakeGenerator({"Is the answer correct": {"Yes": 0.8, "No": 0.2}})
    judge = Request((Message("user", "Q: 3+4. A: 7. Is the answer correct?"),), top_logprobs=2)
    (c,) = (await gen.generate(judge)).completions
    (first,) = c.top_logprobs or ()
    assert list(first) == ["Yes", "No"]
    assert math.exp(first["Yes"]) == pytest.approx(0.8, abs=0.01)
    assert math.exp(first["No"]) == pytest.approx(0.2, abs=0.01)


async def test_top_logprobs_list_k_tokens_as_a_real_model_does() -> None:
    gen = FakeGenerator({"Is the answer correct": {"Yes": 0.8, "No": 0.2}})
    judge = Request((Message("user", "Q: 3+4. A: 7. Is the answer correct?"),), top_logprobs=5)
    (c,) = (await gen.generate(judge)).completions
    (first,) = c.top_logprobs or ()
    assert list(first)[:2] == ["Yes", "No"] and len(first) == 5  # then unscripted tokens
    floor = math.log((1 - 0.99) / 32000)
    assert [v for t, v in first.items() if t.startswith("<unk")] == [floor] * 3


async def test_likelier_texts_get_higher_logprobs_and_certainty() -> None:
    gen = FakeGenerator({Q: {"so 7 it is": 0.9, "so 8 it is": 0.1}})
    out = await gen.generate(req(n=40, seed=0, logprobs=True))
    by_text = {c.text: c for c in out.completions}
    likely, rare = by_text["so 7 it is"], by_text["so 8 it is"]
    assert likely.logprobs is not None and rare.logprobs is not None
    assert sum(likely.logprobs) > sum(rare.logprobs)
    assert likely.certainty is not None and rare.certainty is not None
    assert sum(likely.certainty) > sum(rare.certainty)
    assert likely.logprobs[0] == pytest.approx(math.log(0.99 + 0.01 / 32000))  # shared token


# -- answers and the arithmetic default -----------------------------------------------------


def test_rendered_answers_extract_back_and_none_has_no_answer() -> None:
    assert extract(render("7", "3 + 4")) == "7"
    assert extract(render("-2.5")) == "-2.5"
    assert extract(render(None)) is None


async def test_from_answers_draws_answers_by_weight() -> None:
    gen = FakeGenerator.from_answers({Q: {"7": 0.6, "8": 0.3, None: 0.1}})
    answers = [extract(t) for t in await texts(gen, n=400, seed=1)]
    assert 0.5 < answers.count("7") / 400 < 0.7
    assert 0.05 < answers.count(None) / 400 < 0.16
    assert set(answers) == {"7", "8", None}


async def test_the_default_solves_arithmetic_greedily_and_mostly_when_sampled() -> None:
    gen = FakeGenerator()
    assert [extract(t) for t in await texts(gen, temperature=0.0)] == ["7"]
    sampled = [extract(t) for t in await texts(gen, n=200, seed=5)]
    assert max(set(sampled), key=sampled.count) == "7"
    assert set(sampled) <= {"7", "8", "6", "17"} and len(set(sampled)) > 1


def _likeliest(prompt: str) -> str | None:
    script = arithmetic(prompt)
    return extract(max(script, key=script.__getitem__))


@pytest.mark.parametrize(
    ("prompt", "value"),
    [
        ("Compute (123 * 45) - 678 / 3.", "5309"),
        ("Calculate ( 56 + -33 ) - 84.\nThink step by step.", "-61"),
        ("Calculate -1515 / 5 + -( -2842 * -5436 ) * -6892.", "106475279601"),
        ("What is 3 x 4?", "12"),
        ("What is 7/2?", "3.5"),
    ],
)
def test_arithmetic_reads_expressions_exactly(prompt: str, value: str) -> None:
    assert _likeliest(prompt) == value


def test_arithmetic_gets_harder_with_digits_and_ignores_other_prompts() -> None:
    easy, hard = arithmetic("What is 3 + 4?"), arithmetic("Compute (123 * 45) - 678 / 3.")
    assert max(easy.values()) > max(hard.values()) >= 0.4
    assert arithmetic("Name a colour.") == {"": 1.0}
    assert arithmetic("In 2024 there were 5 cats.") == {"": 1.0}  # numbers, but no sum


async def test_concurrent_calls_overlap() -> None:
    gen = FakeGenerator({Q: ["x"]}, latency=0.01)
    await asyncio.gather(*(gen.generate(req()) for _ in range(4)))
    assert gen.peak_in_flight == 4


# -- the fake verifier ----------------------------------------------------------------------

P = Problem.from_prompt(Q, answer="7", id="p1")


def cand(answer: str | None, text: str = "") -> Candidate:
    return Candidate(text or f"Answer: {answer}", answer)


async def test_verifier_scores_by_equivalent_answer_with_a_default() -> None:
    v = FakeVerifier({"7": 0.9, "1/2": 0.6, None: 0.05}, default=0.1)
    got = await v.score(P, [cand("7"), cand("7.0"), cand("0.5"), cand("8"), cand(None)])
    assert got.values == (0.9, 0.9, 0.6, 0.1, 0.05)


async def test_verifier_noise_is_seeded_per_candidate() -> None:
    v = FakeVerifier({"7": 0.5}, noise=0.1, seed=1)
    a = (await v.score(P, [cand("7", "t1"), cand("7", "t2")])).values
    assert a == (await v.score(P, [cand("7", "t1"), cand("7", "t2")])).values
    assert a[0] != a[1] and all(abs(x - 0.5) < 0.5 for x in a)
    other = FakeVerifier({"7": 0.5}, noise=0.1, seed=2)
    assert (await other.score(P, [cand("7", "t1")])).values[0] != a[0]


async def test_verifier_charges_its_pretend_model() -> None:
    v = FakeVerifier(lambda p, c: len(c.text), n_params=100, tokens_per_candidate=50)
    got = await v.score(P, [cand("7"), cand("8", "longer text")])
    assert got.values == (9, 11)
    assert (got.cost.verifier_calls, got.cost.verifier_tokens) == (2, 100)
    assert got.cost.flops == 2 * 100 * 100 == 2 * v.flops_per_candidate(P)


async def test_registered_fake_verifier_uses_the_gold_check() -> None:
    spec = VERIFIERS.spec("fake", {"tokens_per_candidate": 3})
    check = lambda p, a: a == p.answer  # noqa: E731
    v = VERIFIERS.build(spec, VerifierDeps(check=check))
    assert (await v.score(P, [cand("7"), cand("8")])).values == (1.0, 0.0)
    with pytest.raises(ConfigError, match="gold answers"):
        VERIFIERS.build(spec, VerifierDeps())
    with pytest.raises(ConfigError, match="noise"):
        VERIFIERS.spec("fake", {"noise": -1})
