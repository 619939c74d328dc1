"""Live pages in headless Chromium (issue 18): a lab run's progress changes on its page
without a reload, then shows how it ended; screenshot live-lab-run.png."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from viewer_browser import Viewer, viewer  # noqa: F401

from testtime.generators.fake import FakeGenerator
from testtime.lab.data.spec import parse_spec
from testtime.lab.data.store import open_store
from testtime.lab.execution import runner
from testtime.view.app import create_app as create_view

SPEC = parse_spec({
    "name": "live", "model": "fake", "task": {"name": "arithmetic", "params": {"size": 20}},
    "problems": 4, "budgets": [1, 2], "pool": 4, "concurrency": 1,
    "strategies": ["self_consistency"],
})  # fmt: skip


def _text(v: Viewer, selector: str) -> str:
    """An element's text read in the page (the page redraws its elements as it polls)."""
    return str(
        v.driver.execute_script(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : ''",
            selector,
        )
    )


def _number(v: Viewer, selector: str) -> int:
    return int(_text(v, selector).split("/")[0].strip() or 0)


def test_a_lab_run_in_progress_changes_on_its_page(
    viewer: Callable[[Any], Viewer],  # noqa: F811
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    with open_store(path) as db:
        plan = runner.prepare(db, SPEC, "test")
    v = viewer(create_view(path))

    def lab() -> None:
        with open_store(path) as db:
            slow = lambda _: FakeGenerator(latency=0.4)  # noqa: E731
            runner.execute(
                db, SPEC, plan, lambda: runner.run_local(db, SPEC, plan, generators=slow)
            )

    thread = threading.Thread(target=lab, daemon=True)
    thread.start()
    v.open(f"/live/run?id={plan.run_id}")
    v.wait(lambda d: _text(v, "#units"))
    first = _number(v, "#units")
    v.wait(lambda d: _number(v, "#units") > first, timeout=60)  # it grew, no reload
    thread.join(120)
    v.wait(lambda d: d.execute_script("return document.body.dataset.finished === '1'"), 30)
    assert _text(v, "#status") == "success"
    assert _text(v, "#units") == f"{len(plan.units)} / {len(plan.units)}"
    assert (
        int(_text(v, "#samples")) == 4 * 4
        and v.driver.execute_script("return document.querySelectorAll('#leaders tbody tr').length")
        >= 4
    )
    assert v.error() == ""
    assert "null" not in v.driver.find_element("id", "live").text  # no absent field as text
    v.screenshot("live-lab-run")
