"""The lab's spec and store: validation, ids, resume without loss or duplicates, versions."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from testtime.core.errors import ConfigError, DataError
from testtime.core.types import Candidate, Message, Request, candidate_dict, candidate_from_dict
from testtime.generators.fake import FakeGenerator
from testtime.lab.data.spec import parse_spec, spec_from_dict
from testtime.lab.data.store import SCHEMA_VERSION, open_store
from testtime.lab.execution import runner

SPEC = {
    "name": "t",
    "model": "fake",
    "task": "arithmetic",
    "problems": 6,
    "budgets": [1, 2, 4],
    "pool": 12,
    "strategies": [
        "self_consistency",
        {"name": "best_of_n", "verifier": "self_certainty"},
        {"name": "single", "label": "greedy", "params": {"temperature": 0}},
        {"name": "adaptive_consistency", "budgets": [2, 4]},
    ],
}


def _run(path: Path, spec: dict = SPEC, **kw) -> runner.Plan:
    s = parse_spec(spec)
    with open_store(path) as db:
        plan = runner.prepare(db, s, "source text")
        runner.execute(db, s, plan, lambda: runner.run_local(db, s, plan, **kw))
    return plan


def _count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as db:
        return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_spec_resolves_every_parameter_and_one_id_per_grid() -> None:
    spec = parse_spec(SPEC)
    assert [a.label for a in spec.arms] == [
        "self_consistency",
        "best_of_n[self_certainty]",
        "greedy",
        "adaptive_consistency",
    ]
    assert spec.arms[2].budgets == (1,)  # a single sample whatever the budget
    assert spec.to_dict()["arms"][0]["strategy"]["params"]["temperature"] == 0.8
    assert spec.pools() == {(0.8, 1.0): 12, (0.0, 1.0): 1}
    assert parse_spec(SPEC).run_id == spec.run_id
    assert parse_spec({**SPEC, "problems": 7}).run_id != spec.run_id
    assert spec_from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "red"}, "unknown key(s) ['colour']"),
        ({"budgets": [0, 4]}, ">= 1"),
        ({"budgets": [-2]}, ">= 1"),
        ({"strategies": ["magic"]}, "available: adaptive_consistency"),
        ({"strategies": [{"name": "best_of_n", "verifier": "nope"}]}, "unknown verifier 'nope'"),
        ({"strategies": [{"name": "self_consistency", "params": {"m": 3}}]}, "'m'"),
        ({"strategies": [{"name": "single", "colour": 1}]}, "unknown strategy key(s)"),
        ({"strategies": []}, "non-empty list"),
        ({"task": "nope"}, "unknown task 'nope'"),
        ({"pool": 2}, "'pool' (2) must be at least"),
        ({"problems": 0}, "'problems'"),
        ({"strategies": ["self_consistency", "self_consistency"]}, "unique"),
    ],
)
def test_bad_specs_are_refused_whole_with_what_exists(change: dict, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_spec({**SPEC, **change})
    assert message in str(e.value)


def test_all_problems_in_one_error() -> None:
    with pytest.raises(ConfigError) as e:
        parse_spec({**SPEC, "colour": 1, "budgets": [0], "task": "nope"})
    text = str(e.value)
    assert "colour" in text and ">= 1" in text and "unknown task" in text


def test_run_stores_every_sample_and_result_once(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    plan = _run(path)
    assert _count(path, "samples") == 6 * 12 + 6 * 1  # the T=0.8 pool and the greedy pool
    assert _count(path, "results") == 6 * 2  # adaptive at budgets 2 and 4
    assert _count(path, "problems") == 6
    with open_store(path, readonly=True) as db:
        record = db.run(plan.run_id)
    assert record["status"] == "success"
    assert record["source"] == "source text"
    assert record["environment"]["models"] == {"fake": "fake"}
    assert record["environment"]["n_params"] == {"fake": FakeGenerator().n_params}
    again = _run(path)  # the same spec again: nothing left to do
    assert again.resumed and again.pending == ()
    assert _count(path, "samples") == 78


def test_resume_after_a_crash_finishes_without_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    full = tmp_path / "full.db"
    _run(full)
    calls = {"n": 0}

    class Crashing(FakeGenerator):
        async def generate(self, request: Request):  # type: ignore[no-untyped-def]
            calls["n"] += 1
            if calls["n"] > 5:
                raise RuntimeError("power cut")
            return await super().generate(request)

    with pytest.raises(RuntimeError):
        _run(path, generators=lambda _: Crashing())
    partial = _count(path, "samples")
    assert 0 < partial < 78
    with open_store(path, readonly=True) as db:
        assert db.run(parse_spec(SPEC).run_id)["status"] == "error"
    plan = _run(path)
    assert plan.resumed and 0 < len(plan.pending) < len(plan.units)
    assert _count(path, "samples") == 78 and _count(path, "results") == 12
    query = "SELECT model, task, pool, seed, problem, idx, text FROM samples ORDER BY 1,2,3,4,5,6"
    with sqlite3.connect(path) as a, sqlite3.connect(full) as b:
        assert a.execute(query).fetchall() == b.execute(query).fetchall()  # same samples


def test_changed_problems_refuse_a_resume(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    plan = _run(path)
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE problems SET answer = 'x' WHERE position = 0 AND run = ?", (plan.run_id,)
        )
    with pytest.raises(DataError, match="changed since run"):
        _run(path)


def test_newer_corrupt_and_foreign_stores_are_refused(tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    with open_store(newer):
        pass
    with sqlite3.connect(newer) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(DataError, match="newer testtime"):
        open_store(newer)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DataError, match="not a usable experiment store"):
        open_store(junk)
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE x (a)")
    with pytest.raises(DataError, match="not an experiment store"):
        open_store(foreign)
    with pytest.raises(DataError, match="no experiment store"):
        open_store(tmp_path / "missing.db", readonly=True)
    with open_store(tmp_path / "ok.db") as db, pytest.raises(DataError, match="no run 'zzz'"):
        db.run("zzz")


def test_a_pool_drawn_in_slices_equals_one_request() -> None:
    gen = FakeGenerator()
    msgs = (Message("user", "What is 3 + 4?"),)

    async def texts(**kw: int) -> list[str]:
        got = await gen.generate(Request(msgs, temperature=0.8, seed=11, **kw))
        return [c.text for c in got.completions]

    whole = asyncio.run(texts(n=12))
    parts = asyncio.run(texts(n=5)) + asyncio.run(texts(n=7, first_index=5))
    assert whole == parts


def test_searches_run_per_budget_with_their_width_and_a_process_verifier(tmp_path: Path) -> None:
    spec = {
        "name": "search", "model": "fake", "task": "arithmetic", "problems": 3,
        "budgets": [4, 8],
        "strategies": [
            {"name": "beam_search", "verifier": "step_check", "params": {"width": 2}},
            {"name": "particle_filtering", "verifier": "step_check"},
            {"name": "best_of_n", "verifier": "step_check"},
        ],
    }  # fmt: skip
    plan = _run(tmp_path / "s.db", spec)
    with sqlite3.connect(tmp_path / "s.db") as db:
        rows = db.execute("SELECT arm, budget, count(*) FROM results GROUP BY 1, 2").fetchall()
        width = db.execute(
            "SELECT json_extract(candidates, '$[0].steps') FROM results LIMIT 1"
        ).fetchone()[0]
    assert sorted(rows) == [("beam_search[step_check]", 4, 3), ("beam_search[step_check]", 8, 3),
                            ("particle_filtering[step_check]", 4, 3),
                            ("particle_filtering[step_check]", 8, 3)]  # fmt: skip
    assert width is not None and plan.run_id.startswith("search-")
    with pytest.raises(ConfigError, match="at budget 1"):
        parse_spec({**spec, "budgets": [1, 4]})  # beam width 2 > n=1, caught before running


def test_stored_candidates_have_the_trace_schema_and_load_back(tmp_path: Path) -> None:
    spec = {"name": "c", "model": "fake", "task": "arithmetic", "problems": 2, "budgets": [3],
            "strategies": [{"name": "adaptive_consistency", "budgets": [3]}]}  # fmt: skip
    _run(tmp_path / "c.db", spec)
    with sqlite3.connect(tmp_path / "c.db") as db:
        rows = db.execute("SELECT chosen, correct, candidates FROM results").fetchall()
    assert len(rows) == 2
    for chosen, correct, raw in rows:
        stored = json.loads(raw)
        assert all(set(d) == set(candidate_dict(Candidate(""))) for d in stored)  # as --trace
        cands = [candidate_from_dict(d, i) for i, d in enumerate(stored)]
        assert chosen in [c.id for c in cands] and all(c.completion for c in cands)
        picked = next(d for d in stored if d["id"] == chosen)
        assert picked["correct"] == bool(correct)
