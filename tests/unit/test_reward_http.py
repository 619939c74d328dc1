"""A reward model served over HTTP, against a fake vLLM Pooling API on loopback (uvicorn in a
thread): the request vLLM accepts, its answer shapes, usage as cost, and every failure as
one line naming the URL."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from testtime.core.errors import ConfigError
from testtime.core.types import Candidate, Problem
from testtime.generators.fake import FakeGenerator
from testtime.generators.http_wire import ServerError
from testtime.strategies.base import STRATEGIES
from testtime.strategies.run import build_verifier, solve
from testtime.verifiers.base import traits_of

P = Problem.from_prompt("What is 3 + 4?", id="q", system="Answer briefly.")
TEXTS = ["3 + 4 = 7. Answer: 7", "Answer: 8", "7 and 7 make 14. Answer: 7"]
KEY = "sekret-123"


def reward(text: str) -> float:
    """The fake model's reward: each 7 is worth 1, each 8 costs 0.5."""
    return text.count("7") - 0.5 * text.count("8")


def fake_vllm(seen: list[dict[str, Any]]) -> FastAPI:
    """vLLM's /pooling as a reward model answers it; the model name picks a behaviour."""
    app = FastAPI()

    @app.post("/pooling")
    async def pooling(request: Request) -> Response:
        body = await request.json()
        seen.append({"body": body, "auth": request.headers.get("authorization")})
        model, msgs = body["model"], body["messages"]
        text = msgs[-1]["content"]
        r = reward(text)
        tokens = sum(len(m["content"].split()) for m in msgs)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0}
        data: Any = [r]
        if model == "keyed" and request.headers.get("authorization") != f"Bearer {KEY}":
            return JSONResponse({"error": {"message": "Unauthorized", "code": 401}}, 401)
        if model == "missing":
            message = f"The model `{model}` does not exist."
            return JSONResponse({"error": {"message": message, "code": 404}}, 404)
        if model == "slow":
            await asyncio.sleep(3)
        if model == "tokens":  # per-token rows (token_classify): the last one is the reward
            data = [[0.0], [-1.0], [r]]
        if model == "labels":
            data = [-r, 0.0, r]
        if model == "nousage":
            usage = None  # type: ignore[assignment]
        if model == "text":
            return PlainTextResponse("Internal Server Error")
        if model == "shape":
            return JSONResponse({"object": "list", "data": [{"index": 0, "data": "oops"}]})
        if model == "boom":
            return JSONResponse({"error": {"message": "CUDA out of memory", "code": 500}}, 500)
        answer = {"object": "list", "data": [{"index": 0, "object": "pooling", "data": data}]}
        return JSONResponse({**answer, **({"usage": usage} if usage else {})})

    return app


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(fake_vllm(seen), log_level="error", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    end = time.monotonic() + 10
    while not server.started and time.monotonic() < end:
        time.sleep(0.02)
    assert server.started
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", seen
    server.should_exit = True
    thread.join(10)


def rm(url: str, model: str = "rm", **params: Any) -> Any:
    return build_verifier("reward_http", {"url": url, "model": model, **params})


def score(verifier: Any, texts: list[str] = TEXTS) -> Any:
    return asyncio.run(verifier.score(P, [Candidate(t) for t in texts]))


def test_each_candidate_is_one_pooling_request_in_the_chat_form(served) -> None:
    url, seen = served
    seen.clear()
    got = score(rm(url + "/v1/", n_params=1000, max_tokens=64))  # the OpenAI root works too
    assert got.values == tuple(reward(t) for t in TEXTS)
    bodies = sorted((s["body"] for s in seen), key=lambda b: b["messages"][-1]["content"])
    assert len(bodies) == 3 and all(s["auth"] is None for s in seen)
    first = bodies[0]
    assert first["model"] == "rm" and first["task"] == "classify"
    assert first["use_activation"] is False  # raw logits, not vLLM's sigmoid
    assert first["truncate_prompt_tokens"] == 64 and first["truncation_side"] == "left"
    assert first["messages"][:-1] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What is 3 + 4?"},
    ]
    assert [b["messages"][-1] for b in bodies] == [
        {"role": "assistant", "content": t} for t in sorted(TEXTS)
    ]
    tokens = sum(sum(len(m["content"].split()) for m in b["messages"]) for b in bodies)
    assert got.cost.verifier_tokens == tokens and got.cost.verifier_calls == 3
    assert got.cost.flops == 2 * 1000 * tokens
    assert got.cost.generated_tokens == 0 and got.cost.samples == 0


def test_without_n_params_or_usage_no_flops_are_charged(served) -> None:
    url, _ = served
    plain = score(rm(url))
    assert plain.cost.flops == 0 and plain.cost.verifier_tokens > 0
    blind = score(rm(url, "nousage"))
    assert blind.values == tuple(reward(t) for t in TEXTS)
    assert (blind.cost.verifier_tokens, blind.cost.flops, blind.cost.verifier_calls) == (0, 0, 3)
    assert rm(url).flops_per_candidate(P) == 0
    assert rm(url, n_params=10, max_tokens=8).flops_per_candidate(P) == 2 * 10 * 8


def test_per_token_rows_and_several_labels(served) -> None:
    url, _ = served
    assert score(rm(url, "tokens")).values == tuple(reward(t) for t in TEXTS)
    with pytest.raises(ServerError, match=r"3 values per candidate.*label=INDEX \(0 to 2\)"):
        score(rm(url, "labels"))
    with pytest.raises(ServerError, match="label=5 is not among the 3"):
        score(rm(url, "labels", label=5))
    assert score(rm(url, "labels", label=2)).values == tuple(reward(t) for t in TEXTS)
    lp = score(rm(url, "labels", label=2, score="logprob")).values
    for value, text in zip(lp, TEXTS, strict=True):
        r = reward(text)
        assert value == pytest.approx(r - math.log(math.exp(-r) + 1 + math.exp(r)))
    one = score(rm(url, score="logprob")).values
    assert one == pytest.approx([-math.log1p(math.exp(-reward(t))) for t in TEXTS])


def test_the_api_key_comes_from_the_named_variable_and_never_shows(served, monkeypatch) -> None:
    url, seen = served
    with pytest.raises(ServerError, match=r"401.*\$RM_KEY is not set") as info:
        score(rm(url, "keyed", api_key_env="RM_KEY"), TEXTS[:1])  # no straggling requests
    assert info.value.status == 401
    monkeypatch.setenv("RM_KEY", KEY)
    seen.clear()
    assert score(rm(url, "keyed", api_key_env="RM_KEY")).values[0] == reward(TEXTS[0])
    assert {s["auth"] for s in seen} == {f"Bearer {KEY}"}
    assert all(KEY not in json.dumps(s["body"]) for s in seen)
    monkeypatch.setenv("RM_KEY", "wrong-" + KEY)
    with pytest.raises(ServerError) as info:
        score(rm(url, "keyed", api_key_env="RM_KEY"))
    assert KEY not in str(info.value) and "refused the API key" in str(info.value)


@pytest.mark.parametrize(
    ("model", "where", "message"),
    [
        ("missing", "", r"404: The model `missing` does not exist.*serves the model 'missing'"),
        ("rm", "/nothere", r"/nothere/pooling.*404: Not Found.*url= is the server's root"),
        ("text", "", r"not JSON \('Internal Server Error'\)"),
        ("shape", "", r"without numbers in data\[0\]\.data.*--runner pooling"),
        ("boom", "", r"500: CUDA out of memory.*overloaded or down"),
    ],
)
def test_bad_answers_are_one_line_naming_the_url(served, model, where, message) -> None:
    url, _ = served
    with pytest.raises(ServerError, match=message) as info:
        score(rm(url + where, model))
    assert "\n" not in str(info.value) and f"{url}{where}/pooling" in str(info.value)


def test_a_refused_connection_and_a_timeout_say_what_to_check(served) -> None:
    url, _ = served
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    with pytest.raises(ServerError, match=r"could not reach.*127\.0\.0\.1:\d+/pooling.*running"):
        score(rm(f"http://127.0.0.1:{port}"))
    started = time.monotonic()
    with pytest.raises(ServerError, match=r"did not answer within 0\.3 s.*raise timeout="):
        score(rm(url, "slow", timeout=0.3))
    assert time.monotonic() - started < 2.5  # every request stopped at the timeout


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"model": "m"}, "needs url=http"),
        ({"url": "127.0.0.1:8000", "model": "m"}, "needs url=http"),
        ({"url": "http://h:1"}, "needs model=NAME"),
        ({"url": "http://h:1", "model": "m", "timeout": 0}, "'timeout' must be > 0"),
        ({"url": "http://h:1", "model": "m", "n_params": 10}, "set max_tokens"),
        ({"url": "http://h:1", "model": "m", "task": "embed"}, "'task' must be one of"),
        ({"url": "http://h:1", "model": "m", "label": -1}, "'label' must be >= 0"),
    ],
)
def test_bad_parameters_are_refused(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_verifier("reward_http", params)


def test_best_of_n_and_weighted_majority_use_it_unchanged(served) -> None:
    url, _ = served
    gen = FakeGenerator({P.prompt: {t: 1.0 for t in TEXTS}})
    best = asyncio.run(solve(P, STRATEGIES.spec("best_of_n", {"n": 6}), gen, verifier=rm(url)))
    assert best.text == TEXTS[2]  # three 7s: the highest reward
    assert best.cost.verifier_tokens > 0
    vote = asyncio.run(
        solve(P, STRATEGIES.spec("weighted_majority", {"n": 6}), gen, verifier=rm(url))
    )
    expected: dict[str, float] = {}
    for c in vote.candidates:
        if c.answer is not None:
            expected[c.answer] = expected.get(c.answer, 0.0) + math.exp(reward(c.text))
    assert vote.trace is not None and vote.trace["votes"] == pytest.approx(expected)
    assert vote.answer == "7"
    json.dumps(vote.to_dict())


def test_a_served_request_cannot_name_it() -> None:
    from testtime.server.errors import ApiError
    from testtime.server.plan import verifier_spec
    from testtime.server.settings import Settings

    assert traits_of("reward_http").calls_url and traits_of("reward_http").weight == "exp"
    allowed = Settings("m", allow_file_verifiers=True)
    with pytest.raises(ApiError, match="to a URL named in its parameters") as info:
        verifier_spec("reward_http", allowed)
    assert info.value.param == "testtime.verifier"
    with pytest.raises(ApiError) as gold:
        verifier_spec("oracle", allowed)
    assert "reward_http" not in gold.value.message  # not listed as usable either
