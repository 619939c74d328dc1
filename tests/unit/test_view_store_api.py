"""The lab store's JSON APIs and pages (issue 18), through FastAPI's TestClient, on a store
made by the fake generator: what they send is the store's and `lab report`'s own analysis,
samples grouped as the vote grouped them, and bad input answers one clear line."""

from __future__ import annotations

import dataclasses
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from testtime.core.types import Candidate
from testtime.core.voting import group, leader
from testtime.lab.analysis.replay import analyse, canonicals
from testtime.lab.data.spec import parse_spec
from testtime.lab.data.store import open_store
from testtime.lab.execution import runner
from testtime.lab.reports.llm import HEADERS
from testtime.view import store_data
from testtime.view.app import create_app

NOISY = {"name": "fake", "params": {"noise": 0.4}}
SPEC = parse_spec({
    "name": "viewer", "model": "fake", "task": {"name": "arithmetic", "params": {"size": 40}},
    "problems": 3, "budgets": [1, 2, 4], "pool": 4,
    "strategies": ["self_consistency", {"name": "best_of_n", "verifier": NOISY},
                   {"name": "tournament", "label": "knockout"},
                   {"name": "adaptive_consistency", "budgets": [4]}],
})  # fmt: skip


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("view") / "store.sqlite"
    with open_store(path) as db:
        plan = runner.prepare(db, SPEC, "test")
        runner.execute(db, SPEC, plan, lambda: runner.run_local(db, SPEC, plan))
    return path, plan.run_id


@pytest.fixture(scope="module")
def client(stored: tuple[Path, str]) -> TestClient:
    return TestClient(create_app(stored[0], []), raise_server_exceptions=False)


def test_runs_api_lists_each_run_with_the_stores_totals(
    client: TestClient, stored: tuple[Path, str]
) -> None:
    got = client.get("/api/store/runs").json()
    with open_store(stored[0], readonly=True) as db:
        want = db.runs()
    assert [r["id"] for r in got["runs"]] == [stored[1]]
    run = got["runs"][0]
    for key in ("status", "created", "seconds", "samples", "results", "flops"):
        assert run[key] == want[0][key]
    assert run["spec"]["arms"] == [a.label for a in SPEC.arms]
    assert run["spec"]["budgets"] == [1, 2, 4] and run["spec"]["pool"] == 4


def test_run_api_sends_lab_reports_own_analysis(
    client: TestClient, stored: tuple[Path, str]
) -> None:
    got = client.get("/api/store/run", params={"id": stored[1]}).json()
    with open_store(stored[0], readonly=True) as db:
        want = dataclasses.asdict(analyse(db, stored[1]))
    a = got["analysis"]
    assert a["headers"] == list(HEADERS)
    assert [c["label"] for c in a["curves"]] == [c["label"] for c in want["curves"]]
    for mine, theirs in zip(a["curves"], want["curves"], strict=True):
        assert mine["points"] == [dict(p) for p in theirs["points"]]
    assert a["coverage"]["points"] == [dict(p) for p in want["coverage"]["points"]]
    assert a["budgets"] == [1, 2, 4]
    assert any(line.startswith("intervals:") for line in a["summary"])


def test_problem_api_groups_every_sample_as_the_vote_did(
    client: TestClient, stored: tuple[Path, str]
) -> None:
    path, run = stored
    problems = client.get("/api/store/problems", params={"run": run}).json()["problems"]
    assert len(problems) == 3 and all(p["samples"] == 4 for p in problems)
    with open_store(path, readonly=True) as db:
        canon = canonicals(db, run)
        verdicts = db.verdicts(run)
    for p in problems:
        got = client.get(
            "/api/store/problem", params={"run": run, "task": p["task"], "problem": p["problem"]}
        ).json()
        assert got["gold"] == p["gold"]
        (pool,) = got["pools"]
        groups = pool["groups"]
        samples = [s for g in groups for s in g["samples"]]
        assert sorted(s["idx"] for s in samples) == [0, 1, 2, 3]
        assert sum(bool(s["correct"]) for s in samples) == p["correct"]
        for g in groups:
            forms = {canon[p["task"]](s["answer"]) for s in g["samples"] if s["answer"]}
            assert forms == ({g["answer"]} if g["answer"] is not None else set())
            assert g["count"] == len(g["samples"])
            assert g["correct"] == sum(bool(s["correct"]) for s in g["samples"])
        assert groups[0]["leader"] and not any(g["leader"] for g in groups[1:])
        by_idx = sorted(samples, key=lambda s: s["idx"])
        cands = [Candidate("", canon[p["task"]](s["answer"]) if s["answer"] else None)
                 for s in by_idx]  # fmt: skip
        top = leader(group(cands, None, lambda a, b: a == b))
        assert top is not None and groups[0]["answer"] == top.answer
        assert all(set(s["verifier_costs"]) == set(s["scores"]) for s in samples)
        mine = [v for v in verdicts if v[5] == p["problem"]]
        assert len(got["verdicts"]) == len(mine) > 0
        assert [r["arm"] for r in got["results"]] == ["adaptive_consistency"]


def test_an_unknown_run_is_a_404_page_and_json_error(
    client: TestClient, stored: tuple[Path, str]
) -> None:
    api = client.get("/api/store/run", params={"id": "nope"})
    assert api.status_code == 404
    assert api.json()["error"].startswith("no run 'nope'") and stored[1] in api.json()["error"]
    for url in ("/store/run?id=nope", f"/store/compare?a={stored[1]}&b=nope"):
        page = client.get(url)
        assert page.status_code == 404 and "no run &#x27;nope&#x27;" in page.text
        assert "Traceback" not in page.text
    gone = client.get("/api/store/problem", params={"run": stored[1], "task": "x", "problem": "y"})
    assert gone.status_code == 404 and "has no problem 'y'" in gone.json()["error"]


def test_a_missing_or_corrupt_store_or_none_is_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    cases = {
        tmp_path / "missing.sqlite": "no experiment store at",
        bad: "bad.sqlite",
        None: "no lab store opened; start the viewer as `testtime view --store FILE`",
    }
    for path, says in cases.items():
        client = TestClient(create_app(path, []), raise_server_exceptions=False)
        api = client.get("/api/store/runs")
        assert api.status_code == 400 and says in api.json()["error"], api.text
        page = client.get("/store")
        assert page.status_code == 400 and "Traceback" not in page.text
        assert 'class="error"' in page.text


def test_a_failure_of_the_viewer_itself_is_a_page_not_a_traceback(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(db: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(store_data, "runs", broken)
    api = client.get("/api/store/runs")
    assert api.status_code == 500
    assert "RuntimeError: boom" in api.json()["error"] and "Traceback" not in api.text


def test_pages_name_their_view_and_scripts(client: TestClient, stored: tuple[Path, str]) -> None:
    page = client.get("/store/run", params={"id": stored[1]})
    assert page.status_code == 200 and 'data-page="run"' in page.text
    assert "/static/vendor/chartjs/chart.umd.min.js" in page.text
    assert client.get("/static/vendor/chartjs/chart.umd.min.js").status_code == 200
    assert client.get("/static/js/store.js").status_code == 200


def test_view_cli_refuses_a_busy_port_and_a_missing_store_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from testtime.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for args, says in (
            (["--port", str(port)], f"cannot listen on 127.0.0.1:{port}: another process"),
            (["--store", str(tmp_path / "none.sqlite")], "none.sqlite is not a file"),
        ):
            monkeypatch.setattr(sys, "argv", ["testtime", "view", "--no-open", *args])
            with pytest.raises(SystemExit) as exit_:
                main()
            assert exit_.value.code == 2
            lines = capsys.readouterr().err.strip().splitlines()
            assert len(lines) == 1 and says in lines[0], lines


def test_a_page_opened_while_the_warm_up_replays_its_run_waits_for_that_replay(
    stored: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`testtime view` replays the newest runs at start-up (`warm`); a page asking for a run
    while it is replayed gets that replay's analysis, exact and replayed once, not twice."""
    import shutil
    import threading

    path = tmp_path / "copy.sqlite"  # a path of its own: nothing kept from the other tests
    shutil.copy(stored[0], path)
    started, release, replays = threading.Event(), threading.Event(), []
    real = store_data.analysis_json

    def slow(db: Any, run_id: str) -> dict[str, Any]:
        replays.append(threading.current_thread().name)
        started.set()
        assert release.wait(30)
        return real(db, run_id)

    monkeypatch.setattr(store_data, "analysis_json", slow)
    warming = store_data.warm(path)
    assert started.wait(30)  # the warm-up is replaying the run
    got: list[dict[str, Any]] = []

    def open_page() -> None:  # a request: its own thread, its own read of the store
        with store_data.opened(path) as db:
            got.append(store_data.run_view(db, stored[1]))

    page = threading.Thread(target=open_page)
    page.start()
    page.join(0.2)
    assert page.is_alive() and not got  # the page waits for the warm-up's replay
    release.set()
    page.join(30)
    warming.join(30)
    with store_data.opened(path) as db:
        want = real(db, stored[1])
    assert replays == ["testtime-view-warm"]  # replayed once, by the warm-up
    assert got[0]["analysis"] == want


def test_the_warm_up_stops_once_a_page_has_asked_for_a_run(
    stored: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Warming replays the newest runs until a page asks for one: then the page's request
    has the CPU (an older run is not replayed behind it)."""
    import shutil
    import threading

    path = tmp_path / "copy.sqlite"
    shutil.copy(stored[0], path)
    with open_store(path) as db:  # a second run, newer: warmed first, then the older one
        plan = runner.prepare(db, SPEC, "again", run_id="newer")
        assert [r["id"] for r in db.runs()] == [stored[1], "newer"]
        runner.execute(db, SPEC, plan, lambda: runner.run_local(db, SPEC, plan))
    replayed: list[str] = []
    real, real_cached = store_data.analysis_json, store_data.cached_analysis
    asked, pages = threading.Event(), []

    def asking(db: Any, run_id: str) -> dict[str, Any]:
        if threading.current_thread().name != "testtime-view-warm":
            asked.set()  # a page's request has asked (it then waits for the replay)
        return real_cached(db, run_id)

    def open_page(run_id: str) -> None:
        with store_data.opened(path) as db:
            store_data.run_view(db, run_id)

    def counted(db: Any, run_id: str) -> dict[str, Any]:
        replayed.append(run_id)
        if len(replayed) == 1:  # a page asks for this run while the warm-up replays it
            pages.append(threading.Thread(target=open_page, args=(run_id,)))
            pages[0].start()
            assert asked.wait(30)
        return real(db, run_id)

    monkeypatch.setattr(store_data, "analysis_json", counted)
    monkeypatch.setattr(store_data, "cached_analysis", asking)
    store_data.warm(path).join(30)
    pages[0].join(30)
    assert replayed == [plan.run_id]  # the newest run, and no other after the page asked
