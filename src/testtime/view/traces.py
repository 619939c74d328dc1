"""The page and JSON API of one search's trace (issue 18): a trace file given to
`testtime view --trace FILE`, or a result stored in the lab store `--store FILE`.

    /traces                          the trace files the viewer was given, linked
    /traces/K                        the K-th of them (0-based): /trace?file=K
    /trace?file=K[&result=I]         its I-th result (one per problem; 0 first)
    /trace?run=R&arm=A&budget=B&problem=P[&model=M&task=T&seed=S][&result=I]
                                     a stored result (`stored_url` builds the link)
    /api/trace?...                   the same, as JSON: {"source", "results", "index",
                                     "result"} or {"error"} with a 4xx status
    /api/traces                      the trace files, as JSON

What the viewer was started on is `app.state.config` (view/app.py: `ViewConfig`, its
`store` and `traces`). Paths never come from the URL: a page opens only what the command
line named. A trace that cannot be shown gives the error page (and the API its one line).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from testtime.core.errors import DataError
from testtime.lab.data.store import open_store
from testtime.view.html import error_page, esc, page
from testtime.view.trace_data import STORED_KEYS, TraceError, finite, read_file, stored_result, view

router = APIRouter()
BODY = (Path(__file__).parent / "static" / "pages" / "trace.html").read_text(encoding="utf-8")


def stored_url(run: str, model: str, task: str, arm: str, budget: int, seed: int,
               problem: str) -> str:  # fmt: skip
    """The trace page of one stored result (the store pages link each result row here)."""
    key = {"run": run, "model": model, "task": task, "arm": arm, "budget": budget,
           "seed": seed, "problem": problem}  # fmt: skip
    return "/trace?" + urlencode(key)


@router.get("/trace", include_in_schema=False)
def trace_page(request: Request) -> HTMLResponse:
    """The trace page: js/trace.js asks /api/trace (this query) for what to draw. A trace
    that cannot be shown is said at once, on the error page."""
    try:
        source, results, _ = _shown(request)
    except DataError as e:
        return error_page(str(e), status=_status(e))
    title = f"Trace: {source['name']}" + (f" ({len(results)} results)" if len(results) > 1 else "")
    return page(title, BODY, scripts=("vendor/d3/d3.min.js", "js/trace.js"),
                styles=("css/trace.css",))  # fmt: skip


@router.get("/traces/{k}", include_in_schema=False)
def trace_file_page(k: int) -> RedirectResponse:
    """The K-th trace file's page (the start page links these)."""
    return RedirectResponse(f"/trace?file={k}")


@router.get("/traces", include_in_schema=False)
def traces_page(request: Request) -> HTMLResponse:
    """The trace files the viewer was given, each linked (or why it cannot be shown)."""
    rows = []
    for entry in trace_files(request):
        if "error" in entry:
            what = f'<span class="error-inline">{esc(entry["error"])}</span>'
        else:
            problems = ", ".join(map(str, entry["problems"][:8]))
            what = f"{entry['results']} result(s): {esc(problems)}"
        rows.append(f'<li><a href="{entry["url"]}">{esc(entry["path"])}</a> {what}</li>')
    if not rows:
        rows.append(
            "<li>no trace files: start the viewer as <code>testtime view --trace FILE</code> "
            "(written by <code>testtime run ... --trace FILE</code>)</li>"
        )
    return page("Traces", f'<ul id="trace-files">{"".join(rows)}</ul>')


@router.get("/api/traces")
def trace_files(request: Request) -> list[dict[str, Any]]:
    """The trace files given on the command line, each with its results' count (or the
    reason it cannot be shown)."""
    out: list[dict[str, Any]] = []
    for k, path in enumerate(_traces(request)):
        entry: dict[str, Any] = {"file": k, "path": str(path), "url": f"/trace?file={k}"}
        try:
            results = read_file(path)
            entry |= {"results": len(results), "problems": [r.get("problem_id") for r in results]}
        except TraceError as e:
            entry["error"] = str(e)
        out.append(entry)
    return out


@router.get("/api/trace")
def trace_api(request: Request) -> JSONResponse:
    """One result of a trace file or of the store, shaped for the page, or {"error"}."""
    try:
        source, results, index = _shown(request)
        shown = view(results[index], f"{source['name']} result {index}")
    except DataError as e:  # a bad trace; the store missing, damaged, or from a newer testtime
        return JSONResponse({"error": str(e)}, status_code=_status(e))
    listing = [{"problem_id": r.get("problem_id"), "seed": (r.get("strategy") or {}).get("seed")}
               for r in results]  # fmt: skip
    body = {"source": source, "results": listing, "index": index, "result": shown}
    return JSONResponse(finite(body))


def _shown(request: Request) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """The source, its results and the index of the one asked for (`result`), checked to
    be one this viewer can draw."""
    source, results = _load(request)
    index = _int(request.query_params.get("result", "0"), "result")
    if not 0 <= index < len(results):
        raise TraceError(
            f"result={index} is out of range: this trace holds {len(results)} result(s), "
            f"0 to {len(results) - 1}"
        )
    view(results[index], f"{source['name']} result {index}")
    return source, results, index


def _load(request: Request) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The source named by the query and every result it holds."""
    q = request.query_params
    if "file" in q:
        return _from_file(request, q["file"])
    if "run" in q:
        return _from_store(request, dict(q))
    raise TraceError(
        "say which trace: /trace?file=K (one given with `testtime view --trace`) or "
        "/trace?run=...&arm=...&budget=...&problem=... (a result in --store); see /traces"
    )


def _status(e: DataError) -> int:
    """404 for what does not exist (a file, a run, a result), else 400."""
    gone = ("no trace file", "no stored result", "no run", "result=")
    return 404 if str(e).startswith(gone) else 400


def _traces(request: Request) -> list[Path]:
    return list(request.app.state.config.traces)


def _int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise TraceError(f"{name}={text!r} is no whole number; give e.g. {name}=0") from None


def _from_file(request: Request, which: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    files = _traces(request)
    k = _int(which, "file")
    if not 0 <= k < len(files):
        given = f"files 0 to {len(files) - 1}" if files else "none"
        raise TraceError(
            f"no trace file {k}: the viewer was given {given}; start it with "
            "`testtime view --trace FILE`"
        )
    return {"kind": "file", "name": str(files[k]), "file": k}, read_file(files[k])


def _from_store(request: Request, q: dict[str, str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The stored results that match the query (run, arm, budget, problem; model, task and
    seed when given), in key order."""
    store = request.app.state.config.store
    if store is None:
        raise TraceError("no store was given; start the viewer with `testtime view --store FILE`")
    missing = [k for k in ("run", "arm", "budget", "problem") if k not in q]
    if missing:
        raise TraceError(f"a stored trace needs {', '.join(missing)} in the address too")
    where = {k: q[k] for k in STORED_KEYS if k in q}
    for k in ("budget", "seed"):
        if k in where:
            where[k] = _int(where[k], k)  # type: ignore[assignment]
    sql = (
        "SELECT model, task, arm, budget, seed, problem, answer, correct, chosen, exhausted,"
        " cost, trace, candidates FROM results WHERE run = ? AND "
        + " AND ".join(f"{k} = ?" for k in where)
        + " ORDER BY model, task, arm, budget, seed, problem"
    )
    with open_store(Path(store), readonly=True) as db:
        db.run(q["run"])  # a run that does not exist: its own one-line error
        try:
            rows = db.db.execute(sql, (q["run"], *where.values())).fetchall()
        except sqlite3.Error as e:
            raise DataError(f"cannot read the store {store}: {e}") from None
    if not rows:
        said = " ".join(f"{k}={v}" for k, v in where.items())
        raise TraceError(
            f"no stored result in run {q['run']} with {said}; pick one from the run's page"
        )
    results = [stored_result(r[6:], dict(zip(STORED_KEYS, r[:6], strict=True))) for r in rows]
    return {"kind": "store", "name": f"run {q['run']}", "run": q["run"], **where}, results
