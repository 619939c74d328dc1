"""A diffusion run on the lab store's JSON APIs (issue 18), through FastAPI's TestClient, on a
store holding a tiny digit-model run made in-process (and a fake-generator LLM run beside
it): the run's data is `testtime diffuse report`'s own (points, table cells, comparison), a
problem's results are the stored ones with every image's label and reward, and bad input
answers one clear line."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from testtime.lab.data.spec import parse_spec
from testtime.lab.data.store import open_store
from testtime.lab.execution import diffusion as dlab
from testtime.lab.execution import runner
from testtime.lab.reports import diffusion as rep
from testtime.view.app import create_app

SPEC = {
    "kind": "diffusion", "name": "tiny", "digits": [3, 7], "repeats": 2, "steps": 5,
    "budgets": [5, 10], "strategies": ["best_of_n", {"name": "fk_steering", "label": "fk"}],
}  # fmt: skip
LLM = parse_spec({
    "name": "llm", "model": "fake", "task": {"name": "arithmetic", "params": {"size": 20}},
    "problems": 2, "budgets": [1, 2], "pool": 2, "strategies": ["self_consistency"],
})  # fmt: skip


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, str]]:
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as tests/conftest.py's one_torch_thread, for the module
    path = tmp_path_factory.mktemp("viewdiff") / "store.sqlite"
    with open_store(path) as db:
        run_id = dlab.run(db, dlab.parse_diffusion_spec(SPEC), json.dumps(SPEC))
        plan = runner.prepare(db, LLM, "test")
        runner.execute(db, LLM, plan, lambda: runner.run_local(db, LLM, plan))
    torch.set_num_threads(threads)
    yield path, run_id, plan.run_id


@pytest.fixture(scope="module")
def client(stored: tuple[Path, str, str]) -> TestClient:
    return TestClient(create_app(stored[0], []), raise_server_exceptions=False)


def test_run_api_sends_diffuse_reports_own_table_and_points(
    client: TestClient, stored: tuple[Path, str, str]
) -> None:
    path, run_id, _ = stored
    got = client.get("/api/store/run", params={"id": run_id}).json()
    with open_store(path, readonly=True) as db:
        points = rep.analyse(db, run_id)
    d = got["diffusion"]
    assert "note" not in got and got["analysis"] is None  # the report, not a pointer to it
    assert d["headers"] == list(rep.HEADERS) and d["caption"] == rep.CAPTION
    assert d["table"] == [list(row) for row in rep.table_rows(points)]
    assert d["points"] == [json.loads(json.dumps(dataclasses.asdict(p))) for p in points]
    assert [(p["arm"], p["budget"]) for p in d["points"]] == [
        ("best_of_n", 5), ("best_of_n", 10), ("fk", 5), ("fk", 10)
    ]  # fmt: skip
    assert d["axes"] == rep.AXES and d["arms"] == ["best_of_n", "fk"]
    assert d["title"] == rep.title(run_id)
    assert got["brief"]["models"] == d["models"] == ["digits(guidance=0)"]
    assert got["brief"]["tasks"] == ["digits"]


def test_run_apis_problems_count_the_stored_results(
    client: TestClient, stored: tuple[Path, str, str]
) -> None:
    path, run_id, _ = stored
    listed = client.get("/api/store/run", params={"id": run_id}).json()["diffusion"]["problems"]
    with open_store(path, readonly=True) as db:
        rows = db.db.execute(
            "SELECT problem, count(*), sum(correct) FROM results WHERE run = ? GROUP BY problem",
            (run_id,),
        ).fetchall()
    assert [p["problem"] for p in listed] == ["digit-3/0", "digit-3/1", "digit-7/0", "digit-7/1"]
    assert {p["problem"]: (p["results"], p["correct"]) for p in listed} == {
        problem: (n, ok) for problem, n, ok in rows
    }
    assert [(p["prompt"], p["gold"]) for p in listed][::2] == [("draw a 3", "3"), ("draw a 7", "7")]


def test_an_llm_run_keeps_its_own_analysis(
    client: TestClient, stored: tuple[Path, str, str]
) -> None:
    got = client.get("/api/store/run", params={"id": stored[2]}).json()
    assert "diffusion" not in got and got["analysis"]["curves"]
    wrong = client.get("/api/store/diffusion/compare", params={"run": stored[2], "a": "x",
                                                               "b": "y"})  # fmt: skip
    assert wrong.status_code == 400
    assert wrong.json()["error"].endswith("is not a diffusion run; use `testtime lab report`")


def test_compare_api_is_diffuse_reports_comparison(
    client: TestClient, stored: tuple[Path, str, str]
) -> None:
    path, run_id, _ = stored
    got = client.get(
        "/api/store/diffusion/compare", params={"run": run_id, "a": "fk", "b": "best_of_n"}
    ).json()
    with open_store(path, readonly=True) as db:
        want = rep.comparison_rows(rep.compare(db, run_id, "fk", "best_of_n"))
    assert got["table"] == [list(r) for r in want] and len(want) == 2
    assert got["headers"] == list(rep.DIFFERENCE_HEADERS)
    bad = client.get("/api/store/diffusion/compare", params={"run": run_id, "a": "fk", "b": "no"})
    assert bad.status_code == 400
    assert bad.json() == {"error": f"run {run_id} has no arm 'no'; its arms: ['best_of_n', 'fk']"}
    gone = client.get("/api/store/diffusion/compare", params={"run": "nope", "a": "a", "b": "b"})
    assert gone.status_code == 404 and gone.json()["error"].startswith("no run 'nope'")


def test_problem_api_lists_each_result_with_its_images_labels_and_rewards(
    client: TestClient, stored: tuple[Path, str, str]
) -> None:
    path, run_id, _ = stored
    got = client.get(
        "/api/store/problem", params={"run": run_id, "task": "digits", "problem": "digit-7/1"}
    ).json()
    with open_store(path, readonly=True) as db:
        rows = db.db.execute(
            "SELECT arm, budget, answer, correct, chosen, cost, trace, candidates FROM results"
            " WHERE run = ? AND problem = 'digit-7/1' ORDER BY arm, budget",
            (run_id,),
        ).fetchall()
    assert got["kind"] == "diffusion" and got["gold"] == "7" and got["prompt"] == "draw a 7"
    assert [(r["arm"], r["budget"]) for r in got["results"]] == [(a, b) for a, b, *_ in rows]
    for r, (_a, _b, answer, correct, chosen, cost, trace, candidates) in zip(
        got["results"], rows, strict=True
    ):
        assert (r["answer"], r["correct"], r["chosen"]) == (answer, bool(correct), chosen)
        assert r["cost"] == json.loads(cost) and r["trace"] == json.loads(trace)
        assert r["reward"] == json.loads(trace)["chosen_reward"]
        images = json.loads(candidates)
        assert [s["answer"] for s in r["samples"]] == [c["answer"] for c in images]
        assert [s["scores"] for s in r["samples"]] == [c["scores"] for c in images]
        assert [s["chosen"] for s in r["samples"]] == [i == chosen for i in range(len(images))]
        assert r["samples"][chosen]["scores"]["digit_prob"] == r["reward"]
    # fk at 10 nfe has two particles: two images
    fk = next(r for r in got["results"] if (r["arm"], r["budget"]) == ("fk", 10))
    assert len(fk["samples"]) == 2


def test_unknown_problem_and_pages(client: TestClient, stored: tuple[Path, str, str]) -> None:
    _, run_id, _ = stored
    bad = client.get("/api/store/problem", params={"run": run_id, "task": "digits",
                                                   "problem": "digit-9/0"})  # fmt: skip
    assert bad.status_code == 404
    assert bad.json()["error"] == (
        f"run {run_id!r} has no problem 'digit-9/0' of task 'digits'; its tasks: digits "
        "(pick one from the run's page)"
    )
    page = client.get("/store/run", params={"id": run_id})
    assert page.status_code == 200 and '<script src="/static/js/diffusion.js">' in page.text
    assert client.get("/static/js/diffusion.js").status_code == 200
