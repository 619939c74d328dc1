"""The page and JSON API of one search's trace (issue 18): a trace file given to
`testtime view --trace FILE`, or a result stored in the lab store `--store FILE`.

    /trace?file=K[&result=I]         the K-th trace file (0-based), its I-th result
    /trace?run=R&arm=A&budget=B&problem=P[&model=M&task=T&seed=S][&result=I]
                                     a stored result (`stored_url` builds the link)
    /api/trace?...                   the same, as JSON: {"source", "results", "index",
                                     "result"} or {"error"} with a 4xx status
    /api/traces                      the trace files the viewer was given

The app (view/app.py) keeps its inputs on `app.state`: `traces` (a list of paths) and
`store` (a path or None). Paths never come from the URL: a page can open only what the
command line named.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse

from testtime.core.errors import DataError
from testtime.lab.data.store import open_store
from testtime.view.trace_data import STORED_KEYS, TraceError, finite, read_file, stored_result, view

router = APIRouter()
PAGE = Path(__file__).parent / "static" / "pages" / "trace.html"


def stored_url(run: str, model: str, task: str, arm: str, budget: int, seed: int,
               problem: str) -> str:  # fmt: skip
    """The trace page of one stored result (the store pages link each result row here)."""
    key = {"run": run, "model": model, "task": task, "arm": arm, "budget": budget,
           "seed": seed, "problem": problem}  # fmt: skip
    return "/trace?" + urlencode(key)


@router.get("/trace", include_in_schema=False)
def trace_page() -> FileResponse:
    """The trace page: it reads its query and asks /api/trace for what to draw."""
    return FileResponse(PAGE, media_type="text/html")


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
    q = request.query_params
    try:
        if "file" in q:
            source, results = _from_file(request, q["file"])
        elif "run" in q:
            source, results = _from_store(request, dict(q))
        else:
            raise TraceError(
                "say which trace: /trace?file=K (one given with `testtime view --trace`) or "
                "/trace?run=...&arm=...&budget=...&problem=... (a result in --store)"
            )
        index = _int(q.get("result", "0"), "result")
        if not 0 <= index < len(results):
            raise TraceError(
                f"result={index} is out of range: this trace holds {len(results)} result(s), "
                f"0 to {len(results) - 1}"
            )
        shown = view(results[index], f"{source['name']} result {index}")
    except TraceError as e:
        return JSONResponse({"error": str(e)}, status_code=404 if _missing(e) else 400)
    except DataError as e:  # the store: missing, damaged, from a newer testtime
        return JSONResponse({"error": str(e)}, status_code=400)
    listing = [{"problem_id": r.get("problem_id"), "seed": (r.get("strategy") or {}).get("seed")}
               for r in results]  # fmt: skip
    body = {"source": source, "results": listing, "index": index, "result": shown}
    return JSONResponse(finite(body))


def _missing(e: TraceError) -> bool:
    return str(e).startswith(("no ", "result="))


def _traces(request: Request) -> list[Path]:
    return list(getattr(request.app.state, "traces", None) or [])


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
    store = getattr(request.app.state, "store", None)
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
