"""The experiment store: one SQLite file holding every run, problem, sample and result.

WAL, synchronous=NORMAL (durable across a process crash), one transaction per finished
unit of work, and primary keys that name the work (run / model / task / pool or arm /
budget / seed / problem / sample index) with INSERT OR IGNORE, so a run killed at any
moment and started again stores nothing twice and loses nothing it had stored.
Migrations are numbered, each applied in one transaction (all of it or none); a store
written by a newer testtime is refused, never altered. Version 2 adds `verdicts`: a judge's
pairwise comparisons of a pool's samples, stored once and replayed by tournaments of any k.
A store opened for writing is checked first (`PRAGMA quick_check`: ~0.3 s per GB, measured),
so a damaged file is refused before anything is written into it; any SQLite failure leaves
the `with` block as one `DataError` naming the file and what to do.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from testtime.core.errors import ConfigError, DataError
from testtime.lab.data.rows import ProblemRow, ResultRow, SampleRow, Unit, VerdictRow

SCHEMA_VERSION = 3
MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, created REAL NOT NULL, status TEXT NOT NULL,
        source TEXT NOT NULL,      -- the spec as the user gave it (YAML text or flags)
        spec TEXT NOT NULL,        -- the resolved spec, every parameter (JSON)
        environment TEXT NOT NULL, -- package version, model file hashes, params (JSON)
        seconds REAL NOT NULL DEFAULT 0, error TEXT);
    CREATE TABLE problems (
        run TEXT NOT NULL REFERENCES runs(id), task TEXT NOT NULL, problem TEXT NOT NULL,
        position INTEGER NOT NULL, prompt TEXT NOT NULL, answer TEXT,
        PRIMARY KEY (run, task, problem));
    CREATE TABLE samples (
        run TEXT NOT NULL REFERENCES runs(id), model TEXT NOT NULL, task TEXT NOT NULL,
        pool TEXT NOT NULL, seed INTEGER NOT NULL, problem TEXT NOT NULL, idx INTEGER NOT NULL,
        text TEXT NOT NULL, answer TEXT, correct INTEGER, finish TEXT,
        prompt_tokens INTEGER NOT NULL, generated_tokens INTEGER NOT NULL,
        flops REAL NOT NULL, seconds REAL NOT NULL, scores TEXT NOT NULL,
        verifier_flops REAL NOT NULL, verifier_tokens INTEGER NOT NULL,
        PRIMARY KEY (run, model, task, pool, seed, problem, idx));
    CREATE TABLE results (
        run TEXT NOT NULL REFERENCES runs(id), model TEXT NOT NULL, task TEXT NOT NULL,
        arm TEXT NOT NULL, budget INTEGER NOT NULL, seed INTEGER NOT NULL, problem TEXT NOT NULL,
        answer TEXT, correct INTEGER, chosen INTEGER, exhausted INTEGER NOT NULL,
        cost TEXT NOT NULL, trace TEXT, candidates TEXT NOT NULL,
        PRIMARY KEY (run, model, task, arm, budget, seed, problem));
    """,
    2: """
    CREATE TABLE verdicts (
        run TEXT NOT NULL REFERENCES runs(id), model TEXT NOT NULL, task TEXT NOT NULL,
        pool TEXT NOT NULL, judge TEXT NOT NULL, seed INTEGER NOT NULL, problem TEXT NOT NULL,
        i INTEGER NOT NULL, j INTEGER NOT NULL,  -- two pool samples, i < j
        swapped INTEGER NOT NULL,                -- 0: sample i shown as Response A, 1: j
        reply TEXT, parsed TEXT, vote INTEGER,   -- the reply, its letter, the sample voted for
        refused TEXT,                            -- 'same' texts (never asked), 'context'
        cut INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL,  -- the whole prompt
        generated_tokens INTEGER NOT NULL, flops REAL NOT NULL,  -- as if none were cached
        seconds REAL NOT NULL,
        PRIMARY KEY (run, model, task, pool, judge, seed, problem, i, j, swapped));
    """,
    3: """
    -- each pool verifier's FLOPs on this sample (JSON: verifier key -> FLOPs), so a replayed
    -- arm is charged its own verifier, not every verifier that scored the pool
    ALTER TABLE samples ADD COLUMN verifier_costs TEXT NOT NULL DEFAULT '{}';
    """,
}


class Store:
    """A connection to one store file. Use as a context manager or call close()."""

    def __init__(self, path: Path | str, *, readonly: bool = False) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise DataError(
                f"--store {self.path} is a folder; give the store file, e.g. "
                f"{self.path / 'store.sqlite'}"
            )
        if readonly and not self.path.is_file():
            raise DataError(f"no experiment store at {self.path}; run `testtime lab run` first")
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        uri = f"file:{self.path}?mode=ro" if readonly else f"file:{self.path}"
        try:
            self.db = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
        except sqlite3.Error as e:
            raise store_error(self.path, e) from None
        try:
            self.db.execute("PRAGMA busy_timeout = 30000")
            if not readonly:
                self._check()
                self.db.execute("PRAGMA journal_mode = WAL")
                self.db.execute("PRAGMA synchronous = NORMAL")
                self.db.execute("PRAGMA foreign_keys = ON")
            self._migrate(readonly)
        except sqlite3.Error as e:
            self.db.close()
            raise store_error(self.path, e) from None
        except DataError:
            self.db.close()
            raise

    def __enter__(self) -> Store:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:  # fmt: skip
        """Close; an SQLite failure inside the block leaves it as one DataError."""
        self.close()
        if isinstance(exc, sqlite3.Error):
            raise store_error(self.path, exc) from None

    def _check(self) -> None:
        """Refuse a damaged file before writing into it (writes can spread the damage)."""
        found = [str(r[0]) for r in self.db.execute("PRAGMA quick_check(1)")]
        if found != ["ok"]:
            detail = " ".join(found[0].replace("*** in database main ***", "").split())
            raise damaged(self.path, f"database disk image is malformed: {detail}")

    def close(self) -> None:
        self.db.close()

    # -- schema ---------------------------------------------------------------------
    def _migrate(self, readonly: bool) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise DataError(
                f"{self.path} was written by a newer testtime (store version {version}, this "
                f"one reads up to {SCHEMA_VERSION}); upgrade testtime to read it"
            )
        if version == SCHEMA_VERSION:
            return
        if version == 0 and self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise DataError(f"{self.path} is an SQLite file but not an experiment store")
        if readonly:
            raise DataError(f"{self.path} needs upgrading; open it once with `testtime lab run`")
        for step in range(version + 1, SCHEMA_VERSION + 1):
            with self.transaction():
                for statement in MIGRATIONS[step].split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {step}")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic write: everything inside lands, or nothing does."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- runs -----------------------------------------------------------------------
    def create_run(
        self, run_id: str, name: str, source: str, spec: dict[str, Any], env: dict[str, Any]
    ) -> bool:
        """Record a run (status 'started'); False when it already exists (a resume)."""
        with self.transaction():
            cur = self.db.execute(
                "INSERT OR IGNORE INTO runs (id, name, created, status, source, spec, environment)"
                " VALUES (?, ?, ?, 'started', ?, ?, ?)",
                (
                    run_id,
                    name,
                    time.time(),
                    source,
                    json.dumps(spec, sort_keys=True),
                    json.dumps(env, sort_keys=True),
                ),
            )
            return cur.rowcount == 1

    def set_status(
        self, run_id: str, status: str, seconds: float = 0.0, error: str | None = None
    ) -> None:
        with self.transaction():
            self.db.execute(
                "UPDATE runs SET status = ?, seconds = seconds + ?, error = ? WHERE id = ?",
                (status, seconds, error, run_id),
            )

    def set_n_params(self, run_id: str, model: str, n_params: int) -> None:
        """Record a model's parameter count (known once it is loaded) for FLOPs replays."""
        with self.transaction():
            self.db.execute(
                "UPDATE runs SET environment = json_set(environment, ?, ?) WHERE id = ?",
                (f'$.n_params."{model}"', n_params, run_id),
            )

    def run(self, run_id: str) -> dict[str, Any]:
        row = self.db.execute(
            "SELECT id, name, created, status, source, spec, environment, seconds, error"
            " FROM runs WHERE id = ?",
            (run_id,),
        ).fetchone()
        if row is None:
            known = [r[0] for r in self.db.execute("SELECT id FROM runs ORDER BY created")]
            listing = ", ".join(known[-10:]) or "(none yet)"
            raise DataError(
                f"no run {run_id!r} in {self.path}; runs: {listing} (see `testtime lab ls`)"
            )
        keys = (
            "id",
            "name",
            "created",
            "status",
            "source",
            "spec",
            "environment",
            "seconds",
            "error",
        )
        out = dict(zip(keys, row, strict=True))
        out["spec"], out["environment"] = json.loads(out["spec"]), json.loads(out["environment"])
        return out

    def runs(self) -> list[dict[str, Any]]:
        """Every run with its status and totals, oldest first."""
        rows = self.db.execute(
            "SELECT r.id, r.status, r.created, r.seconds,"
            " (SELECT count(*) FROM samples s WHERE s.run = r.id),"
            " (SELECT count(*) FROM results x WHERE x.run = r.id),"
            " (SELECT coalesce(sum(flops + verifier_flops), 0) FROM samples s WHERE s.run = r.id),"
            " (SELECT coalesce(sum(json_extract(cost, '$.flops')), 0) FROM results x"
            "  WHERE x.run = r.id),"
            " (SELECT coalesce(sum(flops), 0) FROM verdicts v WHERE v.run = r.id)"
            " FROM runs r ORDER BY r.created"
        ).fetchall()
        keys = ("id", "status", "created", "seconds", "samples", "results")
        return [{**dict(zip(keys, r[:6], strict=True)), "flops": r[6] + r[7] + r[8]} for r in rows]

    # -- problems -------------------------------------------------------------------
    def put_problems(self, run_id: str, rows: Sequence[ProblemRow]) -> None:
        with self.transaction():
            self.db.executemany(
                "INSERT OR IGNORE INTO problems VALUES (?, ?, ?, ?, ?, ?)",
                [(run_id, r.task, r.problem, r.position, r.prompt, r.answer) for r in rows],
            )

    def problems(self, run_id: str, task: str) -> list[ProblemRow]:
        rows = self.db.execute(
            "SELECT task, problem, position, prompt, answer FROM problems"
            " WHERE run = ? AND task = ? ORDER BY position",
            (run_id, task),
        ).fetchall()
        return [ProblemRow(*r) for r in rows]

    # -- work -----------------------------------------------------------------------
    def done(self, run_id: str) -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]:
        """Stored sample keys (model, task, pool, seed, problem, idx) and result keys
        (model, task, arm, budget, seed, problem) of a run: what a resume skips."""
        samples = set(
            self.db.execute(
                "SELECT model, task, pool, seed, problem, idx FROM samples WHERE run = ?", (run_id,)
            )
        )
        results = set(
            self.db.execute(
                "SELECT model, task, arm, budget, seed, problem FROM results WHERE run = ?",
                (run_id,),
            )
        )
        return samples, results

    def judged(self, run_id: str) -> dict[tuple[Any, ...], int]:
        """How many verdicts each (model, task, pool, judge, seed, problem) of a run has
        stored: a pool of K samples is judged when all K x (K - 1) are (what a resume skips)."""
        rows = self.db.execute(
            "SELECT model, task, pool, judge, seed, problem, count(*) FROM verdicts"
            " WHERE run = ? GROUP BY model, task, pool, judge, seed, problem",
            (run_id,),
        ).fetchall()
        return {tuple(r[:6]): int(r[6]) for r in rows}

    def put(
        self,
        run_id: str,
        unit: Unit,
        samples: Sequence[SampleRow],
        result: ResultRow | None,
        verdicts: Sequence[VerdictRow] = (),
    ) -> None:
        """Store one finished unit of work in one transaction."""
        with self.transaction():
            self.db.executemany(
                "INSERT OR IGNORE INTO verdicts VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, *v.key(unit), *v.values()) for v in verdicts],
            )
            self.db.executemany(
                "INSERT OR IGNORE INTO samples VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, *s.key(unit), *s.values()) for s in samples],
            )
            if result is not None:
                self.db.execute(
                    "INSERT OR IGNORE INTO results VALUES"
                    " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, *result.key(unit), *result.values()),
                )

    def samples(self, run_id: str) -> list[tuple[Any, ...]]:
        """(model, task, pool, seed, problem, idx, answer, correct, generated_tokens, flops,
        scores, verifier_flops, prompt_tokens, verifier_costs), in key order."""
        return self.db.execute(
            "SELECT model, task, pool, seed, problem, idx, answer, correct, generated_tokens,"
            " flops, scores, verifier_flops, prompt_tokens, verifier_costs FROM samples"
            " WHERE run = ?"
            " ORDER BY model, task, pool, seed, problem, idx",
            (run_id,),
        ).fetchall()

    def verdicts(self, run_id: str) -> list[tuple[Any, ...]]:
        """(model, task, pool, judge, seed, problem, i, j, swapped, vote, refused, flops,
        prompt_tokens + generated_tokens), in key order."""
        return self.db.execute(
            "SELECT model, task, pool, judge, seed, problem, i, j, swapped, vote, refused, flops,"
            " prompt_tokens + generated_tokens FROM verdicts WHERE run = ?"
            " ORDER BY model, task, pool, judge, seed, problem, i, j, swapped",
            (run_id,),
        ).fetchall()

    def judged_texts(self, run_id: str) -> list[tuple[Any, ...]]:
        """(model, task, pool, seed, problem, idx, text) of the samples of every pool a judge
        compared (a tournament's replay tells identical texts apart by them), in key order."""
        return self.db.execute(
            "SELECT model, task, pool, seed, problem, idx, text FROM samples s WHERE run = ?"
            " AND EXISTS (SELECT 1 FROM verdicts v WHERE v.run = s.run AND v.model = s.model"
            " AND v.task = s.task AND v.pool = s.pool AND v.seed = s.seed"
            " AND v.problem = s.problem)"
            " ORDER BY model, task, pool, seed, problem, idx",
            (run_id,),
        ).fetchall()

    def kv_terms(self, run_id: str) -> dict[tuple[Any, ...], float]:
        """Per stored result, the sum over its candidates of P*L + L*(L+1)/2 (P prompt and
        L generated tokens): what their KV-cache traffic is proportional to (core.kinetics)."""
        rows = self.db.execute(_kv_terms_sql(), (run_id,)).fetchall()
        return {tuple(r[:6]): float(r[6]) for r in rows}

    def results(self, run_id: str) -> list[tuple[Any, ...]]:
        """(model, task, arm, budget, seed, problem, correct, cost, prompt tokens of the
        first candidate), in key order."""
        return self.db.execute(
            "SELECT model, task, arm, budget, seed, problem, correct, cost,"
            " coalesce(json_extract(candidates, '$[0].prompt_tokens'), 0) FROM results"
            " WHERE run = ? ORDER BY model, task, arm, budget, seed, problem",
            (run_id,),
        ).fetchall()

    # -- one problem, whole (the viewer's reads) -----------------------------------------
    def problem_totals(self, run_id: str) -> list[tuple[Any, ...]]:
        """(task, problem, position, gold answer, stored samples, correct samples, results),
        one per problem of a run, in task and position order."""
        return self.db.execute(
            "SELECT p.task, p.problem, p.position, p.answer, coalesce(s.n, 0),"
            " coalesce(s.ok, 0), coalesce(x.n, 0) FROM problems p"
            " LEFT JOIN (SELECT task, problem, count(*) AS n, sum(correct) AS ok FROM samples"
            "  WHERE run = ?1 GROUP BY task, problem) s"
            "  ON s.task = p.task AND s.problem = p.problem"
            " LEFT JOIN (SELECT task, problem, count(*) AS n FROM results WHERE run = ?1"
            "  GROUP BY task, problem) x ON x.task = p.task AND x.problem = p.problem"
            " WHERE p.run = ?1 ORDER BY p.task, p.position",
            (run_id,),
        ).fetchall()

    def problem_samples(self, run_id: str, task: str, problem: str) -> list[dict[str, Any]]:
        """Every stored sample of one problem with its text, scores and costs, in key order."""
        cur = self.db.execute(
            "SELECT model, pool, seed, idx, text, answer, correct, finish, prompt_tokens,"
            " generated_tokens, flops, seconds, scores, verifier_flops, verifier_tokens,"
            " verifier_costs FROM samples WHERE run = ? AND task = ? AND problem = ?"
            " ORDER BY model, pool, seed, idx",
            (run_id, task, problem),
        )
        out = _dicts(cur)
        for row in out:
            row["scores"] = json.loads(row["scores"])
            row["verifier_costs"] = json.loads(row["verifier_costs"])
        return out

    def problem_verdicts(self, run_id: str, task: str, problem: str) -> list[dict[str, Any]]:
        """A judge's stored comparisons of one problem's pool samples, in key order."""
        cur = self.db.execute(
            "SELECT model, pool, judge, seed, i, j, swapped, reply, parsed, vote, refused,"
            " prompt_tokens, generated_tokens, flops FROM verdicts"
            " WHERE run = ? AND task = ? AND problem = ?"
            " ORDER BY model, pool, judge, seed, i, j, swapped",
            (run_id, task, problem),
        )
        return _dicts(cur)

    def problem_results(
        self, run_id: str, task: str, problem: str, *, traces: bool = False
    ) -> list[dict[str, Any]]:
        """The strategy results stored for one problem (arms run at each budget); with
        `traces`, each one's stored trace and candidates too (JSON text, as stored)."""
        more = ", trace, candidates" if traces else ""
        cur = self.db.execute(
            "SELECT model, arm, budget, seed, answer, correct, chosen, exhausted, cost" + more
            + " FROM results WHERE run = ? AND task = ? AND problem = ?"
            " ORDER BY model, arm, budget, seed",
            (run_id, task, problem),
        )  # fmt: skip
        out = _dicts(cur)
        for row in out:
            row["cost"] = json.loads(row["cost"])
        return out

    # -- a run in progress (the live view folds in what is new) --------------------------
    def stored_after(
        self, run_id: str, sample: int, result: int
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], int, int]:
        """A run's samples stored after rowid `sample` and results after rowid `result` (0:
        all), in the order stored, with how many samples and results the run has, all read
        from one snapshot. Samples: (rowid, model, task, pool, seed, problem, idx, answer,
        correct); results: (rowid, model, task, arm, budget, seed, problem, answer, correct).
        Rows are never deleted and writes are serial, so every row committed after a read
        has a larger rowid than any row that read saw: a reader that keeps the last rowid it
        saw reads each row once, at the cost of the rows new since (a range of the table's
        own rowid b-tree; `+run` keeps SQLite off the run's whole key index)."""
        outer = self.db.in_transaction
        if not outer:
            self.db.execute("BEGIN")  # deferred: one read snapshot, no write lock
        try:
            samples = self.db.execute(
                "SELECT rowid, model, task, pool, seed, problem, idx, answer, correct"
                " FROM samples WHERE rowid > ? AND +run = ? ORDER BY rowid",
                (sample, run_id),
            ).fetchall()
            results = self.db.execute(
                "SELECT rowid, model, task, arm, budget, seed, problem, answer, correct"
                " FROM results WHERE rowid > ? AND +run = ? ORDER BY rowid",
                (result, run_id),
            ).fetchall()
            n_samples = self.db.execute(
                "SELECT count(*) FROM samples WHERE run = ?", (run_id,)
            ).fetchone()[0]
            n_results = self.db.execute(
                "SELECT count(*) FROM results WHERE run = ?", (run_id,)
            ).fetchone()[0]
        finally:
            if not outer:
                self.db.execute("COMMIT")
        return samples, results, int(n_samples), int(n_results)


def _kv_terms_sql() -> str:
    return (
        "SELECT model, task, arm, budget, seed, problem, coalesce(sum("
        " json_extract(c.value, '$.prompt_tokens') * json_extract(c.value, '$.generated_tokens')"
        " + json_extract(c.value, '$.generated_tokens')"
        " * (json_extract(c.value, '$.generated_tokens') + 1) / 2.0), 0)"
        " FROM results, json_each(results.candidates) AS c WHERE run = ?"
        " GROUP BY model, task, arm, budget, seed, problem"
    )


def open_store(path: Path | str, *, readonly: bool = False) -> Store:
    """Open (creating when writable) the store at `path`."""
    try:
        return Store(path, readonly=readonly)
    except OSError as e:  # its folder cannot be made
        raise ConfigError(f"cannot open the experiment store {path}: {e.strerror}") from None


def store_error(path: Path, exc: sqlite3.Error) -> DataError:
    """One line for an SQLite failure: what happened to which file, and what to do next."""
    kind = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    if kind.startswith("SQLITE_CORRUPT") or "malformed" in text:
        return damaged(path, text)
    if kind.startswith("SQLITE_READONLY") or "readonly" in text:
        todo = (
            "it cannot be written here: make the file and its folder writable, or copy it "
            "somewhere writable and point --store at the copy"
        )
    elif kind.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        todo = "another process holds it (a `testtime lab run`?); let it finish, then retry"
    elif kind.startswith("SQLITE_FULL"):
        todo = "the disk is full; free some space and run again (what was stored is kept)"
    elif kind.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
        todo = "check that the path is a file in a folder you may read and write"
    else:  # not SQLite at all (SQLITE_NOTADB), or a failure we cannot name
        return DataError(
            f"{path} is not a usable experiment store ({text}); point --store at another "
            f"file, or move this one aside to start afresh"
        )
    return DataError(f"experiment store {path}: {text}; {todo}")


def damaged(path: Path, what: str) -> DataError:
    """The error for a store whose pages are damaged, with how to recover."""
    return DataError(
        f"experiment store {path} is damaged ({what}); restore it from a backup, or move it "
        f"aside to start afresh (`sqlite3 {path} .recover` may save its rows)"
    )


def _dicts(cur: sqlite3.Cursor) -> list[dict[str, Any]]:
    """A cursor's rows as dicts keyed by column name (the viewer's reads)."""
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
