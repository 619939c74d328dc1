"""The viewer's FastAPI app: static assets, the start page, and the routers of each view.

`view/store.py` shows a lab store, `view/traces.py` one search's trace, `view/live.py` a run
in progress; each is an `APIRouter` included here. What the app was started on (the store
file, the trace files) lives in `app.state.config` (`ViewConfig`) for the routers to read.
Errors never reach the browser as a traceback: an API path (/api/...) answers
`{"error": "..."}`, a page answers a page that says what was wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from testtime.core.errors import TesttimeError
from testtime.view import live, store, store_data, traces
from testtime.view.html import error_page, esc, page

STATIC = Path(__file__).parent / "static"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ViewConfig:
    """What `testtime view` was started on."""

    store: Path | None = None
    traces: tuple[Path, ...] = field(default_factory=tuple)


def config(request: Request) -> ViewConfig:
    """The app's `ViewConfig`, for a route's handler."""
    found: ViewConfig = request.app.state.config
    return found


def create_app(
    store_path: Path | None = None, trace_paths: Sequence[Path] = (), *, warm: bool = False
) -> FastAPI:
    """The viewer on a lab store and/or trace files (either may be absent); `warm` starts
    replaying the store's newest runs in the background (`store_data.warm`), as
    `testtime view` does, so a run's first open need not wait for its replay."""
    if warm and store_path is not None:
        store_data.warm(store_path)
    app = FastAPI(title="testtime view", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.config = ViewConfig(store_path, tuple(trace_paths))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(store.router)
    app.include_router(traces.router)
    app.include_router(live.router)
    app.add_api_route("/", index, methods=["GET"], include_in_schema=False)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(TesttimeError, _user_error)
    app.add_exception_handler(Exception, _unexpected)
    return app


def index(request: Request) -> Response:
    """The start page: what this viewer was opened on, linked."""
    cfg = config(request)
    items = []
    if cfg.store is not None:
        items.append(f'<li><a href="/store">lab store</a> <code>{esc(cfg.store)}</code></li>')
    for i, path in enumerate(cfg.traces):
        items.append(f'<li><a href="/trace?file={i}">trace</a> <code>{esc(path)}</code></li>')
    if not items:
        items.append(
            "<li>nothing opened: start it as <code>testtime view --store FILE</code> "
            "and/or <code>--trace FILE</code></li>"
        )
    return page("testtime view", f'<ul id="opened">{"".join(items)}</ul>')


def _answer(request: Request, message: str, status: int) -> Response:
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message}, status_code=status)
    return error_page(message, status=status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404 and exc.detail == "Not Found":
        return _answer(request, f"no page at {request.url.path}; see the start page /", 404)
    return _answer(request, str(exc.detail), exc.status_code)


async def _invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return _answer(request, f"bad request: {where}: {first.get('msg', 'invalid')}", 422)


async def _user_error(request: Request, exc: Exception) -> Response:
    """A user's mistake (a missing store, an unknown run): its one line; 404 where the
    error says so (`http_status`), else 400."""
    return _answer(request, str(exc), int(getattr(exc, "http_status", 400)))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("the viewer failed on %s", request.url.path)
    return _answer(
        request,
        f"the viewer failed on this page ({type(exc).__name__}: {exc}); "
        "the terminal running `testtime view` has the details; please report it",
        500,
    )
