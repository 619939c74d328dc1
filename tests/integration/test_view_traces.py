"""The trace pages in headless Chromium (issue 18): each kind of trace, made by the fake
model and verifiers (`testtime run --trace`) or the embedded digit model (`testtime diffuse
--trace`), opened in the browser; the elements and numbers drawn are checked against the
trace file, a tree is clicked through, and every view is screenshot (into the test's folder,
and docs/img/view/ with TESTTIME_VIEW_SHOTS=docs/img/view)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from viewer_browser import Viewer, viewer  # noqa: F401
from viewer_traces import load, make_store, make_traces

from testtime.view.app import create_app
from testtime.view.traces import stored_url

NAMES = ["beam_search", "mcts", "particle_filtering", "self_consistency", "tournament",
         "fk_steering"]  # fmt: skip


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_traces(tmp_path_factory.mktemp("traces"))


@pytest.fixture
def page(viewer: Any, traces: dict[str, Path]) -> Viewer:  # noqa: F811
    v: Viewer = viewer(create_app(None, [traces[n] for n in NAMES]))
    return v


def show(v: Viewer, name: str) -> Any:
    v.open(f"/trace?file={NAMES.index(name)}")
    assert v.error() == "", v.error()
    return v


def click(v: Viewer, selector: str) -> None:
    """A real click on an element (SVG shapes included)."""
    v.css(selector).click()


def field(v: Viewer, name: str) -> str:
    return v.text(f'#detail-fields tr[data-field="{name}"] td')


def num(text: str) -> float:
    return float(text.replace(" ", "").replace("–", "nan"))


def ledger(v: Viewer, raw: dict[str, Any]) -> None:
    for key in ("samples", "generated_tokens", "flops", "nfe"):
        if raw["cost"].get(key):
            shown = num(v.text(f'#ledger tr[data-key="{key}"] td'))
            assert shown == pytest.approx(raw["cost"][key], rel=1e-3)


def test_beam_search_tree_clicks_through_the_chosen_path(
    page: Viewer, traces: dict[str, Path]
) -> None:
    raw = load(traces["beam_search"])[0]
    show(page, "beam_search")
    assert len(page.all("svg.tree g.node")) == len(raw["candidates"]) + 1  # and the root
    path, c = [], next(c for c in raw["candidates"] if c["id"] == raw["chosen"])
    while c is not None:
        path.append(c["id"])
        c = next((p for p in raw["candidates"] if p["id"] == c["parent"]), None)
    chosen = {int(e.get_attribute("data-id")) for e in page.all("g.node.chosen")}
    assert chosen == {*path, -1}
    assert len(page.all("path.link.chosen")) == len(path)
    for node in reversed(path):  # root to leaf
        click(page, f'g.node[data-id="{node}"] circle')
        assert int(field(page, "candidate")) == node
        assert field(page, "on chosen path") == "true"
    score = raw["candidates"][[c["id"] for c in raw["candidates"]].index(path[0])]["scores"]
    assert num(field(page, "score: step_check")) == pytest.approx(score["step_check"])
    assert page.text('#summary [data-key="chosen"] .value') == f"candidate {raw['chosen']}"
    ledger(page, raw)
    page.screenshot("beam_search_tree")


def test_mcts_tree_shows_visits_and_values(page: Viewer, traces: dict[str, Path]) -> None:
    raw = load(traces["mcts"])[0]
    tree = raw["trace"]["tree"]
    show(page, "mcts")
    assert len(page.all("svg.tree g.node")) == len(tree)
    click(page, 'g.node[data-id="0"] circle')
    assert int(field(page, "visits")) == tree[0]["visits"]
    leaf = max(i for i, n in enumerate(tree) if n["candidate"] == raw["chosen"])
    click(page, f'g.node[data-id="{leaf}"] circle')
    assert int(field(page, "visits")) == tree[leaf]["visits"]
    assert num(field(page, "Q")) == pytest.approx(tree[leaf]["value"] / tree[leaf]["visits"])
    assert "chosen" in page.css(f'g.node[data-id="{leaf}"]').get_attribute("class")
    ledger(page, raw)
    page.screenshot("mcts_tree")


def test_particle_genealogy_has_lanes_ess_and_resampling(
    page: Viewer, traces: dict[str, Path]
) -> None:
    raw = load(traces["particle_filtering"])[0]
    steps = raw["trace"]["steps"]
    show(page, "particle_filtering")
    assert len(page.all("svg.genealogy g.node")) == sum(len(s["particles"]) for s in steps)
    assert len(page.all("rect.resampled-band")) == sum(s["resampled"] for s in steps)
    for t, s in enumerate(steps):
        label = page.text(f'text.step-ess[data-step="{t}"]')
        assert num(label.split("ESS")[1]) == pytest.approx(s["ess"], rel=1e-3)
    click(page, 'g.node[data-step="1"][data-lane="2"] circle')
    assert int(field(page, "candidate")) == steps[1]["particles"][2]
    assert num(field(page, "weight")) == pytest.approx(steps[1]["weights"][2], rel=1e-3)
    ancestor = steps[0]["ancestors"][2] if steps[0]["resampled"] else 2
    assert int(field(page, "descends from lane")) == ancestor
    page.screenshot("particle_genealogy")


def test_vote_tally_bars_are_the_votes(page: Viewer, traces: dict[str, Path]) -> None:
    raw = load(traces["self_consistency"])[0]
    show(page, "self_consistency")
    rows = page.all(".bars .bar-row")
    shown = {r.get_attribute("data-answer"): num(r.find_element("css selector", ".bar-value").text)
             for r in rows}  # fmt: skip
    assert shown == raw["trace"]["votes"]
    win = page.css(".bar-row.chosen").get_attribute("data-answer")
    assert win == raw["answer"]
    page.screenshot("vote_tally")


def test_tournament_shows_each_comparison_both_orders(
    page: Viewer, traces: dict[str, Path]
) -> None:
    raw = load(traces["tournament"])[0]["trace"]
    show(page, "tournament")
    games = page.all(".bracket .game")
    assert len(games) == len(raw["comparisons"])
    for game, comp in zip(games, raw["comparisons"], strict=True):
        assert game.get_attribute("data-pair") == ",".join(map(str, comp["pair"]))
        assert len(game.find_elements("css selector", ".order")) == 2
    assert f"ties {raw['ties']}" in page.text("#tournament-counts")
    page.screenshot("tournament")


def test_diffusion_fk_run_shows_checkpoint_images_and_rewards(
    page: Viewer, traces: dict[str, Path]
) -> None:
    raw = load(traces["fk_steering"])
    checkpoints = raw["trace"]["checkpoints"]
    show(page, "fk_steering")
    images = page.all("svg.genealogy image.checkpoint")
    assert len(images) == sum(len(c["rewards"]) for c in checkpoints)
    assert all(i.get_attribute("href").startswith("data:image/png") for i in images)
    rewards = [num(t.text[2:]) for t in page.all("svg.genealogy text.reward")]
    assert rewards == pytest.approx([r for c in checkpoints for r in c["rewards"]], rel=1e-3)
    finals = page.all(".images.final figure")
    assert len(finals) == len(raw["candidates"])
    assert page.css(".images.final figure.chosen").get_attribute("data-id") == str(raw["chosen"])
    ledger(page, raw)
    page.screenshot("diffusion_fk")


def test_a_stored_trace_opens_from_its_result_key(viewer: Any, tmp_path: Path) -> None:  # noqa: F811
    store, run_id = make_store(tmp_path)
    v: Viewer = viewer(create_app(store, []))
    v.open(stored_url(run_id, "fake", "arithmetic", "beam_search[step_check]", 4, 0,
                      "chain_sum-0-1"))  # fmt: skip
    assert v.error() == ""
    assert v.text('#summary [data-key="problem"] .value') == "chain_sum-0-1"
    assert len(v.all("svg.tree g.node.chosen")) >= 2
    v.screenshot("stored_trace")


@pytest.mark.parametrize(
    ("text", "said"),
    [("[{", "truncated?"), ('[{"trace_version": 9, "candidates": []}]', "trace version 9")],
)
def test_a_bad_trace_shows_its_error_not_a_traceback(
    viewer: Any,  # noqa: F811
    tmp_path: Path,
    text: str,
    said: str,
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    v: Viewer = viewer(create_app(None, [path]))
    v.driver.get(v.url + "/trace?file=0")
    v.wait(lambda d: v.error())
    assert said in v.error() and "Traceback" not in v.driver.page_source
    v.driver.get(v.url + "/api/trace?file=0")
    assert said in v.driver.page_source
    if said == "truncated?":
        v.driver.get(v.url + "/trace?file=0")
        v.screenshot("bad_trace")
