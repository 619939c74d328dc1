"""The harness that runs inside the sandbox: stdlib only, run as a script by the jailed Python.

It reads the job (code, call expressions, nonce, and optionally an assert-style test script)
from stdin, writes a "started" line to the record fd, runs the code, evaluates each call,
encodes each value as plain tagged data and writes the record after the calls. Expected values
of calls never enter the sandbox: the parent compares the encoded values (`encode` is imported
by the parent too, so both sides encode alike).

A test script (HumanEval's `check(candidate)`, asserts that are not `call == literal`) must
compare inside the jail. It runs in a copy of the solution's names with the builtins as they
were before the solution ran, and the entry point wrapped so that every value it returns must
be a plain builtin value: an object whose `__eq__` lies is refused before any assert sees it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Any

PLAIN_SCALARS = (bool, int, float, str, type(None))


class NotPlain(TypeError):
    """A value that is not exactly a builtin plain type (a subclass may lie in `__eq__`)."""


def encode(value: Any, depth: int = 0) -> Any:
    """Plain tagged data for `value`; only exact builtin types, never a subclass."""
    if depth > 50:
        raise NotPlain("value nested deeper than 50")
    kind = type(value)
    if kind in PLAIN_SCALARS:
        return [kind.__name__, value]
    if kind in (list, tuple, set, frozenset):
        items = [encode(v, depth + 1) for v in value]
        if kind in (set, frozenset):
            items.sort(key=lambda item: json.dumps(item, sort_keys=True))
        return [kind.__name__, items]
    if kind is dict:
        pairs = [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]
        pairs.sort(key=lambda pair: json.dumps(pair[0], sort_keys=True))
        return ["dict", pairs]
    raise NotPlain(f"a {kind.__name__} is not a plain builtin value")


def guarded(function: Any) -> Any:
    """`function`, returning only values that encode as plain data (else `NotPlain`)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        value = function(*args, **kwargs)
        encode(value)
        return value

    return call


def _script(
    script: str, entry: str, scope: dict[str, Any], builtins: dict[str, Any], loaded: str | None
) -> dict[str, Any]:
    """Run an assert-style test script over the solution's names; whether every assert held."""
    if loaded is not None:
        return {"ok": False, "error": loaded}
    names = {**scope, "__builtins__": dict(builtins), "__name__": "__tests__"}
    if entry:
        if not callable(scope.get(entry)):
            return {"ok": False, "error": f"NameError: the solution defines no function {entry!r}"}
        names[entry] = guarded(scope[entry])
    try:
        exec(compile(script, "<tests>", "exec"), names)
        return {"ok": True}
    except BaseException as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}


def main() -> None:  # pragma: no cover - runs inside the sandbox
    job = json.loads(sys.stdin.read())
    sys.path[:0] = job.get("path", [])  # the read-only libraries the job may import
    record = os.fdopen(int(sys.argv[1]), "w")
    nonce = job["nonce"]
    record.write(json.dumps({"nonce": nonce, "started": True}) + "\n")
    record.flush()
    builtins = dict(vars(__builtins__) if not isinstance(__builtins__, dict) else __builtins__)
    scope: dict[str, Any] = {"__name__": "__solution__"}
    results: list[dict[str, Any]] = []
    try:
        exec(compile(job["code"], "<solution>", "exec"), scope)
        loaded = None
    except BaseException as exc:  # SystemExit too: the code may not end the harness
        loaded = f"{type(exc).__name__}: {exc}"[:500]
    for i, expression in enumerate(job["calls"]):
        if loaded is not None:
            results.append({"ok": False, "error": loaded})
            continue
        try:
            value = eval(compile(expression, f"<call {i}>", "eval"), scope)
            results.append({"ok": True, "value": encode(value)})
        except BaseException as exc:
            results.append({"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]})
    report: dict[str, Any] = {"nonce": nonce, "results": results}
    if "script" in job:
        report["script"] = _script(job["script"], job.get("entry", ""), scope, builtins, loaded)
    record.write(json.dumps(report) + "\n")
    record.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    os._exit(0)


if __name__ == "__main__":  # pragma: no cover
    main()
