"""Pages of a run in progress (issue 18: live view).

In `testtime view`: `/live` lists the store's runs (running ones first), `/live/run?id=RUN`
follows one: static/js/live.js polls `/api/live/run?id=RUN` (`view/live_data.py`: units
done of the grid, samples, results, FLOPs, each problem's leader) and redraws without a
reload until the run has ended, then shows its final state. The lab writes a unit per
transaction, so each read sees whole units.

In `testtime serve`: the server mounts `requests_page` at /testtime/live and the static
assets at /static; the same script polls the server's /testtime/requests (samples so far,
leader, cost, and a search's growing tree, drawn with the vendored d3).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from testtime.core.errors import TesttimeError
from testtime.view import live_data, store_data
from testtime.view.html import error_page, esc, page

router = APIRouter()
STATIC = Path(__file__).parent / "static"  # the viewer's assets, which the server mounts too
SCRIPTS = ("vendor/d3/d3.min.js", "js/live.js")
STYLES = ("css/live.css",)
POLL_MS = 1000  # how often a live page reads its progress again
SERVER_NAV = (("/testtime/live", "requests"), ("/health", "health"))


def _store(request: Request) -> Any:
    return request.app.state.config.store


@router.get("/live", include_in_schema=False)
def runs_page(request: Request) -> HTMLResponse:
    """The store's runs, running ones first, each linked to its live page."""
    try:
        with store_data.opened(_store(request)):
            pass
    except TesttimeError as e:
        return error_page(str(e), status=400, title="Cannot open the lab store")
    return page(
        "Live: runs", '<div id="live-runs"></div>', scripts=SCRIPTS, styles=STYLES, data="runs"
    )


@router.get("/live/run", include_in_schema=False)
def run_page(request: Request, id: str) -> HTMLResponse:
    """One run's progress, updated as the lab stores it."""
    try:
        with store_data.opened(_store(request)) as db:
            store_data.record(db, id)
    except store_data.UnknownRun as e:
        return error_page(str(e), status=404, title="No such run")
    except TesttimeError as e:
        return error_page(str(e), status=400, title="Cannot open the lab store")
    body = (
        f'<p><a href="/store/run?id={esc(id)}">the run\'s report</a></p>'
        f'<section id="live" data-run="{esc(id)}" data-poll="{POLL_MS}"></section>'
    )
    return page(f"Live: run {id}", body, scripts=SCRIPTS, styles=STYLES, data="run")


@router.get("/api/live/runs")
def runs_api(request: Request) -> dict[str, Any]:
    """The store's runs, running ones first (then newest first)."""
    with store_data.opened(_store(request)) as db:
        found = store_data.runs(db)
    found.sort(key=lambda r: r["status"] in live_data.FINISHED)  # stable: newest first
    return {"runs": found}


@router.get("/api/live/run")
def run_api(request: Request, id: str) -> dict[str, Any]:
    """A run's progress so far."""
    with store_data.opened(_store(request)) as db:
        return live_data.run_progress(db, id)


def requests_page(request_id: str | None = None) -> HTMLResponse:
    """The server's live page: its requests in flight and the last that ended, or one of
    them (its progress and a search's tree); live.js polls /testtime/requests."""
    if request_id is None:
        body = f'<div id="live-requests" data-poll="{POLL_MS}"></div>'
        return page(
            "Live: requests", body, scripts=SCRIPTS, styles=STYLES, data="requests", nav=SERVER_NAV
        )
    body = (
        '<p><a href="/testtime/live">every request</a></p>'
        f'<section id="live" data-request="{esc(request_id)}" data-poll="{POLL_MS}"></section>'
    )
    return page(f"Live: request {request_id}", body, scripts=SCRIPTS, styles=STYLES, data="request",
                nav=SERVER_NAV)  # fmt: skip
