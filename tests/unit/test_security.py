"""Attacks on the server and the CLI (issue 13, section 3), each refused: request text used as
a format string, files named in requests, concurrent requests on a capped key, sizes that
grow without bound. reasoning-gym scorers: tests/unit/test_reasoning_gym_safety.py."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testtime.core.errors import ConfigError
from testtime.generators.fake import FakeGenerator
from testtime.server import Settings, create_app
from testtime.strategies.base import STRATEGIES

USER = [{"role": "user", "content": "What is 3 + 4?"}]


def client(gen: FakeGenerator | None = None, **settings: Any) -> httpx.AsyncClient:
    app = create_app(Settings("fake", **settings), gen or FakeGenerator())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def chat(c: httpx.AsyncClient, headers: dict[str, str] | None = None, **body: Any) -> Any:
    return await c.post(
        "/v1/chat/completions",
        headers=headers or {},
        json={"model": "fake", "messages": USER, **body},
    )


# -- request text is never a format string --------------------------------------------------
FORMAT_ATTACKS = [
    ("retry", "{score:>30000000}"),  # a 30 MB pad (the 300 MB took 52 s and 2 GB)
    ("retry", "{score.__class__.__mro__}"),
    ("retry", "{rejected[0]}"),
    ("retry", "{score!r}"),
    ("retry", "{0}"),
    ("rejected", "{step:>30000000}"),
    ("rejected", "{step.__class__}"),
    ("retry", "{rejected}{rejected}"),  # each field once: output stays linear
]


@pytest.mark.parametrize(("param", "template"), FORMAT_ATTACKS)
def test_refine_templates_take_named_fields_only(param: str, template: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=f"parameter '{param}' may use") as refused:
        STRATEGIES.spec("refine", {param: template})
    assert time.perf_counter() - started < 0.5  # refused, not padded first
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("template", ["{score.__class__}", "{score:>30000000}"])
async def test_a_format_string_in_a_request_is_a_quick_400(template: str) -> None:
    started = time.perf_counter()
    async with client() as c:
        r = await chat(
            c,
            testtime={
                "strategy": "refine",
                "params": {"n": 2, "sequential": 2, "retry": template},
                "verifier": "self_certainty",
            },
        )
    assert r.status_code == 400, r.text[:300]
    assert "may use {score}, {rejected}" in r.json()["error"]["message"]
    assert time.perf_counter() - started < 2


def test_fill_substitutes_fields_once_and_keeps_values_literal() -> None:
    from testtime.core.templates import fill

    values = {"score": "0.25", "rejected": "{score} {{"}
    assert fill("a {score}{rejected} {{x}}", values) == "a 0.25{score} {{ {x}"
    from testtime.strategies.refine import LEGACY

    assert fill("{score:.2f}", {"score": "0.50"}, aliases=LEGACY) == "0.50"  # old default's
    for bad in ("{", "}", "{x}", "{score}}"):
        with pytest.raises(ConfigError):
            fill(bad, values)


def test_refine_templates_are_bounded_in_length() -> None:
    with pytest.raises(ConfigError, match="at most 4000"):
        STRATEGIES.spec("refine", {"rejected": "x" * 4001})
    with pytest.raises(ConfigError, match="at most 4000"):
        STRATEGIES.spec("revise", {"retry": "x" * 4001})


# -- every size has a maximum -------------------------------------------------------------
def _size_fields() -> list[tuple[Any, str, str]]:
    import dataclasses
    import typing

    import testtime.tasks
    import testtime.verifiers  # noqa: F401
    from testtime.core.registry import NOT_SIZES
    from testtime.tasks.base import TASKS
    from testtime.verifiers.base import VERIFIERS

    out = []
    for registry in (STRATEGIES, VERIFIERS, TASKS):
        for name in registry.names():
            params = registry.get(name).params
            hints = typing.get_type_hints(params)
            for f in dataclasses.fields(params):
                is_int = int in (hints[f.name], *typing.get_args(hints[f.name]))
                if is_int and f.name not in NOT_SIZES:
                    out.append((registry, name, f.name))
    return out


@pytest.mark.parametrize(
    ("registry", "name", "field"),
    _size_fields(),
    ids=lambda x: x if isinstance(x, str) else x.kind,
)
def test_every_size_parameter_has_a_maximum(registry: Any, name: str, field: str) -> None:
    from testtime.core.registry import MAX_PARAM

    with pytest.raises(ConfigError, match=rf"'{field}' = {MAX_PARAM + 1} is above the max") as e:
        registry.spec(name, {field: MAX_PARAM + 1})
    assert "TESTTIME_MAX_PARAM" in str(e.value) and "\n" not in str(e.value)


def test_the_maximum_can_be_raised_for_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTTIME_MAX_PARAM", "200000")
    assert STRATEGIES.spec("self_consistency", {"n": 100_000}).params.n == 100_000  # type: ignore[attr-defined]
    monkeypatch.setenv("TESTTIME_MAX_PARAM", "lots")
    with pytest.raises(ConfigError, match="TESTTIME_MAX_PARAM='lots' must be a positive"):
        STRATEGIES.spec("self_consistency", {"n": 8})


def test_a_huge_n_on_the_cli_is_a_quick_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    from testtime.cli import main

    argv = ["testtime", "run", "What is 3 + 4?", "--model", "fake", "-s", "self_consistency"]
    monkeypatch.setattr(sys, "argv", [*argv, "-p", "n=100000000"])
    started = time.perf_counter()
    with pytest.raises(SystemExit) as info:
        main()
    err = capsys.readouterr().err
    assert info.value.code == 2 and time.perf_counter() - started < 5
    assert "'n' = 100000000 is above the maximum of 65536" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "testtime",
    [
        {"strategy": "self_consistency", "params": {"n": 5000}},
        {"strategy": "budget_forcing", "params": {"thinking_tokens": 100_000}},
        {
            "strategy": "single",
            "verifier": {"name": "judge", "params": {"max_solution_tokens": 10**6}},
        },
    ],
)
async def test_the_server_caps_every_size_parameter(testtime: dict[str, Any]) -> None:
    async with client(max_param=4096) as c:
        r = await chat(c, testtime=testtime)
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert "above the maximum of 4096" in message and "--max-param" in message


# -- a request names a file only inside a directory the operator allowed --------------------
def _policy(path: Any) -> Any:
    from testtime.strategies.policy import Choice, Pilot, Policy, save_policy

    sc = {"name": "self_consistency", "params": {"n": 4, "temperature": 0.8, "top_p": 1.0}}
    policy = Policy(
        model="fake", fingerprint="f", n_params=1_000_000, task={}, run="r", trained_on=(),
        max_tokens=256, axis="samples",
        pilot=Pilot(samples=2, temperature=0.8, top_p=1.0, feature="vote"),
        edges=(), frontiers=((Choice("sc4", sc, None, 4, 4.0, 0.9),),),
    )  # fmt: skip
    save_policy(policy, path)
    return path


def _co(policy: str) -> dict[str, Any]:
    return {"strategy": "compute_optimal", "params": {"policy": policy}, "budget": 8}


async def _policy_errors(policies: list[str], **settings: Any) -> list[tuple[int, str]]:
    async with client(**settings) as c:
        out = []
        for policy in policies:
            r = await chat(c, testtime=_co(policy))
            out.append((r.status_code, r.text))
    return out


def _outside(tmp_path: Any) -> tuple[Any, Any]:
    allowed, outside = tmp_path / "policies", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    (outside / "secret.json").write_text('{"version": 1, "secret_key_abc": "hunter2"}')
    _policy(outside / "policy.json")
    (allowed / "link.json").symlink_to(outside / "secret.json")
    return allowed, outside


async def test_without_allowed_dirs_a_request_names_no_file(tmp_path: Any) -> None:
    _, outside = _outside(tmp_path)
    paths = ["/etc/passwd", "/no/such/file", str(outside / "secret.json"), "/dev/zero"]
    answers = await _policy_errors(paths)
    assert {status for status, _ in answers} == {400}
    assert len({text for _, text in answers}) == 1  # existing and missing files read alike
    assert "--allow-policy-dir" in answers[0][1] and "hunter2" not in answers[0][1]


async def test_a_path_outside_the_allowed_dirs_is_refused_alike_whether_it_exists(
    tmp_path: Any,
) -> None:
    allowed, outside = _outside(tmp_path)
    paths = [
        str(outside / "secret.json"),  # exists, JSON, keys to leak
        str(outside / "policy.json"),  # a valid policy, but not in an allowed dir
        str(outside / "none.json"),  # does not exist
        "../outside/secret.json",  # '..' out of the allowed dir
        str(allowed / ".." / "outside" / "secret.json"),
        "link.json",  # a symlink inside, pointing out
        "/etc/passwd",
        "/dev/zero",
    ]
    answers = await _policy_errors(paths, policy_dirs=(allowed,))
    assert {status for status, _ in answers} == {400}
    assert len({text for _, text in answers}) == 1, answers
    assert "inside this server's policy directories" in answers[0][1]
    assert "secret_key_abc" not in answers[0][1]


async def test_a_policy_inside_an_allowed_dir_runs(tmp_path: Any) -> None:
    allowed = tmp_path / "policies"
    allowed.mkdir()
    _policy(allowed / "p.json")
    async with client(policy_dirs=(allowed,)) as c:
        by_name = await chat(c, testtime=_co("p.json"))
        by_path = await chat(c, testtime=_co(str(allowed / "p.json")))
    for r in (by_name, by_path):
        assert r.status_code == 200, r.text[:300]
        assert r.json()["testtime"]["strategy"]["name"] == "compute_optimal"


async def test_a_damaged_policy_never_shows_the_files_content(tmp_path: Any) -> None:
    allowed = tmp_path / "policies"
    allowed.mkdir()
    (allowed / "bad.json").write_text('{"version": 1, "secret_key_abc": 1}')
    (allowed / "keys.json").write_text('{"sk-live-123": {"name": "alice"}}')
    answers = await _policy_errors(["bad.json", "keys.json"], policy_dirs=(allowed,))
    for status, text in answers:
        assert status == 400 and "policy" in text
        assert "secret_key_abc" not in text and "sk-live-123" not in text and "alice" not in text


async def test_a_fifo_is_refused_at_once_and_the_server_keeps_answering(tmp_path: Any) -> None:
    import asyncio
    import errno
    import os
    import threading

    allowed = tmp_path / "policies"
    allowed.mkdir()
    fifo = allowed / "fifo.json"
    os.mkfifo(fifo)
    stop = threading.Event()

    def unblock() -> None:  # a safety net: a reader blocked on the FIFO gets EOF after 3 s
        stop.wait(3)
        while not stop.is_set():
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                return
            except OSError as e:
                if e.errno != errno.ENXIO:
                    raise
            stop.wait(0.05)

    helper = threading.Thread(target=unblock, daemon=True)
    helper.start()
    try:
        started = time.perf_counter()
        async with client(policy_dirs=(allowed,)) as c:
            stuck = asyncio.create_task(chat(c, testtime=_co("fifo.json")))
            await asyncio.sleep(0.05)
            health = await c.get("/health")
            r = await stuck
        elapsed = time.perf_counter() - started
    finally:
        stop.set()
        helper.join()
    assert health.status_code == 200
    assert r.status_code == 400 and "not a regular file" in r.json()["error"]["message"]
    assert elapsed < 2


@pytest.mark.parametrize("special", ["/dev/zero", "fifo", "dir", "huge"])
def test_the_library_reads_only_small_regular_policy_files(special: str, tmp_path: Any) -> None:
    import os

    from testtime.strategies.policy import MAX_POLICY_BYTES, load_policy

    path = tmp_path / "p.json"
    if special == "/dev/zero":
        path = special
    elif special == "fifo":
        os.mkfifo(path)
    elif special == "dir":
        path.mkdir()
    else:
        with open(path, "wb") as f:  # sparse: no disk used
            f.truncate(MAX_POLICY_BYTES + 1)
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=r"not a regular file|larger than a policy may be"):
        load_policy(str(path))
    assert time.perf_counter() - started < 1


def test_serve_refuses_a_policy_dir_that_does_not_exist(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    from testtime.cli import main

    argv = ["testtime", "serve", "-m", "fake", "--allow-policy-dir", "/no/such/dir"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2 and "is not a directory" in capsys.readouterr().err


# -- a key's cap holds under concurrency --------------------------------------------------
async def _burst(cap: int, testtime: dict[str, Any] | None, **body: Any) -> tuple[Any, list[Any]]:
    import asyncio

    from testtime.server.limits import Keys

    keys = Keys.parse({"sk-a": {"name": "alice", "cap_tokens": cap}})
    auth = {"authorization": "Bearer sk-a"}
    extra = {"testtime": testtime} if testtime else {}
    async with client(FakeGenerator(latency=0.05), keys=keys) as c:
        answers = await asyncio.gather(
            *(chat(c, headers=auth, seed=i, **extra, **body) for i in range(40))
        )
    return keys.keys["sk-a"], answers


@pytest.mark.parametrize(
    ("cap", "testtime", "body"),
    [
        (200, None, {"max_tokens": 16}),
        (200, None, {"max_tokens": 16, "n": 3}),
        (200, {"strategy": "self_consistency", "params": {"n": 4}}, {"max_tokens": 16}),
        (1000, {"strategy": "refine", "params": {"n": 3, "sequential": 3},
                "verifier": "judge"}, {"max_tokens": 16}),
    ],
)  # fmt: skip
async def test_forty_concurrent_requests_never_spend_past_a_keys_cap(
    cap: int, testtime: dict[str, Any] | None, body: dict[str, Any]
) -> None:
    key, answers = await _burst(cap, testtime, **body)
    served = [r for r in answers if r.status_code == 200]
    refused = [r for r in answers if r.status_code != 200]
    assert served, [r.text[:200] for r in answers[:3]]
    assert key.spent_tokens <= cap, key.spent_tokens  # the issue measured 13,560 on 200 (68x)
    assert sum(r.json()["usage"]["total_tokens"] for r in served) <= key.spent_tokens
    assert refused and {r.status_code for r in refused} == {429}
    assert {r.json()["error"]["code"] for r in refused} == {"insufficient_quota"}
    assert key.reserved_tokens == 0  # every hold released once its request ended


async def test_a_cancelled_request_gives_back_what_it_held() -> None:
    from testtime.server.limits import Keys

    keys = Keys.parse({"sk-a": {"name": "alice", "cap_tokens": 1000}})
    async with client(FakeGenerator(latency=5), keys=keys, deadline=0.2) as c:
        r = await chat(c, headers={"authorization": "Bearer sk-a"}, max_tokens=16, n=2)
    key = keys.keys["sk-a"]
    assert r.status_code == 504
    assert key.reserved_tokens == 0 and key.spent_tokens == 0  # nothing came back to charge


@given(
    calls=st.lists(st.tuples(st.integers(1, 60), st.floats(0, 1)), max_size=12),
    hold=st.tuples(st.integers(1, 60), st.one_of(st.none(), st.integers(60, 400))),
    close_after=st.integers(0, 12),
)
@settings(max_examples=200, deadline=None)
def test_a_quota_never_lets_spending_pass_the_cap_and_returns_every_hold(
    calls: list[tuple[int, float]], hold: tuple[int, int | None], close_after: int
) -> None:
    """Calls start (take), some end before the request closes and some after (stragglers of
    a gather); each uses at most its worst case. Spending never passes the cap, the key's
    held tokens never go negative, and all of them come back."""
    from testtime.server.errors import ApiError
    from testtime.server.limits import Key, Quota

    key = Key("k", cap_tokens=300)
    quota = Quota(key)
    try:
        quota.hold(lambda: (hold[0], max(hold[0], hold[1]) if hold[1] else None))
    except ApiError:
        return
    running = []
    for worst, share in calls:
        try:
            quota.take(worst)
        except ApiError:
            continue
        running.append((worst, int(worst * share)))
    for i, (worst, used) in enumerate(running):
        if i == close_after:
            quota.close(sum(u for _, u in running[:i]))
        quota.give(worst, used)
        assert key.reserved_tokens >= 0 and key.spent_tokens + key.reserved_tokens <= 300
    quota.close(key.spent_tokens)
    assert key.reserved_tokens == 0 and key.spent_tokens <= 300


def test_a_judge_prompt_is_a_bounded_template_not_a_replace_chain() -> None:
    """A request's judge prompt repeating {problem} thousands of times multiplied the problem
    into gigabytes; a field may appear once, and the prompt is at most 4000 characters."""
    from testtime.verifiers.base import VERIFIERS

    with pytest.raises(ConfigError, match="each once"):
        VERIFIERS.spec("judge", {"prompt": "{problem}{solution}" + "{problem}" * 400})
    with pytest.raises(ConfigError, match="at most 4000"):
        VERIFIERS.spec("judge", {"prompt": "{problem}{solution}" + "x" * 5000})
    with pytest.raises(ConfigError, match=re.escape("not '{problem.__class__}'")):
        VERIFIERS.spec("judge", {"prompt": "{problem.__class__}{solution}"})
    ok = VERIFIERS.spec("judge", {"prompt": "Q: {problem} A: {solution} {{json}}"})
    assert ok.params.prompt.startswith("Q:")
