"""Benchmark: what the experiment store costs a real run, measured inside that run.

Runs a small lab experiment on the embedded model (default 12 problems, a pool of 16
samples, self-consistency and best-of-N with self-certainty, adaptive consistency at
budget 8) into a fresh store, timing every store write (one transaction per finished
unit, WAL, synchronous=NORMAL) against the run's wall time, and prints the ratio
(target: under 2%). Then replays the run (analysis + report) to show that rebuilding
every curve costs seconds, not a regeneration.

    python bench/lab.py                 # about 2-3 minutes on 2 cores
    python bench/lab.py --problems 4    # quicker
    python bench/lab.py --model fake    # the store's cost with no model at all
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from testtime.generators.base import Generator
from testtime.generators.models import open_generator
from testtime.lab.analysis.replay import analyse
from testtime.lab.data.spec import parse_spec
from testtime.lab.data.store import Store, open_store
from testtime.lab.execution import runner
from testtime.lab.reports.llm import write_report


class TimedStore(Store):
    """A store that adds up the seconds spent in its unit writes."""

    write_seconds = 0.0
    writes = 0

    def put(self, *args: Any, **kwargs: Any) -> None:
        started = time.perf_counter()
        super().put(*args, **kwargs)
        TimedStore.write_seconds += time.perf_counter() - started
        TimedStore.writes += 1


LOAD = {"seconds": 0.0}


def timed_open(name: str) -> Generator:
    """Open the model, timing it, so the ratio is against generation alone."""
    started = time.perf_counter()
    generator = open_generator(name)
    LOAD["seconds"] += time.perf_counter() - started
    return generator


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--problems", type=int, default=12)
    p.add_argument("--pool", type=int, default=16)
    a = p.parse_args()
    spec = parse_spec({
        "name": "bench", "model": a.model, "task": "arithmetic", "problems": a.problems,
        "budgets": [1, 4, 16], "pool": a.pool, "max_tokens": 128,
        "strategies": ["self_consistency", {"name": "best_of_n", "verifier": "self_certainty"},
                       {"name": "adaptive_consistency", "budgets": [8]}],
    })  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store.sqlite"
        open_store(path).close()
        with TimedStore(path) as db:
            plan = runner.prepare(db, spec, "bench")
            wall = runner.execute(
                db, spec, plan, lambda: runner.run_local(db, spec, plan, generators=timed_open)
            )
            wall -= LOAD["seconds"]
            samples = len(db.samples(plan.run_id))
            started = time.perf_counter()
            analysis = analyse(db, plan.run_id)
            write_report(analysis, Path(tmp) / "report")
            replay = time.perf_counter() - started
    w = TimedStore.write_seconds
    print(f"model {a.model}: {len(plan.units)} units, {samples} pool samples stored")
    print(
        f"generation wall time     {wall:8.2f} s (model loading, {LOAD['seconds']:.1f} s, left out)"
    )
    print(f"store writes             {w:8.3f} s in {TimedStore.writes} transactions "
          f"({1000 * w / max(1, TimedStore.writes):.2f} ms each)")  # fmt: skip
    print(f"write overhead           {100 * w / wall:8.2f} % of the run (target < 2%)")
    print(f"replay + report          {replay:8.2f} s (every curve, fit and plot, no generation)")


if __name__ == "__main__":
    main()
