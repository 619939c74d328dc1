"""The engine under faults: every caller gets an answer or an error within a bound, a request
that fails alone leaves the others running, and the engine serves the next request.

A tiny random Llama (built here, a few kB) behind the real engine, runner and sampler, and a
toy tokenizer (one character, one token), so each stage can be made to raise on purpose:
tokenizing, the prefix-cache lookup, prefill, decode, sampling, stop strings, a caller that
leaves, `MemoryError`, and the worker itself dying. Also the memory ceiling, chunked
prefill and deadlines.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from testtime.core import errors  # noqa: E402
from testtime.core.types import Message, Request  # noqa: E402
from testtime.generators.engine import Engine  # noqa: E402
from testtime.generators.prefill import Prefill  # noqa: E402
from testtime.generators.runner import Runner  # noqa: E402
from testtime.generators.sequence import Seq  # noqa: E402
from testtime.generators.transformers import TransformersGenerator  # noqa: E402

BOUND_S = 20.0  # every call in these tests must end within this
VOCAB = 96
EOS = VOCAB - 1


class ToyTokenizer:
    """One token per printable character; no chat template (prompts are plain text)."""

    chat_template = None
    eos_token_id = EOS

    def __init__(self) -> None:
        self.fail_on: str | None = None  # tokenizing a text that contains this raises

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        if self.fail_on is not None and self.fail_on in text:
            raise RuntimeError("tokenizer broke")
        return {"input_ids": [2 + (ord(c) - 32) % (VOCAB - 3) for c in text]}

    def decode(self, tokens: list[int]) -> str:
        return "".join(chr(32 + (t - 2) % (VOCAB - 3)) for t in tokens)

    def get_vocab(self) -> dict[str, int]:
        return {}


def tiny_model() -> Any:
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        eos_token_id=EOS,
        attn_implementation="sdpa",
    )
    return transformers.LlamaForCausalLM(cfg).eval()


@pytest.fixture
def gen(one_torch_thread: None) -> Iterator[TransformersGenerator]:
    g = TransformersGenerator(tiny_model(), ToyTokenizer(), name="tiny", tune_malloc=False)
    yield g
    g.engine.close()


def ask(text: str, **kw: Any) -> Request:
    return Request((Message("user", text),), **{"max_tokens": 12, "temperature": 0.0, **kw})


async def bounded(coro: Any) -> Any:
    return await asyncio.wait_for(coro, BOUND_S)


async def serves_a_fresh_request(g: TransformersGenerator) -> None:
    out = await bounded(g.generate(ask("a fresh request", max_tokens=4)))
    assert len(out.completions) == 1 and out.completions[0].generated_tokens >= 1


async def outcomes(g: TransformersGenerator, *requests: Request) -> list[Any]:
    return list(
        await bounded(asyncio.gather(*(g.generate(r) for r in requests), return_exceptions=True))
    )


async def test_tokenizing_fails_its_request_alone(gen: TransformersGenerator) -> None:
    gen.tokenizer.fail_on = "BOOM"
    bad, good = await outcomes(gen, ask("BOOM"), ask("fine"))
    assert isinstance(bad, RuntimeError) and "tokenizer" in str(bad)
    assert good.completions[0].generated_tokens >= 1
    await serves_a_fresh_request(gen)


async def test_prefix_lookup_fails_its_request_alone(
    gen: TransformersGenerator, monkeypatch: pytest.MonkeyPatch
) -> None:
    poison = tuple(gen._encode((Message("user", "poison"),), ""))
    real = gen.engine.prefix.lookup

    def lookup(prompt: tuple[int, ...]) -> Any:
        if prompt == poison:
            raise KeyError("cache index broke")
        return real(prompt)

    monkeypatch.setattr(gen.engine.prefix, "lookup", lookup)
    bad, good = await outcomes(gen, ask("poison"), ask("fine"))
    assert isinstance(bad, KeyError)
    assert good.completions[0].generated_tokens >= 1
    await serves_a_fresh_request(gen)


@pytest.mark.parametrize("error", [RuntimeError("prefill broke"), MemoryError()])
async def test_a_failed_prefill_fails_its_requests_and_the_batch_goes_on(
    gen: TransformersGenerator, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    poison = gen._encode((Message("user", "x" * 200),), "")
    real = Prefill.step

    def step(self: Prefill) -> Any:
        if any(p.prompt == poison for p in self.group):
            raise error
        return real(self)

    monkeypatch.setattr(Prefill, "step", step)
    # the good request is decoding when the bad one arrives
    good_task = asyncio.ensure_future(gen.generate(ask("fine", max_tokens=40)))
    while not gen.engine.active:
        await asyncio.sleep(0.001)
    bad = (await outcomes(gen, ask("x" * 200)))[0]
    assert isinstance(bad, type(error))
    good = await bounded(good_task)
    assert good.completions[0].generated_tokens == 40
    # the survivor's tokens are those it gets alone
    alone = await bounded(gen.generate(ask("fine", max_tokens=40)))
    assert good.completions[0].text == alone.completions[0].text
    await serves_a_fresh_request(gen)


async def test_a_failed_decode_fails_the_batch_then_the_engine_serves_again(
    gen: TransformersGenerator, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Runner.forward
    calls = {"decode": 0}

    def forward(self: Runner, cache: Any, ids: Any, pos: Any, prefill: bool = False) -> Any:
        if not prefill:
            calls["decode"] += 1
            if calls["decode"] == 3:
                raise RuntimeError("decode broke")
        return real(self, cache, ids, pos, prefill)

    monkeypatch.setattr(Runner, "forward", forward)
    got = await outcomes(gen, ask("one", max_tokens=20), ask("two", max_tokens=20, n=3))
    assert all(isinstance(g, RuntimeError) for g in got)
    assert not gen.engine.active and not gen.engine.waiting and not gen.engine.prefilling
    await serves_a_fresh_request(gen)


async def test_a_failed_sampler_fails_its_rows(
    gen: TransformersGenerator, monkeypatch: pytest.MonkeyPatch
) -> None:
    sampler = gen.engine.sampler
    real = type(sampler).__call__
    state = {"calls": 0}

    def call(self: Any, logits: Any, rows: Any) -> Any:
        state["calls"] += 1
        if state["calls"] == 2:
            raise ValueError("sampler broke")
        return real(self, logits, rows)

    monkeypatch.setattr(type(sampler), "__call__", call)
    got = await outcomes(gen, ask("one", max_tokens=8, n=2))
    assert isinstance(got[0], ValueError)
    await serves_a_fresh_request(gen)


async def test_a_failed_stop_check_fails_its_request_alone(
    gen: TransformersGenerator, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Seq._hit_stop

    def hit_stop(self: Seq, decode: Any) -> bool:
        if "BAD" in self.stop:
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "broken bytes")
        return real(self, decode)

    monkeypatch.setattr(Seq, "_hit_stop", hit_stop)
    bad, good = await outcomes(
        gen, ask("one", stop=("BAD",), n=2), ask("two", stop=("zzz",), max_tokens=16)
    )
    assert isinstance(bad, UnicodeDecodeError)
    assert good.completions[0].generated_tokens == 16
    await serves_a_fresh_request(gen)


async def test_a_failed_result_fails_its_request(
    gen: TransformersGenerator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Any, n_params: int, decode: Any) -> Any:
        raise RuntimeError("result broke")

    monkeypatch.setattr("testtime.generators.sequence.Job.result", broken)
    got = await outcomes(gen, ask("one"))
    assert isinstance(got[0], RuntimeError)
    monkeypatch.undo()
    await serves_a_fresh_request(gen)


async def test_a_dead_worker_fails_everything_and_refuses_new_work(
    gen: TransformersGenerator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def die(self: Engine) -> None:
        raise SystemExit("worker killed")

    monkeypatch.setattr(Engine, "_step", die)
    got = await outcomes(gen, ask("one"), ask("two", n=4))
    assert all(isinstance(g, errors.TesttimeError) and "internal error" in str(g) for g in got)
    with pytest.raises(errors.TesttimeError, match="load it again"):
        await bounded(gen.generate(ask("three")))


async def test_a_caller_that_leaves_stops_its_long_prefill(gen: TransformersGenerator) -> None:
    gen.engine.prefill_chunk = 64
    task = asyncio.ensure_future(gen.generate(ask("y" * 1500, max_tokens=4)))
    while gen.engine.prefills < 2:  # two chunks of about 24 computed
        await asyncio.sleep(0.001)
    task.cancel()
    await asyncio.sleep(0.3)
    assert not gen.engine.prefilling and not gen.engine.active
    assert gen.engine.prefills < 10
    await serves_a_fresh_request(gen)


async def test_decoding_goes_on_between_the_chunks_of_a_long_prefill(
    gen: TransformersGenerator,
) -> None:
    gen.engine.prefill_chunk = 64
    short = asyncio.ensure_future(gen.generate(ask("short", max_tokens=16)))
    while not gen.engine.active:
        await asyncio.sleep(0.001)
    long = asyncio.ensure_future(gen.generate(ask("z" * 1900, max_tokens=2)))  # 30 chunks
    done = await bounded(short)
    assert done.completions[0].generated_tokens == 16
    assert not long.done()  # the short one finished while the long prompt was computing
    await bounded(long)


@pytest.mark.parametrize("chunk", [64, 192])
async def test_a_chunked_prefill_equals_one_forward(gen: TransformersGenerator, chunk: int) -> None:
    text = "the quick brown fox jumps over the lazy dog " * 12
    gen.engine.prefill_chunk = 1 << 16
    whole = await bounded(gen.generate(ask(text, max_tokens=16, logprobs=True)))
    gen.clear_cache()
    gen.engine.prefill_chunk = chunk
    chunked = await bounded(gen.generate(ask(text, max_tokens=16, logprobs=True)))
    assert chunked.completions[0].text == whole.completions[0].text
    assert chunked.completions[0].logprobs == whole.completions[0].logprobs


async def test_a_request_larger_than_the_memory_ceiling_is_refused(
    one_torch_thread: None,
) -> None:
    g = TransformersGenerator(
        tiny_model(), ToyTokenizer(), name="tiny", tune_malloc=False, max_memory="1MB"
    )
    try:
        # 2 layers x 2 kv heads x 8 dims x 2 (K, V) x 4 bytes = 256 bytes per token and row
        assert g.engine.runner.token_bytes == 256
        with pytest.raises(errors.TesttimeError, match="ask for fewer samples"):
            await bounded(g.generate(ask("hello", n=64, max_tokens=1000)))
        out = await bounded(g.generate(ask("hello", n=2, max_tokens=8)))
        assert len(out.completions) == 2
    finally:
        g.engine.close()


async def test_work_beyond_the_ceiling_waits_and_memory_stays_under_it(
    one_torch_thread: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    g = TransformersGenerator(
        tiny_model(), ToyTokenizer(), name="tiny", tune_malloc=False, max_memory="2MB"
    )
    engine = g.engine
    peak = {"bytes": 0, "rows": 0}
    real = Engine._decode_step

    def watched(self: Engine) -> None:
        used = self.cache.nbytes + sum(p.cache.nbytes for p in self.prefilling)
        peak["bytes"] = max(peak["bytes"], used)
        peak["rows"] = max(peak["rows"], len(self.active))
        real(self)

    monkeypatch.setattr(Engine, "_decode_step", watched)
    try:
        # each request alone: 4 rows x ~640 columns x 256 B = 0.66 MB; four need 2.6 MB
        reqs = [ask(f"request {i}", n=4, max_tokens=600) for i in range(4)]
        got = await bounded(asyncio.gather(*(g.generate(r) for r in reqs)))
        assert all(len(o.completions) == 4 for o in got)
        assert peak["bytes"] <= engine.batch_memory
        assert peak["rows"] < 16  # not all four at once: some waited
        assert engine.cache.nbytes == 0  # an idle engine holds no batch memory
    finally:
        engine.close()


async def test_a_deadline_returns_what_was_generated(gen: TransformersGenerator) -> None:
    import time

    gen.engine.eos = frozenset()  # never ends on its own
    soon = time.monotonic() + 0.3
    out = await bounded(gen.generate(ask("go on", max_tokens=1900, deadline=soon)))
    comp = out.completions[0]
    assert comp.finish_reason == "length" and 0 < comp.generated_tokens < 1900
    assert time.monotonic() - soon < 2.0
    with pytest.raises(errors.DeadlineError):
        await bounded(gen.generate(ask("too late", deadline=time.monotonic() - 1)))
    await serves_a_fresh_request(gen)


def test_on_a_gpu_the_ceiling_comes_from_the_devices_free_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The KV caches live on the device: sized from host RAM, an H200 admitted 36% of its
    free memory (bench/gpu.py), and a GPU smaller than RAM would be over-admitted."""
    from testtime.generators import memory

    monkeypatch.delenv(memory.ENV, raising=False)
    gpu = 10 << 30
    assert memory.ceiling(None, "cuda:0", lambda d: gpu) == int(memory.DEVICE_SHARE * gpu)
    assert memory.ceiling(None, "cpu", lambda d: None) == int(memory.SHARE * memory.machine_bytes())
    assert memory.ceiling("2GB", "cuda", lambda d: gpu) == 2 << 30  # the option still wins
    monkeypatch.setenv(memory.ENV, "1GB")
    assert memory.ceiling(None, "cuda", lambda d: gpu) == 1 << 30
    assert memory.device_free_bytes("cpu") is None
