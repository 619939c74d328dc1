"""The OpenAI contract of `testtime serve` as a real process over loopback, driven by the
official `openai` client and by raw HTTP (issue 17: the protocol points): `GET
/v1/models/{id}`, `POST /v1/completions` (text, texts, token ids; echo, logprobs, n, stop,
seed, streaming with include_usage; a strategy), and the smaller differences (top_logprobs
N exactly, stream_options without stream, usage in a stream only when asked, a role on every
choice's first chunk, any int64 seed, a prompt longer than the context). On the fake model,
and on the embedded model (SmolLM2-135M) where the point depends on a real tokenizer and
distribution. Every request is short: max_tokens is small."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from testtime.server.launch import Launched

pytestmark = pytest.mark.integration

TIMEOUT = 120
MODEL = "smollm2-135m"
Q = [{"role": "user", "content": "What is 3 + 4?"}]


@pytest.fixture(scope="module")
def fake() -> Iterator[Launched]:
    with Launched.cli("--model", "fake", "--log-level", "warning") as s:
        yield s


@pytest.fixture(scope="module")
def real() -> Iterator[Launched]:
    with Launched.cli("--model", MODEL, "--log-level", "warning", ready_s=300) as s:
        yield s


def post(server: Launched, path: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{server.base_url}{path}", json=body, timeout=TIMEOUT)


def events(text: str) -> list[Any]:
    out: list[Any] = []
    for line in text.splitlines():
        if line.startswith("data: "):
            out.append(line[6:] if line[6:] == "[DONE]" else json.loads(line[6:]))
    return out


# -- models --------------------------------------------------------------------------------
def test_models_retrieve_finds_the_served_model_and_strategies(
    fake: Launched, openai_client: Callable[..., Any]
) -> None:
    import openai as oa

    client = openai_client(fake.base_url, TIMEOUT)
    assert client.models.retrieve("fake").id == "fake"
    voted = client.models.retrieve("self_consistency:n=4@fake")
    assert voted.id == "self_consistency:n=4@fake"
    assert voted.model_extra["testtime"]["params"]["n"] == 4  # type: ignore[index]
    with pytest.raises(oa.NotFoundError):
        client.models.retrieve("nope")


# -- completions on the fake ---------------------------------------------------------------
def test_the_client_completes_texts_with_n_stop_seed_and_echo(
    fake: Launched, openai_client: Callable[..., Any]
) -> None:
    client = openai_client(fake.base_url, TIMEOUT)
    got = client.completions.create(
        model="fake", prompt=["2 + 2 =", "3 + 4 ="], n=2, max_tokens=32, seed=-5, stop=["\n\n"]
    )
    assert got.object == "text_completion" and [c.index for c in got.choices] == [0, 1, 2, 3]
    assert all(c.finish_reason == "stop" for c in got.choices)
    again = client.completions.create(
        model="fake", prompt=["2 + 2 =", "3 + 4 ="], n=2, max_tokens=32, seed=-5, stop=["\n\n"]
    )
    assert [c.text for c in got.choices] == [c.text for c in again.choices]
    assert got.usage is not None and got.usage.completion_tokens > 0
    echoed = client.completions.create(model="fake", prompt="1 + 1 =", echo=True, max_tokens=3)
    assert echoed.choices[0].text.startswith("1 + 1 =")


def test_the_client_gets_legacy_logprobs_with_exactly_n_alternatives(
    fake: Launched, openai_client: Callable[..., Any]
) -> None:
    got = openai_client(fake.base_url, TIMEOUT).completions.create(
        model="fake", prompt="2 + 2 =", logprobs=5, max_tokens=6, temperature=0
    )
    lp = got.choices[0].logprobs
    assert lp is not None and lp.tokens and "".join(lp.tokens) == got.choices[0].text
    assert lp.top_logprobs is not None and all(len(t) == 5 for t in lp.top_logprobs)
    assert lp.text_offset == [sum(map(len, lp.tokens[:i])) for i in range(len(lp.tokens))]


def test_a_completions_stream_through_the_client_with_include_usage(
    fake: Launched, openai_client: Callable[..., Any]
) -> None:
    stream = openai_client(fake.base_url, TIMEOUT).completions.create(
        model="fake",
        prompt="2 + 2 =",
        n=2,
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    texts = [c.choices[0] for c in chunks if c.choices]
    assert sorted(t.index for t in texts) == [0, 1] and all(t.text for t in texts)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert all(c.usage is None for c in chunks[:-1])


def test_a_strategy_answers_a_completion(fake: Launched, openai_client: Callable[..., Any]) -> None:
    got = openai_client(fake.base_url, TIMEOUT).completions.create(
        model="self_consistency:n=5@fake", prompt="6 x 7 =", max_tokens=64
    )
    assert got.choices[0].text.endswith("Answer: 42")
    assert got.model_extra["testtime"]["answer"] == "42"  # type: ignore[index]


# -- smaller differences on the fake -------------------------------------------------------
def test_stream_options_without_stream_is_a_400_on_both_endpoints(fake: Launched) -> None:
    opts = {"include_usage": True}
    chat = post(fake, "/chat/completions", model="fake", messages=Q, stream_options=opts)
    text = post(fake, "/completions", model="fake", prompt="hi", stream_options=opts)
    for r in (chat, text):
        assert r.status_code == 400 and r.json()["error"]["param"] == "stream_options"


def test_a_chat_stream_gives_every_choice_a_role_and_usage_only_when_asked(
    fake: Launched,
    openai_client: Callable[..., Any],
) -> None:
    bare = events(post(fake, "/chat/completions", model="fake", messages=Q, n=3, stream=True).text)
    assert not any("usage" in c for c in bare[:-1])
    first: dict[int, Any] = {}
    for chunk in bare[:-1]:
        for choice in chunk["choices"]:
            first.setdefault(choice["index"], choice["delta"])
    assert sorted(first) == [0, 1, 2]
    assert all(d.get("role") == "assistant" for d in first.values())
    stream = openai_client(fake.base_url, TIMEOUT).chat.completions.create(
        model="fake", messages=Q, n=2, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].choices == []


def test_any_int64_seed_is_accepted_by_the_client(
    fake: Launched, openai_client: Callable[..., Any]
) -> None:
    client = openai_client(fake.base_url, TIMEOUT)
    for seed in (-1, -(1 << 63), (1 << 63) - 1):
        got = client.chat.completions.create(model="fake", messages=Q, seed=seed, max_tokens=4)
        assert got.choices[0].message.content


def test_chat_logprobs_name_every_token_with_exactly_top_logprobs(
    fake: Launched, openai_client: Callable[..., Any]
) -> None:
    got = openai_client(fake.base_url, TIMEOUT).chat.completions.create(
        model="fake", messages=Q, logprobs=True, top_logprobs=5, max_tokens=6
    )
    content = got.choices[0].logprobs.content  # type: ignore[union-attr]
    assert "".join(t.token for t in content) == got.choices[0].message.content
    assert all(len(t.top_logprobs) == 5 for t in content)


def test_image_parts_are_a_400_from_a_text_only_model_and_cross_a_proxy_as_sent(
    fake: Launched,
    openai_client: Callable[..., Any],
) -> None:
    import openai as oa

    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    parts = [{"type": "text", "text": "What is this?"}, image]
    asked = [{"role": "user", "content": parts}]
    with pytest.raises(oa.BadRequestError) as direct:
        client = openai_client(fake.base_url, TIMEOUT)
        client.chat.completions.create(model="fake", messages=asked)  # type: ignore[arg-type]
    said = "messages[0].content[1] is a 'image_url' part, but model 'fake' reads text only"
    assert said in str(direct.value)
    # a proxy (an HTTP backend: it takes parts) sends them on as they came; the fake says no
    front = Launched.cli("--upstream", fake.base_url, "--upstream-model", "fake",
                         "--log-level", "warning")  # fmt: skip
    with front:
        relayed = post(front, "/chat/completions", model="fake", messages=asked)
    assert relayed.status_code == 400 and said in relayed.json()["error"]["message"]


# -- on the embedded model -----------------------------------------------------------------
def test_top_logprobs_are_exactly_n_on_the_embedded_model(
    real: Launched, openai_client: Callable[..., Any]
) -> None:
    client = openai_client(real.base_url, TIMEOUT)
    chat = client.chat.completions.create(
        model=MODEL, messages=Q, logprobs=True, top_logprobs=20, max_tokens=8, seed=1
    )
    content = chat.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content and all(len(t.top_logprobs) == 20 for t in content)
    assert all(t.token for t in content)
    text = client.completions.create(
        model=MODEL, prompt="The capital of France is", logprobs=5, max_tokens=8, seed=1
    )
    lp = text.choices[0].logprobs
    assert lp is not None and lp.top_logprobs and all(len(t) == 5 for t in lp.top_logprobs)
    assert "".join(lp.tokens or []).startswith(text.choices[0].text[:1])


def test_completions_continue_raw_text_and_token_ids_on_the_embedded_model(
    real: Launched,
    openai_client: Callable[..., Any],
) -> None:
    from transformers import AutoTokenizer

    from testtime.generators.models import resolve

    tok = AutoTokenizer.from_pretrained(str(resolve(MODEL)), local_files_only=True)
    prompt = "The capital of France is"
    ids = tok(prompt)["input_ids"]
    client = openai_client(real.base_url, TIMEOUT)
    by_text = client.completions.create(model=MODEL, prompt=prompt, max_tokens=6, temperature=0)
    by_ids = client.completions.create(model=MODEL, prompt=ids, max_tokens=6, temperature=0)
    assert by_text.choices[0].text == by_ids.choices[0].text  # the same tokens, undecoded
    assert by_text.usage is not None and by_text.usage.prompt_tokens == len(ids)  # no template
    echoed = client.completions.create(
        model=MODEL, prompt=prompt, echo=True, max_tokens=6, temperature=0
    )
    assert echoed.choices[0].text == prompt + by_text.choices[0].text
    both = client.completions.create(model=MODEL, prompt=[ids, ids[:3]], max_tokens=4)
    assert len(both.choices) == 2
    outside = post(real, "/completions", model=MODEL, prompt=[10**9])
    assert outside.status_code == 400 and "vocabulary" in outside.json()["error"]["message"]


def test_a_prompt_longer_than_the_context_is_a_400_naming_both_numbers(real: Launched) -> None:
    long = "word " * 9000  # SmolLM2-135M reads 8192 tokens
    for r in (
        post(real, "/chat/completions", model=MODEL, messages=[{"role": "user", "content": long}]),
        post(real, "/completions", model=MODEL, prompt=long),
    ):
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["code"] == "context_length_exceeded" and "8192" in error["message"]
        assert any(str(n) in error["message"] for n in range(9000, 9100))
