"""The lab store pages in a real headless Chromium (issue 18): on a store made by the fake
generator, each page shows the store's numbers and `lab report`'s analysis, a hovered point
says its accuracy, interval and costs, runs compare side by side, a problem's samples stand
in their vote groups, and bad input is a page that says so. Each view is screenshotted
(TESTTIME_VIEW_SHOTS=docs/img/view keeps them for the docs)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
from viewer_browser import Viewer, viewer  # noqa: F401

from testtime.lab.analysis.replay import analyse
from testtime.lab.data.spec import parse_spec
from testtime.lab.data.store import open_store
from testtime.lab.execution import runner
from testtime.view.app import create_app

NOISY = {"name": "fake", "params": {"noise": 0.6}}
TASK = {"name": "arithmetic", "params": {"size": 40, "seed": 3}}
SPECS = [
    parse_spec({
        "name": "voting", "model": "fake", "task": TASK, "problems": 5,
        "budgets": [1, 2, 4, 8], "pool": 8,
        "strategies": ["self_consistency", {"name": "best_of_n", "verifier": NOISY},
                       {"name": "weighted_majority", "verifier": NOISY},
                       {"name": "tournament", "label": "knockout", "budgets": [2, 4]},
                       {"name": "adaptive_consistency", "budgets": [4]}],
    }),
    parse_spec({
        "name": "greedy", "model": "fake", "task": TASK, "problems": 5, "budgets": [1, 2],
        "pool": 2, "strategies": [{"name": "single", "label": "greedy"}, "self_consistency"],
    }),
]  # fmt: skip


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    path = tmp_path_factory.mktemp("viewstore") / "store.sqlite"
    ids = []
    with open_store(path) as db:
        for spec in SPECS:
            plan = runner.prepare(db, spec, "test")
            runner.execute(db, spec, plan, lambda: runner.run_local(db, spec, plan))  # noqa: B023
            ids.append(plan.run_id)
    return path, ids


def _js_human(x: float) -> str:
    """common.js `human`: 1234 -> 1.23k."""
    for size, unit in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= size:
            return f"{x / size:.2f}{unit}"
    return str(int(x)) if float(x).is_integer() else f"{x:.3g}"


def test_runs_page_lists_the_runs_and_compares_two(viewer: Any, stored: Any) -> None:  # noqa: F811
    path, ids = stored
    v: Viewer = viewer(create_app(path, []))
    v.open("/store")
    with open_store(path, readonly=True) as db:
        runs = {r["id"]: r for r in db.runs()}
    rows = v.all("#runs-table tbody tr")
    assert len(rows) == 2
    for row in rows:
        cells = [c.text for c in row.find_elements("css selector", "td")]
        r = runs[cells[1]]
        assert cells[3] == r["status"] == "success"
        assert (int(cells[5]), int(cells[6])) == (r["samples"], r["results"])
        assert cells[7] == _js_human(r["flops"])
    assert v.css("#compare").get_attribute("disabled") is not None
    v.screenshot("store-runs")
    for box in v.all("input.pick"):
        box.click()
    v.css("#compare").click()
    v.wait(lambda d: "/store/compare" in d.current_url)
    v.wait(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
    sections = v.all("section.run")
    assert [s.get_attribute("data-run") for s in sections] == [ids[1], ids[0]]
    assert all(s.find_elements("css selector", "table.analysis") for s in sections)
    assert not v.error()
    v.screenshot("store-compare")


def test_run_page_shows_the_reports_table_and_hover_gives_a_points_numbers(
    viewer: Any,  # noqa: F811
    stored: Any,
) -> None:
    path, ids = stored
    with open_store(path, readonly=True) as db:
        analysis = dataclasses.asdict(analyse(db, ids[0]))
        problems = db.problem_totals(ids[0])
    v: Viewer = viewer(create_app(path, []))
    v.open(f"/store/run?id={ids[0]}")
    assert not v.error()
    rows = [[c.text for c in r.find_elements("css selector", "td")]
            for r in v.all("table.analysis tbody tr")]  # fmt: skip
    budgets = {1, 2, 4, 8}
    curves = [*analysis["curves"], analysis["coverage"]]
    want = [(p["budget"], p["accuracy"], p["lo"], p["hi"]) for c in curves
            for p in c["points"] if p["budget"] in budgets]  # fmt: skip
    assert len(rows) == len(want)
    for cells, (k, acc, lo, hi) in zip(rows, want, strict=True):
        assert int(cells[1]) == k
        assert cells[2] == f"{acc:.0%} [{100 * lo:.0f}–{100 * hi:.0f}]"  # as lab report
    labels = [r[0] for r in rows if r[0]]
    assert labels[:-1] == [c["label"] for c in analysis["curves"]]
    # hover the self_consistency point at k=4 on the FLOPs plot
    chart = f"chart-{ids[0]}-flops"
    curve = analysis["curves"][0]
    j = next(i for i, p in enumerate(curve["points"]) if p["budget"] == 4)
    x, y, w, h = v.driver.execute_script(
        "const c = store.charts[arguments[0]]; const p = c.getDatasetMeta(0).data[arguments[1]];"
        "return [p.x, p.y, c.canvas.clientWidth, c.canvas.clientHeight];",
        chart,
        j,
    )
    from selenium.webdriver.common.action_chains import ActionChains

    canvas = v.css(f"#{chart}")
    ActionChains(v.driver).move_to_element_with_offset(
        canvas, int(x - w / 2), int(y - h / 2)
    ).perform()
    tip = v.wait(lambda d: next((t for t in v.all(".tip") if t.is_displayed()), None))
    p = curve["points"][j]
    text = tip.text
    assert f"{curve['label']} · k=4" in text
    shown = re.search(r"accuracy ([\d.]+)% \[([\d.]+)%–([\d.]+)%\]", text)
    assert shown is not None, text
    for got, want in zip(shown.groups(), (p["accuracy"], p["lo"], p["hi"]), strict=True):
        assert abs(float(got) - 100 * want) <= 0.051
    assert f"FLOPs {_js_human(p['flops'])}" in text and f"tokens {_js_human(p['tokens'])}" in text
    v.screenshot("store-run")
    # the problems list, and one problem's page by a click
    links = v.all("a.problem-link")
    assert [a.text for a in links] == [row[1] for row in problems]
    links[0].click()
    v.wait(lambda d: "/store/problem" in d.current_url)
    v.wait(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
    assert v.text("#title") == f"Problem {problems[0][1]}"


def test_problem_page_groups_samples_as_the_vote_did(viewer: Any, stored: Any) -> None:  # noqa: F811
    path, ids = stored
    with open_store(path, readonly=True) as db:
        task, problem, _pos, gold, n, correct, _r = db.problem_totals(ids[0])[1]
        samples = db.problem_samples(ids[0], task, problem)
    v: Viewer = viewer(create_app(path, []))
    v.open(f"/store/problem?run={ids[0]}&task={task}&problem={problem}")
    assert not v.error()
    assert v.text("#gold") == str(gold)
    groups = v.all(".group")
    sizes = []
    shown = 0
    for g in groups:
        rows = g.find_elements("css selector", "table.samples tbody tr")
        answers = {r.find_elements("css selector", "td")[1].text for r in rows}
        assert len(answers) == 1  # one answer per vote group (the fake's are canonical)
        sizes.append(len(rows))
        shown += sum(r.find_elements("css selector", "td")[2].text == "yes" for r in rows)
    assert sum(sizes) == n == len(samples) and shown == correct
    assert "the vote's leader" in groups[0].text and sizes[0] == max(sizes)
    first = groups[0].find_element("css selector", "table.samples tbody tr")
    idx = int(first.find_elements("css selector", "td")[0].text)
    stored_sample = next(s for s in samples if s["idx"] == idx)
    key = next(iter(stored_sample["scores"]))
    assert f"{key}: " in first.text  # verifier scores and per-verifier costs
    first.find_element("css selector", "details summary").click()
    assert stored_sample["text"].splitlines()[-1] in first.find_element("css selector", "pre").text
    assert v.all("#verdicts tbody tr") and v.all("#results tbody tr")
    v.screenshot("store-problem")
    link = v.css("#results a.trace-link")  # the stored result's trace page (view/traces.py)
    assert "arm=adaptive_consistency" in link.get_attribute("href")
    link.click()
    v.wait(lambda d: "/trace?" in d.current_url)
    v.wait(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
    assert not v.error()


def test_bad_input_pages_say_what_is_wrong(viewer: Any, stored: Any, tmp_path: Path) -> None:  # noqa: F811
    path, ids = stored
    v: Viewer = viewer(create_app(path, []))
    v.open("/store/run?id=no-such-run")
    assert v.error().startswith("no run 'no-such-run'") and ids[0] in v.error()
    assert "Traceback" not in v.driver.page_source
    v.screenshot("store-unknown-run")
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"not sqlite at all" * 200)
    for store, says in ((tmp_path / "gone.sqlite", "no experiment store at"), (bad, "bad.sqlite")):
        w: Viewer = viewer(create_app(store, []))
        w.open("/store")
        assert says in w.error() and "Traceback" not in w.driver.page_source
