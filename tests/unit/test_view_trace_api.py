"""The trace viewer's JSON API (issue 18): each kind of trace shaped as the page draws it,
checked against the trace file; stored traces; and bad input as a one-line error, never a
traceback (the browser tests are tests/integration/test_view_traces.py)."""

from __future__ import annotations

import html
import itertools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).parents[1] / "integration"))
from viewer_traces import load, make_store, make_traces

from testtime.core.types import TRACE_VERSION
from testtime.view.app import create_app
from testtime.view.traces import stored_url

NAMES = ["beam_search", "mcts", "particle_filtering", "self_consistency", "tournament",
         "fk_steering"]  # fmt: skip


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_traces(tmp_path_factory.mktemp("traces"))


@pytest.fixture(scope="module")
def client(traces: dict[str, Path]) -> TestClient:
    return TestClient(create_app(None, [traces[n] for n in NAMES]))


def api(client: TestClient, name: str, result: int = 0) -> dict[str, Any]:
    got = client.get(f"/api/trace?file={NAMES.index(name)}&result={result}")
    assert got.status_code == 200, got.text
    body: dict[str, Any] = got.json()
    return body


def test_trace_files_carry_their_version_and_chosen_candidate(traces: dict[str, Path]) -> None:
    for name in NAMES:
        data = load(traces[name])
        for r in data if isinstance(data, list) else [data]:
            assert r["trace_version"] == TRACE_VERSION
            chosen = [c for c in r["candidates"] if c["id"] == r["chosen"]]
            assert len(chosen) == 1 and chosen[0]["text"] == r["text"]


def test_beam_tree_has_every_candidate_under_one_root_and_the_chosen_path(
    client: TestClient, traces: dict[str, Path]
) -> None:
    raw = load(traces["beam_search"])[0]
    r = api(client, "beam_search")["result"]
    assert r["kind"] == "tree" and r["chosen"] == raw["chosen"]
    nodes = {n["id"]: n for n in r["shape"]["nodes"]}
    assert set(nodes) == {-1} | {c["id"] for c in raw["candidates"]}
    for c in raw["candidates"]:
        assert nodes[c["id"]]["parent"] == (c["parent"] if c["parent"] is not None else -1)
        assert nodes[c["id"]]["score"] == pytest.approx(c["scores"]["step_check"])
    path = r["shape"]["path"]
    assert path[0] == raw["chosen"] and path[-1] == -1
    assert all(nodes[a]["parent"] == b for a, b in itertools.pairwise(path))
    assert {n["id"] for n in nodes.values() if n["chosen"]} == set(path)
    kept = {i for rnd in raw["trace"]["rounds"] for i in rnd["kept"]}
    assert {n["id"] for n in nodes.values() if n.get("kept")} == kept


def test_mcts_nodes_keep_visits_values_and_the_chosen_path(
    client: TestClient, traces: dict[str, Path]
) -> None:
    raw = load(traces["mcts"])[0]
    r = api(client, "mcts")["result"]
    assert r["kind"] == "mcts"
    nodes = r["shape"]["nodes"]
    assert len(nodes) == len(raw["trace"]["tree"])
    for n, t in zip(nodes, raw["trace"]["tree"], strict=True):
        assert (n["parent"], n["visits"], n["candidate"]) == (
            t["parent"],
            t["visits"],
            t["candidate"],
        )
        assert n["q"] == pytest.approx(t["value"] / t["visits"])
    path = r["shape"]["path"]
    assert nodes[path[0]]["candidate"] == raw["chosen"] and path[-1] == 0


def test_particle_lanes_follow_the_resampling_ancestors(
    client: TestClient, traces: dict[str, Path]
) -> None:
    raw = load(traces["particle_filtering"])[0]["trace"]["steps"]
    shape = api(client, "particle_filtering")["result"]["shape"]
    assert len(shape["steps"]) == len(raw) >= 2
    for t, (s, step) in enumerate(zip(shape["steps"], raw, strict=True)):
        assert s["ess"] == pytest.approx(step["ess"]) and s["resampled"] == step["resampled"]
        assert [lane["candidate"] for lane in s["lanes"]] == step["particles"]
        assert [lane["weight"] for lane in s["lanes"]] == pytest.approx(step["weights"])
        if t:
            before = raw[t - 1]
            expected = before["ancestors"] if before["resampled"] else list(range(4))
            assert [lane["from"] for lane in s["lanes"]] == expected
    cands = {c["id"]: c for c in load(traces["particle_filtering"])[0]["candidates"]}
    for s, before in zip(shape["steps"][1:], raw, strict=False):
        for lane in s["lanes"]:  # a lane's candidate extends the one it descends from
            parent = before["particles"][lane["from"]]
            assert (
                cands[lane["candidate"]]["parent"] in (parent, None) or lane["candidate"] == parent
            )


def test_vote_tally_is_the_traces_votes_with_their_members(
    client: TestClient, traces: dict[str, Path]
) -> None:
    raw = load(traces["self_consistency"])[0]
    groups = api(client, "self_consistency")["result"]["shape"]["groups"]
    assert {g["answer"]: g["weight"] for g in groups} == raw["trace"]["votes"]
    for g in groups:
        assert len(g["members"]) == g["weight"]  # one vote per sample
        assert {c["answer"] for c in raw["candidates"] if c["id"] in g["members"]} == {g["answer"]}
    assert [g["answer"] for g in groups if g["chosen"]] == [raw["answer"]]


def test_tournament_shows_every_comparison_in_both_orders(
    client: TestClient, traces: dict[str, Path]
) -> None:
    raw = load(traces["tournament"])[0]["trace"]
    shape = api(client, "tournament")["result"]["shape"]
    games = [g for rnd in shape["rounds"] for g in rnd]
    assert len(games) == len(raw["comparisons"]) >= 1
    for g, c in zip(games, raw["comparisons"], strict=True):
        assert g["pair"] == c["pair"] and g["winner"] == c["winner"]
        assert [(o["a"], o["b"]) for o in g["orders"]] == [tuple(c["pair"]), tuple(c["pair"][::-1])]
    assert (shape["format"], shape["ties"], shape["entrants"]) == (
        raw["format"], raw["ties"], raw["entrants"])  # fmt: skip


def test_fk_run_has_each_checkpoints_images_rewards_and_weights(
    client: TestClient, traces: dict[str, Path]
) -> None:
    raw = load(traces["fk_steering"])
    r = api(client, "fk_steering")["result"]
    assert r["kind"] == "fk" and r["cost"]["nfe"] == raw["cost"]["nfe"] == 40
    checkpoints = raw["trace"]["checkpoints"]
    assert len(r["shape"]["steps"]) == len(checkpoints) == 2
    for s, c in zip(r["shape"]["steps"], checkpoints, strict=True):
        assert [lane["reward"] for lane in s["lanes"]] == pytest.approx(c["rewards"])
        assert sum(lane["weight"] for lane in s["lanes"]) == pytest.approx(1.0)
        assert all(lane["image"].startswith("data:image/png;base64,") for lane in s["lanes"])
    finals = r["shape"]["final"]
    assert [f["candidate"] for f in finals] == [c["id"] for c in raw["candidates"]]
    assert all(f["image"].startswith("data:image/png;base64,") for f in finals)


def test_stored_result_opens_by_its_key(tmp_path: Path) -> None:
    store, run_id = make_store(tmp_path)
    client = TestClient(create_app(store, []))
    url = stored_url(run_id, "fake", "arithmetic", "beam_search[step_check]", 4, 0, "chain_sum-0-0")
    got = client.get(url.replace("/trace?", "/api/trace?"))
    assert got.status_code == 200, got.text
    r = got.json()["result"]
    assert r["kind"] == "tree" and r["problem_id"] == "chain_sum-0-0"
    assert r["shape"]["path"][0] == r["chosen"] and r["shape"]["path"][-1] == -1
    assert client.get(url).status_code == 200  # the page itself
    loose = client.get(
        f"/api/trace?run={run_id}&arm=beam_search[step_check]&budget=4&problem=chain_sum-0-1"
    )
    assert loose.status_code == 200 and loose.json()["result"]["problem_id"] == "chain_sum-0-1"
    unknown = client.get("/api/trace?run=nope&arm=beam_search[step_check]&budget=4&problem=x")
    assert unknown.status_code == 404 and "no run 'nope'" in unknown.json()["error"]
    other = client.get(
        f"/api/trace?run={run_id}&arm=beam_search[step_check]&budget=9&problem=chain_sum-0-0"
    )
    assert other.status_code == 404 and "no stored result" in other.json()["error"]


def _bad(tmp_path: Path, text: str) -> TestClient:
    path = tmp_path / "bad.json"
    path.write_text(text)
    return TestClient(create_app(None, [path]), raise_server_exceptions=False)


BAD: dict[str, tuple[Callable[[str], str], str]] = {
    "not json": (lambda good: "hello, world", "not JSON"),
    "truncated": (lambda good: good[: len(good) // 2], "truncated?"),
    "newer version": (
        lambda good: good.replace('"trace_version": 1', '"trace_version": 2'),
        "trace version 2; this one reads version 1",
    ),
    "no candidates": (lambda good: json.dumps({"answer": "1"}), "no 'candidates' list"),
    "broken tree": (lambda good: good.replace('"visits"', '"visitz"'), "malformed"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_trace_file_is_one_line_on_the_page_and_the_api(
    case: str, tmp_path: Path, traces: dict[str, Path]
) -> None:
    make, said = BAD[case]
    client = _bad(tmp_path, make(traces["mcts"].read_text()))
    got = client.get("/api/trace?file=0")
    assert got.status_code == 400 and said in got.json()["error"]
    assert "\n" not in got.json()["error"]
    page = client.get("/trace?file=0")
    assert page.status_code == 400 and html.escape(said) in page.text
    assert "Traceback" not in page.text


def test_traces_without_a_version_are_read_as_the_current_one(
    tmp_path: Path, traces: dict[str, Path]
) -> None:
    data = load(traces["beam_search"])
    for r in data:
        del r["trace_version"], r["chosen"]  # as testtime wrote them before the viewer
    client = _bad(tmp_path, json.dumps(data))
    r = client.get("/api/trace?file=0&result=1").json()["result"]
    first = next(c["id"] for c in data[1]["candidates"] if c["text"] == data[1]["text"])
    assert r["kind"] == "tree" and r["chosen"] == first  # found by its text


@pytest.mark.parametrize(
    ("query", "status", "said"),
    [
        ("file=7", 404, "no trace file 7"),
        ("file=x", 400, "no whole number"),
        ("file=0&result=5", 404, "out of range"),
        ("", 400, "say which trace"),
        ("run=r&arm=a&budget=1&problem=p", 400, "no store was given"),
    ],
)
def test_bad_addresses_answer_one_line(
    client: TestClient, query: str, status: int, said: str
) -> None:
    got = client.get(f"/api/trace?{query}")
    assert got.status_code == status and said in got.json()["error"]


def test_traces_page_lists_every_file_and_says_why_one_cannot_be_shown(
    tmp_path: Path, traces: dict[str, Path]
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    client = TestClient(create_app(None, [traces["mcts"], broken]))
    listing = client.get("/api/traces").json()
    assert listing[0]["results"] == 2 and "not JSON" in listing[1]["error"]
    page = client.get("/traces").text
    assert "/trace?file=0" in page and "not JSON" in page
    assert client.get("/traces/1", follow_redirects=False).headers["location"] == "/trace?file=1"
