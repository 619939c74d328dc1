"""The sandbox's verdict parsing (no jail needed) and its fail-closed start."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from testtime.sandbox import Case, Limits, SandboxUnavailable, Verdict, judge
from testtime.sandbox import jail as jail_module
from testtime.sandbox.harness import NotPlain, encode
from testtime.sandbox.jail import Raw, run_jailed

NONCE = "n0nce"
CASES = [Case("f(1)", 2), Case("g()", [1, (2, "x")])]
STARTED = json.dumps({"nonce": NONCE, "started": True})


def raw(*lines: str, timed_out: bool = False, stderr: str = "") -> Raw:
    return Raw(
        returncode=None if timed_out else 0,
        timed_out=timed_out,
        record="\n".join(lines),
        stdout="",
        stderr=stderr,
        seconds=0.5,
        nonce=NONCE,
    )


def report(*values: Any) -> str:
    results = [{"ok": True, "value": encode(v)} for v in values]
    return json.dumps({"nonce": NONCE, "results": json.loads(json.dumps(results))})


def test_all_values_equal_passes_and_reports_seconds() -> None:
    run = judge(raw(STARTED, report(2, [1, (2, "x")])), CASES)
    assert (run.verdict, run.passed, run.total, run.seconds) == (Verdict.PASSED, 2, 2, 0.5)


def test_values_are_judged_by_python_equality() -> None:
    # 2.0 == 2 in Python (and in HumanEval's asserts); a list is never equal to a tuple
    run = judge(raw(STARTED, report(2.0, [1, [2, "x"]])), CASES)
    assert run.verdict is Verdict.FAILED and run.outcomes == (True, False)


def test_no_record_after_start_fails() -> None:
    run = judge(raw(STARTED), CASES)
    assert run.verdict is Verdict.FAILED and "0 result records" in run.detail


def test_a_record_without_the_nonce_is_ignored() -> None:
    forged = report(2, [1, (2, "x")]).replace(NONCE, "guessed")
    assert judge(raw(STARTED, forged), CASES).verdict is Verdict.FAILED


def test_a_record_line_nested_past_the_decoders_depth_is_ignored() -> None:
    """Jailed code may write anything to the record fd: a deep line must not crash the judge."""
    run = judge(raw(STARTED, "[" * 200_000, report(2, [1, (2, "x")])), CASES)
    assert run.verdict is Verdict.PASSED


def test_two_records_fail() -> None:
    both = report(2, [1, (2, "x")])
    assert judge(raw(STARTED, both, both), CASES).verdict is Verdict.FAILED


def test_harness_never_started_is_a_sandbox_error() -> None:
    run = judge(raw(stderr="bwrap: setting up uid map: Permission denied"), CASES)
    assert run.verdict is Verdict.ERROR and "uid map" in run.detail


def test_timeout_is_its_own_verdict() -> None:
    assert judge(raw(STARTED, timed_out=True), CASES).verdict is Verdict.TIMEOUT


def test_encode_refuses_a_subclass() -> None:
    class Liar(int):
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = int.__hash__

    with pytest.raises(NotPlain):
        encode([Liar(0)])
    assert encode({"b": 1, "a": {2, 1}}) == encode({"a": {1, 2}, "b": 1})


def test_missing_bwrap_fails_closed_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[object] = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append(a))
    jail_module.probe.cache_clear()
    try:
        with pytest.raises(SandboxUnavailable) as caught:
            run_jailed("print(1)", [], Limits(), bwrap="testtime-no-such-bwrap")
    finally:
        jail_module.probe.cache_clear()
    message = str(caught.value)
    assert "\n" not in message and "apt-get install bubblewrap" in message
    assert started == []


def test_bwrap_without_namespaces_fails_closed(tmp_path: Any) -> None:
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
    fake.chmod(0o755)
    jail_module.probe.cache_clear()
    try:
        with pytest.raises(SandboxUnavailable) as caught:
            run_jailed("print(1)", [], Limits(), bwrap=str(fake))
    finally:
        jail_module.probe.cache_clear()
    assert "\n" not in str(caught.value) and "bubblewrap" in str(caught.value)


def test_exited_says_whether_a_process_ended_within_the_time() -> None:
    import subprocess
    import sys

    from testtime.sandbox.jail import _exited

    quick = subprocess.Popen([sys.executable, "-c", "pass"])
    assert _exited(quick, 30.0)
    quick.wait()
    slow = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert not _exited(slow, 0.2)
    finally:
        slow.kill()
        slow.wait()


def test_values_compare_by_python_equality_on_rebuilt_builtins() -> None:
    from testtime.sandbox.harness import encode
    from testtime.sandbox.verdict import _equal, decode

    def tagged(v: object) -> object:
        return json.loads(json.dumps(encode(v)))

    assert _equal(tagged(1), True) and _equal(tagged(2.0), 2)  # as HumanEval's asserts judge
    assert not _equal(tagged([1, 2]), (1, 2))
    assert _equal(tagged({(1, "a"): {1.5, 2.5}}), {(1, "a"): {1.5, 2.5}})
    assert decode(tagged(frozenset({1}))) == frozenset({1})
    for forged in (["int", "7"], ["object", 1], ["set", [["list", []]]], "x", ["dict", [[1]]]):
        assert not _equal(forged, 7)
