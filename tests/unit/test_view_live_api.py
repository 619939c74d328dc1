"""Live progress (issue 18): a lab run's progress read from its store while it runs, and the
server's requests in flight (/testtime/requests, its live page), on the fake generator."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from testtime.generators.fake import FakeGenerator
from testtime.lab.data.spec import parse_spec
from testtime.lab.data.store import open_store
from testtime.lab.execution import runner
from testtime.server import Settings, create_app
from testtime.server.limits import Keys
from testtime.view.app import create_app as create_view

SPEC = parse_spec({
    "name": "live", "model": "fake", "task": {"name": "arithmetic", "params": {"size": 20}},
    "problems": 3, "budgets": [1, 2], "pool": 4, "concurrency": 1,
    "strategies": ["self_consistency",
                   {"name": "beam_search", "verifier": "step_check", "budgets": [4]}],
})  # fmt: skip
USER = [{"role": "user", "content": "What is 3 + 4?"}]


def test_a_lab_run_progress_grows_unit_by_unit_then_ends(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    seen: list[dict[str, Any]] = []
    view = TestClient(create_view(path))
    with open_store(path) as db:
        plan = runner.prepare(db, SPEC, "test")

        def on_unit(_: Any) -> None:  # the page's read between two of the lab's commits
            seen.append(view.get("/api/live/run", params={"id": plan.run_id}).json())

        runner.execute(db, SPEC, plan, lambda: runner.run_local(db, SPEC, plan, on_unit=on_unit))
        n_samples = db.db.execute("SELECT count(*) FROM samples").fetchone()[0]
    total = len(plan.units)
    assert [s["units_done"] for s in seen] == list(range(1, total + 1))
    assert all(s["units_total"] == total and not s["finished"] for s in seen)
    assert [s["samples"] for s in seen] == sorted(s["samples"] for s in seen)
    final = view.get("/api/live/run", params={"id": plan.run_id}).json()
    assert final["finished"] and final["status"] == "success"
    assert final["samples"] == n_samples == 3 * 4 and final["flops"] > 0
    pools = [r for r in final["leaders"] if r["source"].startswith("pool")]
    assert len(pools) == 3 and all(r["of"] == 4 and 1 <= r["votes"] <= 4 for r in pools)
    arms = [r for r in final["leaders"] if not r["source"].startswith("pool")]
    assert {r["problem"] for r in arms} == {r["problem"] for r in pools}
    page = view.get("/live/run", params={"id": plan.run_id})
    assert page.status_code == 200 and "js/live.js" in page.text
    listed = view.get("/api/live/runs").json()["runs"]
    assert [r["id"] for r in listed] == [plan.run_id]


def test_live_pages_say_what_is_wrong_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with open_store(path) as db:
        runner.prepare(db, SPEC, "test")
    view = TestClient(create_view(path))
    r = view.get("/live/run", params={"id": "nope"})
    assert (
        r.status_code == 404 and "no run &#x27;nope&#x27;" in r.text and "Traceback" not in r.text
    )
    assert "error" in view.get("/api/live/run", params={"id": "nope"}).json()
    bare = TestClient(create_view(None))
    assert "testtime view --store" in bare.get("/live").text
    assert "testtime view --store" in bare.get("/api/live/runs").json()["error"]


def _client(gen: FakeGenerator, **settings: Any) -> httpx.AsyncClient:
    app = create_app(Settings("fake", **settings), gen)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_the_server_lists_a_request_in_flight_then_how_it_ended() -> None:
    async with _client(FakeGenerator(latency=0.05)) as c:
        body = {"model": "fake", "messages": USER, "seed": 1,
                "testtime": {"strategy": "beam_search", "verifier": "step_check",
                             "params": {"width": 2, "n": 4}}}  # fmt: skip
        asked = asyncio.ensure_future(c.post("/v1/chat/completions", json=body))
        counts: list[int] = []
        while not asked.done():
            listed = (await c.get("/testtime/requests")).json()["requests"]
            if listed and listed[0]["state"] == "running":
                counts.append(listed[0]["progress"]["samples"])
            await asyncio.sleep(0.02)
        answer = (await asked).json()
        assert len(set(counts)) >= 2 and counts == sorted(counts)  # it grew while running
        rid = answer["id"]
        one = (await c.get(f"/testtime/requests/{rid}")).json()
        assert one["state"] == "served" and one["finished"] and one["progress"]["samples"] > 4
        assert one["answer"] == " ".join(answer["choices"][0]["message"]["content"].split())
        assert one["strategy"]["name"] == "beam_search" and one["tree"]["nodes"]
        missing = await c.get("/testtime/requests/chatcmpl-nope")
        assert missing.status_code == 404 and "GET /testtime/requests" in missing.text
        page = await c.get("/testtime/live", params={"id": rid})
        assert page.status_code == 200 and "js/live.js" in page.text
        assert (await c.get("/static/js/live.js")).status_code == 200


async def test_a_search_request_carries_its_tree() -> None:
    async with _client(FakeGenerator()) as c:
        body = {"model": "fake", "messages": USER, "seed": 1, "testtime": {
            "strategy": "beam_search", "verifier": "step_check",
            "params": {"width": 2, "n": 4}}}  # fmt: skip
        r = await c.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        tree = (await c.get(f"/testtime/requests/{r.json()['id']}")).json()["tree"]
    nodes = {n["id"]: n for n in tree["nodes"]}
    children = [n for n in nodes.values() if n["parent"] is not None]
    assert children and all(n["parent"] in nodes for n in children)
    for n in children:  # a child continues its parent's text, by its step
        assert n["text"].startswith(nodes[n["parent"]]["text"].rstrip("…")[:40])
        assert n["step"] and n["text"] == f"{nodes[n['parent']]['text']} {n['step']}"


async def test_a_key_sees_only_its_own_requests() -> None:
    keys = Keys.parse({"ka": {"name": "alice"}, "kb": {"name": "bob"}})
    async with _client(FakeGenerator(), keys=keys) as c:
        body = {"model": "fake", "messages": USER}
        await c.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer ka"})
        mine = await c.get("/testtime/requests", headers={"Authorization": "Bearer ka"})
        theirs = await c.get("/testtime/requests", headers={"Authorization": "Bearer kb"})
        anon = await c.get("/testtime/requests")
    assert len(mine.json()["requests"]) == 1 and theirs.json()["requests"] == []
    assert anon.status_code == 401


async def test_an_ended_request_keeps_its_progress_as_it_was_when_it_ended() -> None:
    async with _client(FakeGenerator(latency=0.05)) as c:
        body = {"model": "fake", "messages": USER, "seed": 1,
                "testtime": {"strategy": "self_consistency", "params": {"n": 3}}}  # fmt: skip
        rid = (await c.post("/v1/chat/completions", json=body)).json()["id"]
        first = (await c.get(f"/testtime/requests/{rid}")).json()["progress"]
        await asyncio.sleep(0.3)
        later = (await c.get(f"/testtime/requests/{rid}")).json()["progress"]
        listed = (await c.get("/testtime/requests")).json()["requests"]
    assert first["samples"] == 3 and 0.05 <= first["elapsed_s"] < 0.3
    assert later == first  # its seconds stopped when it ended
    assert listed[0]["progress"] == first and "tree" not in listed[0]
