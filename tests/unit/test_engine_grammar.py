"""Constrained decoding in the batching engine: a tiny random Llama (a few kB, built here)
behind the real engine, runner, sampler and xgrammar, with a toy tokenizer of one printable
character per token. A random model left alone writes noise; under a response format every
sample must parse and follow the schema, end with "stop" at the grammar's end, and leave the
unconstrained rows of the batch exactly as they would have been."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("xgrammar")

from testtime.core.errors import ConfigError  # noqa: E402
from testtime.core.structured import response_format  # noqa: E402
from testtime.core.types import Message, Request  # noqa: E402
from testtime.generators import grammar  # noqa: E402
from testtime.generators.transformers import TransformersGenerator  # noqa: E402

VOCAB = 100  # ids 2..96 are the printable characters ' '..'~'; 0, 1, 97, 98 decode to ""
EOS = 99
BOUND_S = 60.0

SCHEMA = {
    "type": "object",
    "properties": {
        "ok": {"type": "boolean"},
        "n": {"type": "integer", "minimum": 0, "maximum": 99},
        "tag": {"enum": ["red", "green", "blue"]},
        "items": {
            "type": "array",
            "items": {"type": "integer", "minimum": 0, "maximum": 9},
            "maxItems": 3,
        },
    },
    "required": ["ok", "n", "tag", "items"],
}
FORMAT = response_format({"type": "json_schema", "json_schema": {"name": "t", "schema": SCHEMA}})


class CharTokenizer:
    """One token per printable ASCII character; no chat template."""

    chat_template = None
    eos_token_id = EOS

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": [2 + ord(c) - 32 for c in text if 32 <= ord(c) < 127]}

    def decode(self, tokens: list[int]) -> str:
        return "".join(chr(30 + t) for t in tokens if 2 <= t <= 96)

    def get_vocab(self) -> dict[str, int]:
        return {}


@pytest.fixture
def gen(one_torch_thread: None) -> Iterator[TransformersGenerator]:
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
    model = transformers.LlamaForCausalLM(cfg).eval()
    g = TransformersGenerator(model, CharTokenizer(), name="tiny", tune_malloc=False)
    yield g
    g.engine.close()


def ask(text: str = "give json", **kw: Any) -> Request:
    return Request((Message("user", text),), **{"max_tokens": 80, "seed": 7, **kw})


def follows(value: Any) -> bool:
    """Whether a parsed value follows SCHEMA (the checks jsonschema would make for it)."""
    return (
        isinstance(value, dict)
        and set(value) == {"ok", "n", "tag", "items"}
        and isinstance(value["ok"], bool)
        and type(value["n"]) is int
        and 0 <= value["n"] <= 99
        and value["tag"] in ("red", "green", "blue")
        and isinstance(value["items"], list)
        and len(value["items"]) <= 3
        and all(type(x) is int and 0 <= x <= 9 for x in value["items"])
    )


async def run(g: TransformersGenerator, *requests: Request) -> list[Any]:
    gathered = asyncio.gather(*(g.generate(r) for r in requests), return_exceptions=True)
    return list(await asyncio.wait_for(gathered, BOUND_S))


async def test_every_sample_parses_and_follows_the_schema(gen: TransformersGenerator) -> None:
    (free,) = await run(gen, ask(n=4, max_tokens=30))
    assert not any(_parses(c.text) for c in free.completions)  # the model alone writes noise
    (out,) = await run(gen, ask(n=16, response_format=FORMAT))
    for c in out.completions:
        assert follows(json.loads(c.text)), c.text
        assert c.finish_reason == "stop"
        assert c.generated_tokens == len(c.text) + 1  # the characters and the closing EOS
    assert len({c.text for c in out.completions}) > 1  # still sampled, not one forced path


async def test_json_object_gives_objects_and_greedy_works(gen: TransformersGenerator) -> None:
    obj = response_format({"type": "json_object"})
    (out,) = await run(gen, ask(n=6, response_format=obj, max_tokens=200))
    (greedy,) = await run(gen, ask(temperature=0.0, response_format=FORMAT))
    for c in out.completions:
        if c.finish_reason == "stop":
            assert isinstance(json.loads(c.text), dict), c.text
        else:  # a random model may write one long string; it is cut, never malformed
            assert c.finish_reason == "length" and c.text.startswith("{")
    assert follows(json.loads(greedy.completions[0].text))


async def test_free_rows_are_untouched_and_seeds_reproduce(gen: TransformersGenerator) -> None:
    free, constrained = ask("free", n=3), ask("json", n=3, response_format=FORMAT)
    (alone_free,) = await run(gen, free)
    (alone_constrained,) = await run(gen, constrained)
    together = await run(gen, free, constrained, ask("other", n=2, response_format=FORMAT))
    assert together[0].completions == alone_free.completions
    assert together[1].completions == alone_constrained.completions


async def test_max_tokens_cuts_with_length(gen: TransformersGenerator) -> None:
    (out,) = await run(gen, ask(n=2, max_tokens=5, response_format=FORMAT))
    assert [c.finish_reason for c in out.completions] == ["length", "length"]
    assert [c.text for c in out.completions] == ['{"ok"', '{"ok"']


async def test_logprobs_describe_the_raw_distribution(gen: TransformersGenerator) -> None:
    (out,) = await run(gen, ask(n=2, response_format=FORMAT, logprobs=True))
    for c in out.completions:
        assert c.logprobs is not None and c.certainty is not None
        assert all(lp < 0 and lp > -1e4 for lp in c.logprobs)  # masked would be -inf or 0
        assert all(0 <= x < 1e4 for x in c.certainty)


async def test_a_broken_grammar_fails_its_request_alone(
    gen: TransformersGenerator, monkeypatch: pytest.MonkeyPatch
) -> None:
    poisoned = response_format(
        {"type": "json_schema", "json_schema": {"schema": {"type": "array"}}}
    )
    bad_grammar = gen.grammars.compile(poisoned)
    real = grammar.matcher

    class Broken:
        def __init__(self, inner: Any) -> None:
            self.inner, self.steps = inner, 0

        def is_terminated(self) -> bool:
            return bool(self.inner.is_terminated())

        def fill_next_token_bitmask(self, bitmask: Any, index: int) -> bool:
            self.steps += 1
            if self.steps > 3:
                raise RuntimeError("matcher broke")
            return bool(self.inner.fill_next_token_bitmask(bitmask, index))

        def accept_token(self, token: int) -> bool:
            return bool(self.inner.accept_token(token))

    def matcher(compiled: Any, eos: frozenset[int], prefix: str = "") -> Any:
        made = real(compiled, eos, prefix)
        return Broken(made) if compiled is bad_grammar else made

    monkeypatch.setattr(grammar, "matcher", matcher)
    bad, good, free = await run(
        gen, ask(n=2, response_format=poisoned), ask(n=2, response_format=FORMAT), ask()
    )
    assert isinstance(bad, RuntimeError) and "matcher broke" in str(bad)
    assert all(follows(json.loads(c.text)) for c in good.completions)
    assert free.completions[0].generated_tokens >= 1
    (again,) = await run(gen, ask(response_format=FORMAT))
    assert follows(json.loads(again.completions[0].text))


async def test_a_schema_xgrammar_cannot_compile_is_a_config_error(
    gen: TransformersGenerator,
) -> None:
    bad = response_format(
        {
            "type": "json_schema",
            "json_schema": {"schema": {"type": "integer", "minimum": 5, "maximum": 1}},
        }
    )
    with pytest.raises(ConfigError, match="minimum greater than maximum"):
        await asyncio.wait_for(gen.generate(ask(response_format=bad)), BOUND_S)
    (out,) = await run(gen, ask(response_format=FORMAT))  # the engine goes on
    assert follows(json.loads(out.completions[0].text))


async def test_a_prefix_is_continued_within_the_grammar(gen: TransformersGenerator) -> None:
    start = '{"ok": true, "n": 4'
    (out,) = await run(gen, ask(n=4, prefix=start, response_format=FORMAT))
    for c in out.completions:
        assert follows(json.loads(start + c.text)), c.text
        assert json.loads(start + c.text)["n"] in (4, *range(40, 50))
    (bad,) = await run(gen, ask(prefix="[1, 2", response_format=FORMAT))
    assert isinstance(bad, ConfigError) and "does not follow the response format" in str(bad)


def test_each_format_is_compiled_once(gen: TransformersGenerator) -> None:
    first = gen.grammars.compile(FORMAT)
    again = response_format({"type": "json_schema", "json_schema": {"name": "t", "schema": SCHEMA}})
    assert gen.grammars.cached(again) is first and gen.grammars.compile(again) is first
    obj = response_format({"type": "json_object"})
    assert gen.grammars.compile(obj) is not first


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
