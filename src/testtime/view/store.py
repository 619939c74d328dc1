"""Pages and JSON APIs of a lab store (issue 18): runs, a run's table and plots, two runs
side by side, and one problem's every stored sample.

Pages are HTML shells filled by static/js/store.js from the /api/store/... answers (shaped in
`view/store_data.py`). A page checks its run first, so an unknown run or a missing or
damaged store is a page that says so (status 4xx), never a traceback.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from testtime.core.errors import TesttimeError
from testtime.lab.data.spec import DIFFUSION, run_kind
from testtime.view import diffusion_data, store_data
from testtime.view.html import error_page, esc, page

router = APIRouter()
CHART = "vendor/chartjs/chart.umd.min.js"


def _config_store(request: Request) -> Any:
    return request.app.state.config.store


def _checked(request: Request, *runs: str) -> HTMLResponse | None:
    """An error page when the store cannot be read or a run is not in it; else None."""
    try:
        with store_data.opened(_config_store(request)) as db:
            for run in runs:
                store_data.record(db, run)
    except store_data.UnknownRun as e:
        return error_page(str(e), status=404, title="No such run")
    except TesttimeError as e:
        return error_page(str(e), status=400, title="Cannot open the lab store")
    return None


def _shell(title: str, view: str, body: str, request: Request) -> HTMLResponse:
    where = esc(_config_store(request))
    return page(
        title,
        f'<p class="muted">store <code id="store-path">{where}</code></p>{body}',
        scripts=(CHART, "js/diffusion.js", "js/store.js"),
        data=view,
    )


@router.get("/store", include_in_schema=False)
def runs_page(request: Request) -> HTMLResponse:
    """Every run in the store."""
    return _checked(request) or _shell(
        "Lab store: runs",
        "runs",
        '<div class="controls">compare two runs: tick them, then '
        '<button id="compare" disabled>compare</button></div><div id="runs"></div>',
        request,
    )


@router.get("/store/run", include_in_schema=False)
def run_page(request: Request, id: str) -> HTMLResponse:
    """One run: its table and plots (as `lab report`), its problems."""
    return _checked(request, id) or _shell(
        f"Run {id}",
        "run",
        '<section id="run" class="run" data-run="' + esc(id) + '"></section>',
        request,
    )


@router.get("/store/compare", include_in_schema=False)
def compare_page(request: Request, a: str, b: str) -> HTMLResponse:
    """Two runs side by side: tables and plots."""
    return _checked(request, a, b) or _shell(
        f"{a} and {b}",
        "compare",
        '<div class="side"><section class="run" data-run="' + esc(a) + '"></section>'
        '<section class="run" data-run="' + esc(b) + '"></section></div>',
        request,
    )


@router.get("/store/problem", include_in_schema=False)
def problem_page(request: Request, run: str, task: str, problem: str) -> HTMLResponse:
    """One problem of a run: every stored sample, grouped as the vote grouped them."""
    return _checked(request, run) or _shell(
        f"Problem {problem}",
        "problem",
        f'<p><a href="/store/run?id={esc(run)}">back to run {esc(run)}</a></p>'
        '<section id="problem" data-run="' + esc(run) + '" data-task="' + esc(task) + '"'
        ' data-problem="' + esc(problem) + '"></section>',
        request,
    )


@router.get("/api/store/runs")
def runs_api(request: Request) -> dict[str, Any]:
    """Every run, newest first."""
    with store_data.opened(_config_store(request)) as db:
        return {"store": str(db.path), "runs": store_data.runs(db)}


@router.get("/api/store/run")
def run_api(request: Request, id: str) -> dict[str, Any]:
    """A run's record and its analysis (a diffusion run's: its `diffuse report`)."""
    with store_data.opened(_config_store(request)) as db:
        return diffusion_data.with_report(db, store_data.run_view(db, id))


@router.get("/api/store/diffusion/compare")
def diffusion_compare_api(request: Request, run: str, a: str, b: str) -> dict[str, Any]:
    """A diffusion run's arm a minus arm b, paired by problem (`diffuse report --compare`)."""
    with store_data.opened(_config_store(request)) as db:
        store_data.record(db, run)
        return diffusion_data.compare(db, run, a, b)


@router.get("/api/store/problems")
def problems_api(request: Request, run: str) -> dict[str, Any]:
    """A run's problems with their sample counts."""
    with store_data.opened(_config_store(request)) as db:
        return {"run": run, "problems": store_data.problems(db, run)}


@router.get("/api/store/problem")
def problem_api(request: Request, run: str, task: str, problem: str) -> dict[str, Any]:
    """One problem's samples in vote groups, verdicts and results (a diffusion run's: each
    result with its images' labels and rewards)."""
    with store_data.opened(_config_store(request)) as db:
        rec = store_data.record(db, run)
        if run_kind(rec["spec"]) == DIFFUSION:
            return diffusion_data.problem_view(db, rec, task, problem)
        return store_data.problem_view(db, run, task, problem)
