"""The live page's fold (issue 18): each poll folds in only the rows stored since the last
one (`Store.stored_after`), and shows what a full read of the run shows: the same leaders,
votes, tallies and units done, on pools with ties, answers equal only in canonical form,
unanswered and unverified samples, slices stored out of index order and rows added between
polls. The full read below is the page's code before the fold (every sample read each poll)."""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any

import pytest

from testtime.core.answers import canonical
from testtime.lab.analysis.replay import canonicals
from testtime.lab.data.rows import ProblemRow, ResultRow, SampleRow, Unit
from testtime.lab.data.spec import parse_spec, spec_key
from testtime.lab.data.store import Store, open_store
from testtime.lab.execution import runner
from testtime.view import live_data, store_data

SPEC = parse_spec({
    "name": "fold", "model": "fake", "task": {"name": "arithmetic", "params": {"size": 20}},
    "problems": 3, "budgets": [1, 2], "pool": 16, "seeds": [0, 1],
    "strategies": ["self_consistency",
                   {"name": "beam_search", "verifier": "step_check", "budgets": [4, 8]}],
})  # fmt: skip
RUN = "fold-run"
TASK = spec_key(SPEC.tasks[0])
ANSWERS = ["5", "5.0", " 5", "6", "06", "7", None, "1,000", "1000"]  # some equal in form


def _full_read(db: Store, run_id: str) -> list[dict[str, Any]]:
    """The leaders as the page read them before the fold: every sample, every poll."""
    canon = canonicals(db, run_id)
    pools: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for task, problem, model, pool, seed, answer, correct in db.db.execute(
        "SELECT task, problem, model, pool, seed, answer, correct FROM samples WHERE run = ?"
        " ORDER BY idx",
        (run_id,),
    ):
        pools.setdefault((task, problem, model, pool, seed), []).append(
            {"answer": answer, "correct": correct}
        )
    out = []
    for (task, problem, model, pool, seed), found in pools.items():
        shaped = store_data.grouped(found, canon.get(task, canonical))
        top = next((g for g in shaped["groups"] if g["leader"]), None)
        out.append({
            "task": task, "problem": problem, "source": f"pool {pool}", "model": model,
            "seed": seed, "answer": top["answer"] if top else None,
            "votes": top["count"] if top else 0, "of": shaped["size"],
            "correct": None if top is None else top["correct"] == top["count"],
        })  # fmt: skip
    best: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for task, problem, model, arm, budget, seed, answer, correct in db.db.execute(
        "SELECT task, problem, model, arm, budget, seed, answer, correct FROM results"
        " WHERE run = ?",
        (run_id,),
    ):
        key = (task, problem, model, arm, seed)
        if key not in best or budget > best[key][0]:
            best[key] = (budget, answer, correct)
    for (task, problem, model, arm, seed), (budget, answer, correct) in best.items():
        out.append({
            "task": task, "problem": problem, "source": f"{arm} at {budget}", "model": model,
            "seed": seed, "answer": answer, "votes": None, "of": None,
            "correct": None if correct is None else bool(correct),
        })  # fmt: skip
    return out


def _units_done(db: Store, run_id: str) -> int:
    """Units stored, as a resume counts them (`runner._stored` over `Store.done`)."""
    problems = {TASK: [p.problem for p in db.problems(run_id, TASK)]}
    samples, results = db.done(run_id)
    return sum(1 for u in runner.plan_units(SPEC, problems) if runner._stored(u, samples, results))


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["task"], row["problem"], row["source"], row["model"], row["seed"])


def _new_store(path: Path) -> None:
    with open_store(path) as db:
        db.create_run(RUN, "fold", "test", SPEC.to_dict(), {})
        db.put_problems(RUN, [ProblemRow(TASK, f"p{i}", i, "[]", "5") for i in range(3)])


def _units(seed: int) -> list[Unit]:
    """The grid's units in a shuffled order: a pool's second slice often lands first."""
    problems = {TASK: ["p0", "p1", "p2"]}
    units = list(runner.plan_units(SPEC, problems))
    random.Random(seed).shuffle(units)
    return units


def _put(db: Store, unit: Unit, rng: random.Random) -> None:
    if unit.pool is None:
        answer = rng.choice([a for a in ANSWERS if a is not None])
        correct = rng.choice([True, False, None])  # None: no gold to check against
        db.put(RUN, unit, [], ResultRow(answer, correct, 0, False, {"flops": 1.0}, None, []))
        return
    rows = [
        SampleRow(i, "t", answer, rng.choice([True, False, None]) if answer else None, "eos",
                  1, 1, 1.0, 0.0)
        for i in range(unit.first, unit.first + unit.count)
        for answer in [rng.choice(ANSWERS)]
    ]  # fmt: skip
    db.put(RUN, unit, rows, None)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int, int]]:
    """Each `stored_after` call: (after sample rowid, after result rowid, samples, results)."""
    calls: list[tuple[int, int, int, int]] = []
    real = Store.stored_after

    def spy(self: Store, run_id: str, sample: int, result: int) -> Any:
        found = real(self, run_id, sample, result)
        calls.append((sample, result, len(found[0]), len(found[1])))
        return found

    monkeypatch.setattr(Store, "stored_after", spy)
    live_data._FOLDS.clear()
    return calls


def test_each_poll_folds_in_only_new_rows_and_shows_the_full_reads_leaders(
    tmp_path: Path, reads: list[tuple[int, int, int, int]]
) -> None:
    path = tmp_path / "s.db"
    _new_store(path)
    rng = random.Random(7)
    units = _units(3)
    put_since = [0, 0]  # samples and results stored since the last poll
    polls = 0
    with open_store(path) as db:
        for step, unit in enumerate(units):
            _put(db, unit, rng)
            put_since[unit.pool is None] += unit.count if unit.pool is not None else 1
            if step % 3 and step != len(units) - 1:
                continue  # several units between two polls, some polls after one
            with open_store(path, readonly=True) as view:
                got = live_data.run_progress(view, RUN)
                want = sorted(_full_read(view, RUN), key=_key)
                assert sorted(got["leaders"], key=_key) == want
                assert got["units_done"] == _units_done(view, RUN)
            assert reads[-1][2:] == tuple(put_since)  # each row read once, none missed
            put_since = [0, 0]
            polls += 1
    assert len(reads) == polls  # never read the run again from its start
    assert reads[0][:2] == (0, 0)
    assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in itertools.pairwise(reads))
    assert got["units_done"] == got["units_total"] == len(units)
    pools = [r for r in got["leaders"] if r["source"].startswith("pool")]
    assert len(pools) == 6 and all(r["of"] == 16 for r in pools)
    assert {r["source"] for r in got["leaders"]} >= {"beam_search[step_check] at 8"}


def test_a_tie_goes_to_the_lowest_index_though_its_slice_was_stored_last(
    tmp_path: Path, reads: list[tuple[int, int, int, int]]
) -> None:
    path = tmp_path / "s.db"
    _new_store(path)
    second, first = (Unit("fake", TASK, 0, "p0", "T0.8-p1", at, 8) for at in (8, 0))
    with open_store(path) as db:
        # idx 8..15: '5' x 4 then '6' x 4 (stored first); idx 0..7: '6.0', '5' x 3, then
        # '6' x 2 and two without an answer: 7 votes each, '6' seen first by index
        texts = ["5"] * 4 + ["6"] * 4
        db.put(RUN, second, [SampleRow(8 + i, "t", a, a == "5", "eos", 1, 1, 1.0, 0.0)
                             for i, a in enumerate(texts)], None)  # fmt: skip
        view = open_store(path, readonly=True)
        before = live_data.leaders(view, RUN)
        assert [(r["answer"], r["votes"], r["of"]) for r in before] == [("5", 4, 8)]
        texts2: list[str | None] = ["6.0", "5", "5", "5", "6", "6", None, None]
        db.put(RUN, first, [SampleRow(i, "t", a, None if a is None else a == "5", "eos", 1, 1,
                                      1.0, 0.0) for i, a in enumerate(texts2)], None)  # fmt: skip
        after = live_data.leaders(view, RUN)
        assert after == _full_read(view, RUN)
        assert [(r["answer"], r["votes"], r["of"], r["correct"]) for r in after] == [
            ("6", 7, 16, False)
        ]
        view.close()
    assert [r[2] for r in reads] == [8, 8]


def test_a_fold_that_lost_count_of_the_rows_starts_over(
    tmp_path: Path, reads: list[tuple[int, int, int, int]]
) -> None:
    path = tmp_path / "s.db"
    _new_store(path)
    rng = random.Random(1)
    with open_store(path) as db:
        for unit in _units(5)[:12]:
            _put(db, unit, rng)
    with open_store(path, readonly=True) as view:
        live_data.run_progress(view, RUN)
        (fold,) = live_data._FOLDS.values()
        fold.sample_at -= 3  # as if three rows had been folded twice: the counts disagree
        got = live_data.run_progress(view, RUN)
        assert sorted(got["leaders"], key=_key) == sorted(_full_read(view, RUN), key=_key)
        assert got["units_done"] == _units_done(view, RUN) == 12
    assert reads[-1][:2] == (0, 0)  # read again from the start

    path.unlink()  # the store made again at the same path: the same run id, other rows
    _new_store(path)
    with open_store(path) as db:
        for unit in _units(6)[:4]:
            _put(db, unit, rng)
    with open_store(path, readonly=True) as view:
        got = live_data.run_progress(view, RUN)
        assert sorted(got["leaders"], key=_key) == sorted(_full_read(view, RUN), key=_key)
        assert got["units_done"] == 4
