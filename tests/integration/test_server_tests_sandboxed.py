"""Requests that bring their own tests, through `testtime serve --run-tests` as a real process
over loopback, on a fake generator scripted with code (one right program among wrong ones),
the tests run in the real bubblewrap sandbox.

Where bwrap cannot run, these tests FAIL with the install hint (never a silent skip); set
TESTTIME_NO_SANDBOX_TESTS=1 only on a machine that cannot have it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testtime.core import errors
from testtime.server.launch import Launched

pytestmark = pytest.mark.sandbox  # the real jail must work (tests/conftest.py)

TIMEOUT = 60
ASK = "Write add(a, b)"  # every prompt containing this gets the scripted replies, in turn
WRONG = "Here it is:\n```python\ndef add(a, b):\n    return a - b\n```"  # 0 of 2 tests
NEAR = "Here it is:\n```python\ndef add(a, b):\n    return abs(a + b)\n```"  # 1 of 2
RIGHT = "Here it is:\n```python\ndef add(a, b):\n    return a + b\n```"  # 2 of 2
TESTS = ["assert add(1, 2) == 3", "assert add(-2, 1) == -1"]
KEYS = {
    "sk-main": {"name": "main"},
    "sk-tight": {"name": "tight", "cap_sandbox_seconds": 0.001},  # spent by one request
}
SERVER = """
import json, sys
from testtime.generators.fake import FakeGenerator
from testtime.server import Settings, serve
from testtime.server.limits import Keys
port, scripts, keys = sys.argv[1:4]
settings = Settings("fake", run_tests=True, keys=Keys.parse(json.loads(keys)))
serve(settings, FakeGenerator(json.loads(scripts)), port=int(port), log_level="warning")
"""


@pytest.fixture(scope="module")
def server() -> Iterator[Launched]:
    scripts = {ASK: [WRONG, NEAR, RIGHT], "What is 3 + 4?": ["Answer: 7"]}
    with Launched.python(SERVER, json.dumps(scripts), json.dumps(KEYS)) as s:
        yield s


def chat(s: Launched, prompt: str, key: str = "sk-main", **testtime: Any) -> httpx.Response:
    body: dict[str, Any] = {"model": "fake", "messages": [{"role": "user", "content": prompt}]}
    if testtime:
        body["testtime"] = testtime
    headers = {"authorization": f"Bearer {key}"}
    return httpx.post(f"{s.base_url}/chat/completions", json=body, headers=headers, timeout=TIMEOUT)


def test_the_program_passing_the_tests_is_chosen_and_its_seconds_are_charged(
    server: Launched,
    openai_client: Callable[..., Any],
) -> None:
    client = openai_client(server.base_url, TIMEOUT, api_key="sk-main")
    reply = client.chat.completions.create(
        model="fake",
        messages=[{"role": "user", "content": f"{ASK}, which adds."}],
        extra_body={"testtime": {"strategy": "best_of_n", "params": {"n": 3},
                                 "tests": TESTS, "entry_point": "add"}},
    )  # fmt: skip
    assert reply.choices[0].message.content == RIGHT  # the last of the three it sampled
    info = reply.model_extra["testtime"]  # type: ignore[index]
    assert info["answer"] == "def add(a, b):\n    return a + b"
    assert info["verifier"]["name"] == "unit_tests" and info["candidates"] == 3
    ledger = reply.usage.model_extra["testtime"]  # type: ignore[union-attr,index]
    assert ledger["sandbox_seconds"] > 0


def test_a_humaneval_style_check_script_selects_too(server: Launched) -> None:
    script = (
        "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-2, 1) == -1"
    )
    r = chat(server, f"{ASK}, scripted.", strategy="best_of_n", params={"n": 3},
             tests=script, entry_point="add")  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == RIGHT


def test_tests_that_cannot_be_read_are_a_400_naming_the_test(server: Launched) -> None:
    r = chat(server, f"{ASK}.", strategy="best_of_n", tests=[TESTS[0], "assert add(1,"],
             entry_point="add")  # fmt: skip
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == "testtime.tests" and "test 1 is not valid Python" in error["message"]


def test_a_keys_sandbox_seconds_cap_refuses_its_next_request_with_tests(server: Launched) -> None:
    asked: dict[str, Any] = {
        "strategy": "best_of_n", "params": {"n": 3}, "tests": TESTS, "entry_point": "add"
    }  # fmt: skip
    first = chat(server, f"{ASK} for tight.", key="sk-tight", **asked)
    assert first.status_code == 200, first.text  # nothing spent yet: it runs, and spends
    second = chat(server, f"{ASK} for tight, again.", key="sk-tight", **asked)
    assert second.status_code == 429, second.text
    error = second.json()["error"]
    assert error["code"] == "insufficient_quota" and "sandbox seconds" in error["message"]
    assert "'tight'" in error["message"]
    plain = chat(server, "What is 3 + 4?", key="sk-tight")  # the cap is on running tests only
    assert plain.status_code == 200, plain.text
    other = chat(server, f"{ASK} for main.", **asked)  # another key is not touched
    assert other.status_code == 200, other.text


def test_a_stream_with_tests_ends_with_the_chosen_program_and_its_usage(server: Launched) -> None:
    body = {
        "model": "fake",
        "messages": [{"role": "user", "content": f"{ASK}, streamed."}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "testtime": {"strategy": "best_of_n", "params": {"n": 3}, "tests": TESTS,
                     "entry_point": "add"},
    }  # fmt: skip
    r = httpx.post(
        f"{server.base_url}/chat/completions",
        json=body,
        headers={"authorization": "Bearer sk-main"},
        timeout=TIMEOUT,
    )
    assert r.status_code == 200 and r.text.rstrip().endswith("data: [DONE]"), r.text
    chunks = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == RIGHT
    assert chunks[-1]["usage"]["testtime"]["sandbox_seconds"] > 0


def test_a_server_without_the_flag_refuses_tests_naming_the_flag() -> None:
    with Launched.cli("--model", "fake", "--log-level", "warning") as s:
        r = chat(s, "What is 3 + 4?", strategy="best_of_n", tests=TESTS, entry_point="add")
    assert r.status_code == 400, r.text
    assert "--run-tests" in r.json()["error"]["message"]


def test_the_flag_without_a_sandbox_stops_the_server_at_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on it; the server is python -m
    with pytest.raises(errors.TesttimeError, match="exited at start") as info:
        Launched.cli("--model", "fake", "--run-tests").start()
    assert "apt-get install bubblewrap" in str(info.value)
