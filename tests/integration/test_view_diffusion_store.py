"""A diffusion run on the lab store pages in a real headless Chromium (issue 18): on a small
digit-model run made in-process, the run page shows `testtime diffuse report`'s table cell
for cell, a hovered plot point says its accuracy, reward, intervals and cost as the report
computed them, two arms compare paired by problem, and a problem's page lists each result's
images with their labels and rewards. Screenshotted (TESTTIME_VIEW_SHOTS=docs/img/view keeps
them for the docs)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from viewer_browser import Viewer, viewer  # noqa: F401

from testtime.lab.data.store import open_store
from testtime.lab.execution import diffusion as dlab
from testtime.lab.reports import diffusion as rep
from testtime.view.app import create_app

SPEC = {
    "kind": "diffusion", "name": "digits-view", "digits": [3, 7], "repeats": 3, "steps": 10,
    "budgets": [10, 20, 40, 80],
    "strategies": ["best_of_n", {"name": "fk_steering", "label": "fk"}, "zero_order"],
}  # fmt: skip


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("viewdiffusion") / "store.sqlite"
    spec = dlab.parse_diffusion_spec(SPEC)
    with open_store(path) as db:
        run_id = dlab.run(db, spec, json.dumps(SPEC))
    torch.set_num_threads(threads)
    yield path, run_id


def _js_human(x: float) -> str:
    """common.js `human`: 1234 -> 1.23k."""
    for size, unit in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= size:
            return f"{x / size:.2f}{unit}"
    return str(int(x)) if float(x).is_integer() else f"{x:.3g}"


def test_run_page_shows_the_diffusion_report_and_hover_gives_a_points_numbers(
    viewer: Any,  # noqa: F811
    stored: tuple[Path, str],
) -> None:
    path, run_id = stored
    with open_store(path, readonly=True) as db:
        points = rep.analyse(db, run_id)
        cells = [list(r) for r in rep.table_rows(points)]
        difference = rep.comparison_rows(rep.compare(db, run_id, "fk", "zero_order"))
    v: Viewer = viewer(create_app(path, []))
    v.open(f"/store/run?id={run_id}")
    assert not v.error()
    assert "diffuse report" not in v.text("#run")  # the report itself, not a pointer to it
    assert [h.text for h in v.all("table.diffusion thead th")] == list(rep.HEADERS)
    shown = [[c.text for c in r.find_elements("css selector", "td")]
             for r in v.all("table.diffusion tbody tr")]  # fmt: skip
    assert shown == cells  # `diffuse report`'s table, cell for cell
    # hover fk's point at NFE budget 40 on the reward plot, the window as tall as the page
    # (as `screenshot` makes it, so the shot keeps the tooltip)
    height = v.driver.execute_script("return document.documentElement.scrollHeight")
    v.driver.set_window_size(v.driver.get_window_size()["width"], min(max(height + 140, 600), 4000))
    chart = f"chart-{run_id}-reward"
    arm = 1  # fk: the second dataset, in spec order
    mine = [p for p in points if p.arm == "fk"]
    j = next(i for i, p in enumerate(mine) if p.budget == 40)
    x, y, w, h = v.driver.execute_script(
        "const c = diffusion.charts[arguments[0]];"
        "const p = c.getDatasetMeta(arguments[1]).data[arguments[2]];"
        "return [p.x, p.y, c.canvas.clientWidth, c.canvas.clientHeight];",
        chart,
        arm,
        j,
    )
    from selenium.webdriver.common.action_chains import ActionChains

    canvas = v.css(f"#{chart}")  # wholly in view: an offset is from the visible part's centre
    v.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
    ActionChains(v.driver).move_to_element_with_offset(
        canvas, int(x - w / 2), int(y - h / 2)
    ).perform()
    tip = v.wait(lambda d: next((t for t in v.all(".tip") if t.is_displayed()), None))
    text, p = tip.text, mine[j]
    assert "fk · NFE budget 40" in text
    acc = re.search(r"accuracy ([\d.]+)% \[([\d.]+)%, ([\d.]+)%\]", text)
    reward = re.search(r"reward ([\d.]+) \[([\d.]+), ([\d.]+)\]", text)
    assert acc is not None and reward is not None, text
    for got, want in zip(acc.groups(), p.accuracy, strict=True):
        assert abs(float(got) - 100 * want) <= 0.051
    for got, want in zip(reward.groups(), p.reward, strict=True):
        assert abs(float(got) - want) <= 0.0005
    assert f"NFE spent {p.nfe:.0f} · FLOPs {_js_human(p.flops)}" in text
    assert f"{p.problems} problems" in text
    v.screenshot("store-diffusion-run")
    # fk minus zero_order, paired by problem: `diffuse report --compare fk,zero_order`
    v.driver.execute_script(
        "document.querySelector('select.diff-a').value = 'fk';"
        "document.querySelector('select.diff-b').value = 'zero_order';"
    )
    v.css("button.diff-go").click()
    rows = v.wait(lambda d: v.all(".difference table tbody tr"))
    assert [[c.text for c in r.find_elements("css selector", "td")] for r in rows] == [
        list(r) for r in difference
    ]
    # the problems, and one problem's page by a click
    links = v.all("a.problem-link")
    assert len(links) == 6 and links[0].text == "digit-3/0"
    links[0].click()
    v.wait(lambda d: "/store/problem" in d.current_url)
    v.wait(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
    assert v.text("#title") == "Problem digit-3/0"


def test_problem_page_lists_each_results_images_with_label_and_reward(
    viewer: Any,  # noqa: F811
    stored: tuple[Path, str],
) -> None:
    path, run_id = stored
    with open_store(path, readonly=True) as db:
        rows = db.db.execute(
            "SELECT arm, budget, answer, correct, chosen, cost, candidates FROM results"
            " WHERE run = ? AND problem = 'digit-7/1'",
            (run_id,),
        ).fetchall()
    stored_rows = {(arm, budget): rest for arm, budget, *rest in rows}
    v: Viewer = viewer(create_app(path, []))
    v.open(f"/store/problem?run={run_id}&task=digits&problem=digit-7/1")
    assert not v.error()
    assert v.text("#gold") == "7" and v.text("#prompt") == "draw a 7"
    shown = v.all("#results table.diffusion-results > tbody > tr")
    assert len(shown) == len(rows) == 12
    for tr in shown:
        tds = tr.find_elements("css selector", ":scope > td")
        answer, correct, chosen, cost, candidates = stored_rows[(tds[0].text, int(tds[1].text))]
        assert tds[3].text == answer and tds[4].text == ("yes" if correct else "no")
        assert int(tds[6].text) == json.loads(cost)["nfe"]
        images = json.loads(candidates)
        assert tds[10].text == f"{len(images)} image{'' if len(images) == 1 else 's'}"
    last = shown[-1].find_elements("css selector", ":scope > td")
    last[10].find_element("css selector", "summary").click()
    answer, correct, chosen, cost, candidates = stored_rows[(last[0].text, int(last[1].text))]
    images = json.loads(candidates)
    inner = last[10].find_elements("css selector", "table.samples tbody tr")
    assert len(inner) == len(images)
    for tr, image in zip(inner, images, strict=True):
        tds = [c.text for c in tr.find_elements("css selector", "td")]
        assert tds[1] == image["answer"]
        name, value = next(iter(image["scores"].items()))  # the reward, to 3 digits
        label, number = tds[3].split(": ")
        assert label == name and float(number) == pytest.approx(value, rel=5e-3)
    assert "chosen" in inner[chosen].get_attribute("class")
    v.screenshot("store-diffusion-problem")


def test_runs_page_lists_a_diffusion_run_with_its_arms_and_budgets(
    viewer: Any,  # noqa: F811
    stored: tuple[Path, str],
) -> None:
    path, run_id = stored
    with open_store(path, readonly=True) as db:
        (run,) = db.runs()
    v: Viewer = viewer(create_app(path, []))
    v.open("/store")
    assert not v.error()
    (row,) = v.all("#runs-table tbody tr")
    cells = [c.text for c in row.find_elements("css selector", "td")]
    assert cells[1] == run_id and (int(cells[5]), int(cells[6])) == (0, run["results"])
    # no models or tasks in a diffusion spec: no empty parts in its gist
    assert cells[9] == "best_of_n, fk, zero_order · budgets 10,20,40,80"
