"""Typed verdicts from the harness's record, compared in the parent, never from an exit code."""

from __future__ import annotations

import asyncio
import enum
import functools
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from testtime.sandbox.harness import NotPlain, encode
from testtime.sandbox.jail import Limits, Raw, run_jailed


class Verdict(enum.Enum):
    """How a run ended. `ERROR` is the sandbox's own failure, counted apart from `FAILED`."""

    PASSED = "passed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Case:
    """One test: a call expression run in the jail, and its expected value kept outside it."""

    call: str
    expected: Any


@dataclass(frozen=True, slots=True)
class Execution:
    """One judged run: the verdict, how many cases passed, wall seconds (to charge), output.

    `outcomes` says which tests passed (the cases in order, then the script, when there was
    one); `values` holds each call's value as plain tagged data (None where it raised), so
    runs can be compared by behaviour without any expected value."""

    verdict: Verdict
    passed: int
    total: int
    seconds: float
    detail: str
    stdout: str
    stderr: str
    outcomes: tuple[bool, ...] = ()
    values: tuple[Any, ...] = ()


def _records(raw: Raw) -> list[dict[str, Any]]:
    """The record lines that carry this run's nonce; anything else is ignored."""
    found = []
    for line in raw.record.splitlines():
        try:
            item = json.loads(line)
        except (ValueError, RecursionError):  # a line nested past the decoder's depth, too
            continue
        if isinstance(item, dict) and item.get("nonce") == raw.nonce:
            found.append(item)
    return found


def judge(raw: Raw, cases: list[Case], script: bool = False) -> Execution:
    """The verdict of one run: passed only when the harness started, reported exactly once,
    every reported value (rebuilt from plain data) equals its expected value, and the script
    (when `script`) ran to its end."""
    total = len(cases) + script

    def done(
        verdict: Verdict,
        passed: int,
        detail: str,
        outcomes: tuple[bool, ...] = (),
        values: tuple[Any, ...] = (),
    ) -> Execution:
        return Execution(
            verdict,
            passed,
            total,
            raw.seconds,
            detail,
            raw.stdout,
            raw.stderr,
            outcomes or (False,) * total,
            values or (None,) * len(cases),
        )

    if raw.timed_out:
        return done(Verdict.TIMEOUT, 0, "killed at the wall-clock deadline")
    records = _records(raw)
    if not records or records[0] != {"nonce": raw.nonce, "started": True}:
        why = (raw.stderr.strip().splitlines() or [f"exit status {raw.returncode}"])[-1]
        return done(Verdict.ERROR, 0, f"the harness did not start: {why[:200]}")
    reports = [r for r in records[1:] if "results" in r]
    if len(reports) != 1:
        return done(Verdict.FAILED, 0, f"{len(reports)} result records (1 expected)")
    results = reports[0]["results"]
    if not isinstance(results, list) or len(results) != len(cases):
        return done(Verdict.FAILED, 0, "the result record does not cover every case")
    outcomes: list[bool] = []
    values: list[Any] = []
    first = ""
    for i, (case, result) in enumerate(zip(cases, results, strict=True)):
        ok = isinstance(result, dict) and result.get("ok") is True
        values.append(result.get("value") if ok else None)
        outcomes.append(ok and _equal(result.get("value"), case.expected))
        if not outcomes[-1] and not first:
            error = result.get("error", "wrong value") if isinstance(result, dict) else "bad"
            first = f"case {i} ({case.call[:60]}): {str(error)[:200]}"
    if script:
        ran = reports[0].get("script")
        outcomes.append(isinstance(ran, dict) and ran.get("ok") is True)
        if not outcomes[-1] and not first:
            error = ran.get("error", "no report") if isinstance(ran, dict) else "no report"
            first = f"test script: {str(error)[:200]}"
    passed = sum(outcomes)
    verdict = Verdict.PASSED if passed == total and total else Verdict.FAILED
    return done(
        verdict, passed, first or f"{passed}/{total} passed", tuple(outcomes), tuple(values)
    )


_SCALARS = {"bool": bool, "int": int, "float": float, "str": str, "NoneType": type(None)}


def decode(tagged: Any) -> Any:
    """The value `encode` tagged, rebuilt from builtin types only (whose `==` cannot lie);
    raises ValueError on data `encode` cannot have written."""
    if not (isinstance(tagged, list) and len(tagged) == 2 and isinstance(tagged[0], str)):
        raise ValueError("not tagged data")
    kind, raw = tagged
    if kind in _SCALARS:
        if kind == "float" and isinstance(raw, int) and not isinstance(raw, bool):
            raw = float(raw)  # JSON may write 2.0 as 2
        if type(raw) is not _SCALARS[kind]:
            raise ValueError(f"a {kind} tag holds a {type(raw).__name__}")
        return raw
    if kind in ("list", "tuple", "set", "frozenset") and isinstance(raw, list):
        items = [decode(item) for item in raw]
        try:
            return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[kind](items)
        except TypeError as exc:  # an unhashable member of a set
            raise ValueError(str(exc)) from None
    if kind == "dict" and isinstance(raw, list):
        try:
            return {decode(pair[0]): decode(pair[1]) for pair in raw}
        except (TypeError, IndexError, KeyError) as exc:
            raise ValueError(str(exc)) from None
    raise ValueError(f"unknown tag {kind!r}")


def _equal(tagged: Any, expected: Any) -> bool:
    """Whether the reported value equals the expected one by Python's `==` on builtin values
    (HumanEval's semantics: 1 == True, 2 == 2.0, [1] != (1,)), never the solution's `__eq__`."""
    try:
        return bool(decode(tagged) == expected)
    except (ValueError, RecursionError):
        return False


def _expected(case: Case) -> Any:
    """The expected value encoded as the harness encodes; JSON round-trip like the record."""
    try:
        return json.loads(json.dumps(encode(case.expected)))
    except NotPlain as exc:
        raise ValueError(f"expected value of {case.call!r}: {exc}") from exc


CORES = os.cpu_count() or 1
_POOL = ThreadPoolExecutor(max_workers=CORES, thread_name_prefix="testtime-sandbox")


def execute(
    code: str,
    cases: list[Case],
    limits: Limits | None = None,
    *,
    script: str = "",
    entry: str = "",
) -> Execution:
    """Run `code`, its cases and its test `script` (asserts that may call `entry`) in the jail
    and judge them (blocking)."""
    for case in cases:
        _expected(case)  # refuse a non-plain expected value before running anything
    raw = run_jailed(code, [c.call for c in cases], limits or Limits(), script=script, entry=entry)
    return judge(raw, cases, bool(script))


async def aexecute(
    code: str,
    cases: list[Case],
    limits: Limits | None = None,
    *,
    script: str = "",
    entry: str = "",
) -> Execution:
    """`execute` off the event loop; at most one run per core at a time."""
    loop = asyncio.get_running_loop()
    run = functools.partial(execute, code, cases, limits, script=script, entry=entry)
    return await loop.run_in_executor(_POOL, run)


async def aobserve(code: str, calls: list[str], limits: Limits | None = None) -> Execution:
    """Run `code` and evaluate `calls` in the jail, with nothing expected: the values (plain
    tagged data, None where a call raised) say how the code behaves on those inputs."""
    cases = [Case(call, None) for call in calls]
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_POOL, execute, code, cases, limits)
