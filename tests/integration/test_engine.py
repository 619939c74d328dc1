"""The batching engine on the real embedded model: same tokens as `generate`, and every knob.

Exact-equality checks run in float32: in bf16 a batch's rounding can flip a near-tie.
Kept small (few prompts, short outputs) so the whole file runs in well under a minute.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator

import pytest

from testtime.core import errors
from testtime.core.types import Message, Request
from testtime.generators.attention import stock_attention
from testtime.generators.models import load_generator
from testtime.generators.transformers import TransformersGenerator

pytestmark = pytest.mark.integration

PROMPTS = ["What is 12 + 7?", "Name three fruits.", "Count from 1 to 10, separated by commas."]


def chat(text: str) -> tuple[Message, ...]:
    return (Message("user", text),)


@pytest.fixture(scope="module")
def gen32() -> Iterator[TransformersGenerator]:
    gen = load_generator("smollm2-135m", dtype="fp32")
    assert isinstance(gen, TransformersGenerator)
    yield gen
    asyncio.run(gen.aclose())


@pytest.fixture(scope="module")
def gen() -> Iterator[TransformersGenerator]:
    gen = load_generator("smollm2-135m")
    assert isinstance(gen, TransformersGenerator)
    yield gen
    asyncio.run(gen.aclose())


async def greedy(g: TransformersGenerator, text: str, **kw: object) -> str:
    out = await g.generate(Request(chat(text), temperature=0.0, **kw))  # type: ignore[arg-type]
    return out.completions[0].text


async def test_greedy_matches_transformers_generate(gen32: TransformersGenerator) -> None:
    import torch

    outs = await asyncio.gather(
        *(gen32.generate(Request(chat(p), temperature=0.0, max_tokens=24)) for p in PROMPTS)
    )
    for text, out in zip(PROMPTS, outs, strict=True):
        ids = torch.tensor([gen32._encode(chat(text), "")])
        with torch.inference_mode(), stock_attention(gen32.model):
            ref = gen32.model.generate(
                ids, do_sample=False, max_new_tokens=24, eos_token_id=sorted(gen32.engine.eos)
            )[0, ids.shape[1] :].tolist()
        comp = out.completions[0]
        ended = ref[-1] in gen32.engine.eos
        assert comp.finish_reason == ("eos" if ended else "length")
        assert comp.generated_tokens == len(ref)
        assert comp.text == gen32.tokenizer.decode(ref[:-1] if ended else ref)


async def test_n_samples_share_one_prefill(gen: TransformersGenerator) -> None:
    req = Request(chat(PROMPTS[0]), n=4, max_tokens=8, seed=3)
    gen.engine.prefix.clear()  # (chat prompts share a system message: a later one reuses it)
    before = gen.engine.prefills
    out = await gen.generate(req)
    prompt = gen.count_prompt_tokens(req)
    assert gen.engine.prefills == before + 1
    assert out.cost.prompt_tokens == prompt  # computed once...
    assert out.cost.cached_prompt_tokens == 3 * prompt  # ...and served to the other three
    assert out.cost.samples == 4
    assert out.cost.generated_tokens == sum(c.generated_tokens for c in out.completions)
    assert out.cost.flops == 2 * gen.n_params * (prompt + out.cost.generated_tokens)


async def test_a_repeated_prompt_reuses_its_prefill_bit_for_bit(gen: TransformersGenerator) -> None:
    req = Request(chat("Spell the word 'cat' backwards."), n=2, max_tokens=12, seed=9)
    gen.engine.prefix.clear()
    first = await gen.generate(req)
    again = await gen.generate(req)
    prompt = gen.count_prompt_tokens(req)
    assert first.cost.prompt_tokens == prompt
    assert again.cost.prompt_tokens == 1  # only the last token, for its logits
    assert again.cost.cached_prompt_tokens == 2 * prompt - 1
    assert [c.text for c in again.completions] == [c.text for c in first.completions]


async def test_a_longer_prefix_computes_only_what_is_new(gen: TransformersGenerator) -> None:
    msgs = chat("List the planets in order.")
    short = Request(msgs, prefix="Mercury,", max_tokens=8, temperature=0.0)
    long = Request(msgs, prefix="Mercury, Venus, Earth,", max_tokens=8, temperature=0.0)
    await gen.generate(short)
    cached = await gen.generate(long)
    new = gen.count_prompt_tokens(long) - gen.count_prompt_tokens(short)
    assert 0 < cached.cost.prompt_tokens <= new + 1  # the shared start was not recomputed
    gen.engine.prefix.clear()  # forget everything: compute it all
    fresh = await gen.generate(long)
    assert fresh.cost.prompt_tokens == gen.count_prompt_tokens(long)
    assert fresh.completions[0].text == cached.completions[0].text


async def test_stop_string_cuts_the_text_before_it(gen32: TransformersGenerator) -> None:
    full = await greedy(gen32, PROMPTS[2], max_tokens=40)
    assert ", 4" in full, full
    out = await gen32.generate(
        Request(chat(PROMPTS[2]), temperature=0.0, max_tokens=40, stop=(", 4", "zzz"))
    )
    comp = out.completions[0]
    assert comp.finish_reason == "stop"
    assert comp.text == full[: full.index(", 4")]


async def test_max_tokens_ends_with_length(gen: TransformersGenerator) -> None:
    out = await gen.generate(Request(chat(PROMPTS[1]), temperature=0.0, max_tokens=3))
    comp = out.completions[0]
    assert (comp.finish_reason, comp.generated_tokens) == ("length", 3)


async def test_seed_reproduces_whatever_shares_the_batch(gen: TransformersGenerator) -> None:
    req = Request(chat(PROMPTS[1]), n=2, max_tokens=16, temperature=1.0, seed=11)
    alone = await gen.generate(req)
    others = [Request(chat(p), n=3, max_tokens=20, temperature=1.0) for p in PROMPTS]
    crowded, *_ = await asyncio.gather(gen.generate(req), *(gen.generate(r) for r in others))
    assert [c.text for c in crowded.completions] == [c.text for c in alone.completions]
    other_seed = await gen.generate(Request(chat(PROMPTS[1]), n=2, max_tokens=16, seed=12))
    assert [c.text for c in other_seed.completions] != [c.text for c in alone.completions]


async def test_first_finish_cancels_the_rest(gen: TransformersGenerator) -> None:
    req = Request(
        chat("Answer in one word: what colour is the sky?"),
        n=4,
        max_tokens=48,
        temperature=1.0,
        seed=5,
        first_finish=True,
    )
    out = await gen.generate(req)
    reasons = [c.finish_reason for c in out.completions]
    assert sum(r in ("eos", "stop") for r in reasons) >= 1
    assert "cancelled" in reasons
    assert "length" not in reasons  # nobody ran to the end: all were cut at the first finish
    assert out.cost.generated_tokens == sum(c.generated_tokens for c in out.completions)
    assert all(c.generated_tokens > 0 for c in out.completions)  # cut ones are still charged


async def test_logprobs_certainty_and_top_logprobs(gen: TransformersGenerator) -> None:
    out = await gen.generate(
        Request(chat(PROMPTS[0]), temperature=0.0, max_tokens=12, logprobs=True, top_logprobs=5)
    )
    comp = out.completions[0]
    assert comp.logprobs is not None and comp.certainty is not None
    assert comp.top_logprobs is not None
    tokens = comp.generated_tokens - (comp.finish_reason == "eos")
    assert len(comp.logprobs) == len(comp.certainty) == len(comp.top_logprobs) == tokens
    for lp, cert, top in zip(comp.logprobs, comp.certainty, comp.top_logprobs, strict=True):
        assert lp <= 0 and cert >= 0  # KL(uniform || p) is never negative
        assert 1 <= len(top) <= 5 and all(v <= 0 for v in top.values())
        assert max(top.values()) == pytest.approx(lp, abs=1e-4)  # greedy took the likeliest
        assert sum(2.718281828**v for v in top.values()) <= 1 + 1e-4


async def test_prefix_is_continued(gen32: TransformersGenerator) -> None:
    full = await greedy(gen32, PROMPTS[2], max_tokens=30)
    head_ids = gen32.tokenizer(full, add_special_tokens=False)["input_ids"][:6]
    head = gen32.tokenizer.decode(head_ids)
    rest = await greedy(gen32, PROMPTS[2], max_tokens=30 - len(head_ids), prefix=head)
    assert (head + rest)[:40] == full[:40]


async def test_event_loop_stays_responsive(gen: TransformersGenerator) -> None:
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    await gen.generate(Request(chat(PROMPTS[1]), n=8, max_tokens=24, temperature=1.0))
    task.cancel()
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert len(ticks) > 5 and max(gaps) < 0.25, max(gaps)


async def test_a_cancelled_caller_does_not_stop_the_others(gen: TransformersGenerator) -> None:
    doomed = asyncio.create_task(gen.generate(Request(chat(PROMPTS[1]), n=4, max_tokens=64)))
    await asyncio.sleep(0.2)
    doomed.cancel()
    out = await gen.generate(Request(chat(PROMPTS[0]), temperature=0.0, max_tokens=6))
    assert out.completions[0].generated_tokens >= 1
    assert doomed.cancelled()


async def test_closed_generator_refuses_and_base_model_reads_plain_text() -> None:
    base = load_generator("gemma3-270m")
    assert isinstance(base, TransformersGenerator) and not base.chat
    msgs = (Message("system", "Q: 2+2?"), Message("user", "A:"))
    assert base.prompt_text(msgs, " 4") == "Q: 2+2?\n\nA: 4"
    out = await base.generate(Request(msgs, max_tokens=4, temperature=0.0))
    assert out.completions[0].generated_tokens >= 1
    await base.aclose()
    await base.aclose()  # idempotent
    with pytest.raises(errors.TesttimeError, match="closed"):
        await base.generate(Request(msgs, max_tokens=4))
