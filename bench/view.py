"""How fast the viewer's pages open in headless Chromium (issue 18). Not a timed test: it
prints times; the goal is under 2 s a page.

    python bench/view.py [--nodes 2000] [--rounds 5] [--samples 100000] [--only trace|store|live]
                         [--store-start cold|warm]

Sections (each prints its own lines):
- store: a lab store of `--samples` samples (1,000 problems x a pool of 100, written straight
  through the Store API in a temporary folder, as `lab run` would store them): the runs page,
  a run's page (table and plots; its first open replays the analysis, later opens reuse it)
  and one problem's page, each from the request to drawn (body[data-ready]). Measured twice,
  each in a fresh process (nothing kept from the other): "cold", the app made without its
  start-up warm-up, so the run page's first open replays the analysis; and "warm", the app
  as `testtime view` makes it (`warm=True`: the newest runs replayed in the background from
  start-up), opened as a user would, once the browser is up (the delay is printed).
- live: one poll of the live page's API on that store while its run is marked running (no
  browser): a viewer's first poll, a poll with nothing new, a poll after one more unit.
- trace: the page of a 2,000-node MCTS trace (made synthetically in the trace schema:
  running MCTS that large on the fake model is slow and adds nothing), from the request to
  the tree drawn (body[data-ready]), with the nodes drawn counted.

It needs what the browser tests need (Debian chromium + chromium-driver, selenium).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "integration"))
from viewer_browser import Served, browser

from testtime.core.types import TRACE_VERSION
from testtime.view.app import create_app


def mcts_trace(nodes: int, seed: int = 0) -> dict[str, Any]:
    """One result as `testtime run -s mcts --trace` writes it, with `nodes` tree nodes:
    each new node hangs under a random earlier one (children of a node: 1-4), valued by a
    random PRM score and backed up to the root as MCTS does."""
    rng = random.Random(seed)
    tree: list[dict[str, Any]] = [
        {"candidate": -1, "parent": None, "children": [], "visits": 0, "value": 0.0}
    ]
    candidates = []
    for i in range(1, nodes):
        parent = rng.randrange(i)
        while len(tree[parent]["children"]) >= 4:
            parent = rng.randrange(i)
        score = rng.random()
        depth_steps = [f"step {k}" for k in range(_depth(tree, parent) + 1)]
        candidates.append({
            "id": i - 1, "parent": tree[parent]["candidate"] if parent else None,
            "text": "\n\n".join(depth_steps), "steps": depth_steps, "answer": str(i % 7),
            "correct": None, "scores": {"prm": score}, "prompt_tokens": 40,
            "generated_tokens": 12, "finish_reason": "stop", "tool_calls": None,
        })  # fmt: skip
        tree.append({"candidate": i - 1, "parent": parent, "children": [], "visits": 0,
                     "value": 0.0})  # fmt: skip
        tree[parent]["children"].append(i)
        node: int | None = i
        while node is not None:
            tree[node]["visits"] += 1
            tree[node]["value"] += score
            node = tree[node]["parent"]
    best = max(range(1, nodes), key=lambda j: tree[j]["value"] / tree[j]["visits"])
    chosen = tree[best]["candidate"]
    return {
        "trace_version": TRACE_VERSION, "problem_id": "synthetic", "answer": str(chosen % 7),
        "correct": None, "text": candidates[chosen]["text"], "budget_exhausted": False,
        "strategy": {"kind": "strategy", "name": "mcts", "params": {"iterations": nodes}},
        "cost": {"samples": nodes - 1, "generated_tokens": 12 * (nodes - 1)},
        "candidates": candidates, "trace": {"tree": tree}, "chosen": chosen,
    }  # fmt: skip


def _depth(tree: list[dict[str, Any]], i: int) -> int:
    d = 0
    while tree[i]["parent"] is not None:
        i, d = tree[i]["parent"], d + 1
    return d


# Waits in the page, not by polling it from here: a poll is a round trip through
# chromedriver each time, and on a machine of two cores that CPU is taken from the server
# being measured. Times are the page's own clock (performance.now(): ms from the start of
# its navigation). "Shown": the page is up, drawn or saying what it waits for ('replaying
# ...' on a run's page); when it already is once loaded, the load's end is that time.
WAIT = """
const done = arguments[arguments.length - 1];
const ready = () => document.body.dataset.ready === '1';
const up = () => ready() || document.querySelector('.loading') !== null;
const loaded = performance.getEntriesByType('navigation')[0].loadEventEnd || performance.now();
let shown = up() ? loaded : null;
const check = () => {
  if (shown === null && up()) shown = performance.now();
  if (!ready()) return false;
  done([shown, performance.now()]);
  return true;
};
if (!check()) {
  new MutationObserver((_, watcher) => { if (check()) watcher.disconnect(); })
    .observe(document.body, { attributes: true, childList: true, subtree: true });
}
"""


def open_page(driver: Any, url: str, shown: list[float] | None = None) -> float:
    """Seconds from the page's navigation start to its script's data-ready; the seconds
    until it was shown (drawn or saying what it waits for) are appended to `shown`."""
    driver.set_script_timeout(60)
    driver.get(url)  # returns once the document has loaded
    up, ready = driver.execute_async_script(WAIT)
    if shown is not None:
        shown.append(up / 1000)
    return float(ready) / 1000


def trace_section(nodes: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mcts.json"
        path.write_text(json.dumps([mcts_trace(nodes)], indent=1))
        size = path.stat().st_size
        served = Served(create_app(None, [path]))
        driver = browser()
        try:
            open_page(driver, served.url + "/")  # the browser's first start is not the page's
            times = [open_page(driver, served.url + "/trace?file=0") for _ in range(rounds)]
            drawn = driver.execute_script("return document.querySelectorAll('g.node').length")
            error = driver.execute_script("return document.getElementById('error').textContent")
        finally:
            driver.quit()
            served.stop()
    print(f"trace: MCTS page, {nodes} nodes ({drawn} drawn){', error: ' + error if error else ''}")
    print(f"  open to drawn: median {statistics.median(times):.2f} s, "
          f"min {min(times):.2f}, max {max(times):.2f} over {rounds} loads"
          f" (trace file {size / 1e6:.1f} MB)")  # fmt: skip


STORE_SPEC = {
    "name": "bench", "model": "fake", "task": {"name": "arithmetic", "params": {"size": 1000}},
    "budgets": [1, 4, 16, 64], "seeds": [0],
    "strategies": ["self_consistency", {"name": "best_of_n", "verifier": "fake"}],
}  # fmt: skip


def big_store(path: Path, samples: int, pool: int = 100, seed: int = 0) -> str:
    """A finished run of `samples` stored samples (problems x pool) written through the
    Store API: answers drawn around the gold one, scores and costs like the fake's."""
    from testtime.lab.data.rows import ProblemRow, SampleRow, Unit
    from testtime.lab.data.spec import parse_spec, spec_key
    from testtime.lab.data.store import open_store
    from testtime.lab.execution.work import pool_key

    problems = max(1, samples // pool)
    spec = parse_spec({**STORE_SPEC, "problems": problems, "pool": pool})
    task = spec_key(spec.tasks[0])
    where = pool_key(spec.arms[0].sampling)
    verifier = spec_key(spec.arms[1].verifier) if spec.arms[1].verifier else "fake"
    rng = random.Random(seed)
    run_id = "bench-store"
    with open_store(path) as db:
        db.create_run(run_id, "bench", "bench/view.py", spec.to_dict(),
                      {"n_params": {"fake": 1_000_000}})  # fmt: skip
        db.put_problems(run_id, [ProblemRow(task, f"p{i}", i, "[]", str(i % 50))
                                 for i in range(problems)])  # fmt: skip
        for i in range(problems):
            gold, skill = i % 50, rng.random()
            rows = []
            for j in range(pool):
                answer = gold if rng.random() < skill else gold + rng.randint(1, 5)
                tokens = rng.randint(10, 60)
                rows.append(SampleRow(
                    j, f"Let me think.\n\nAnswer: {answer}", str(answer), answer == gold, "eos",
                    40, tokens, 2e6 * tokens, 0.001, {verifier: rng.random()}, 0.0, 0,
                    {verifier: 0.0},
                ))  # fmt: skip
            db.put(run_id, Unit("fake", task, 0, f"p{i}", where, 0, pool), rows, None)
        db.set_status(run_id, "success", 1.0)
    return run_id


def store_section(samples: int, rounds: int, start: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "store.sqlite"
        started = time.perf_counter()
        run_id = big_store(path, samples)
        built = time.perf_counter() - started
        size = path.stat().st_size
        up = time.perf_counter()
        served = Served(
            create_app(path, [], warm=True) if start == "warm" else create_app(path, [])
        )
        driver = browser()
        asked = 0.0  # seconds from the app's start to the run page's first request
        try:
            open_page(driver, served.url + "/")
            pages = {
                "runs page": "/store",
                "run page (first: replays the analysis)": f"/store/run?id={run_id}",
                "run page (again)": f"/store/run?id={run_id}",
                "problem page": f"/store/problem?run={run_id}&task=arithmetic(size%3D1000)"
                "&problem=p7",
            }
            times: dict[str, list[float]] = {}
            shown: list[float] = []  # the first open of the run's page: when it showed
            for name, url in pages.items():
                n = 1 if "first" in name else rounds
                first = shown if "first" in name else None
                asked = asked or (time.perf_counter() - up if first is not None else 0.0)
                times[name] = [open_page(driver, served.url + url, first) for _ in range(n)]
                error = driver.execute_script("return document.getElementById('error').textContent")
                if error:
                    raise RuntimeError(f"{name}: {error}")
        finally:
            driver.quit()
            served.stop()
    how = (
        "app made without its warm-up"
        if start == "cold"
        else f"as `testtime view` starts it, the run page asked for {asked:.1f} s after start-up"
    )
    print(f"store, {start} ({how}): {samples} samples ({size / 1e6:.0f} MB store, "
          f"written in {built:.1f} s)")  # fmt: skip
    for name, t in times.items():
        print(f"  {name}: median {statistics.median(t):.2f} s, min {min(t):.2f}, "
              f"max {max(t):.2f} over {len(t)} load{'s' if len(t) > 1 else ''}")  # fmt: skip
        if "first" in name:
            print(f"    of which the page was shown (waiting, 'replaying ...') after "
                  f"{shown[0]:.2f} s; table and plots drawn after {t[0]:.2f} s")  # fmt: skip


def live_section(samples: int, rounds: int) -> None:
    """One poll of the live page's API (/api/live/run) on the `--samples` store, its run
    marked running: the first poll of a viewer, a poll with nothing new, and a poll after
    the lab stored one more pool unit of 100 samples (a problem added to the run)."""
    from urllib.request import urlopen

    from testtime.lab.data.rows import ProblemRow, SampleRow, Unit
    from testtime.lab.data.spec import parse_spec, spec_key
    from testtime.lab.data.store import open_store
    from testtime.lab.execution.work import pool_key

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "store.sqlite"
        run_id = big_store(path, samples)
        spec = parse_spec({**STORE_SPEC, "problems": 1, "pool": 100})
        task, where = spec_key(spec.tasks[0]), pool_key(spec.arms[0].sampling)
        with open_store(path) as db:
            db.set_status(run_id, "started")
        served = Served(create_app(path, []))
        url = f"{served.url}/api/live/run?id={run_id}"

        def poll() -> tuple[float, dict[str, Any]]:
            started = time.perf_counter()
            with urlopen(url) as reply:
                found = json.loads(reply.read())
            return time.perf_counter() - started, found

        def one_more(n: int) -> None:  # the lab stores one more unit: a new problem's pool
            with open_store(path) as db:
                db.put_problems(run_id, [ProblemRow(task, f"x{n}", 10**6 + n, "[]", "1")])
                rows = [SampleRow(j, "Answer: 1", "1", True, "eos", 40, 20, 4e7, 0.001)
                        for j in range(100)]  # fmt: skip
                db.put(run_id, Unit("fake", task, 0, f"x{n}", where, 0, 100), rows, None)

        try:
            first, found = poll()
            same = [poll()[0] for _ in range(rounds)]
            grown = []
            for n in range(rounds):
                one_more(n)
                took, found = poll()
                grown.append(took)
        finally:
            served.stop()
    assert found["samples"] == samples + 100 * rounds, found["samples"]
    print(f"live: one poll of /api/live/run, {samples} samples, {len(found['leaders'])} leaders")
    print(f"  first poll: {first:.3f} s")
    for name, t in (("nothing new", same), ("after one more unit (100 samples)", grown)):
        print(f"  {name}: median {statistics.median(t):.3f} s, min {min(t):.3f}, "
              f"max {max(t):.3f} over {len(t)} polls")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--only", choices=("trace", "store", "live"))
    ap.add_argument("--store-start", choices=("cold", "warm"), help="one store measurement, here")
    args = ap.parse_args()
    if args.store_start:
        store_section(args.samples, args.rounds, args.store_start)
        return
    if args.only in (None, "trace"):
        trace_section(args.nodes, args.rounds)
    if args.only in (None, "live"):
        live_section(args.samples, args.rounds)
    if args.only in (None, "store"):
        for start in ("cold", "warm"):  # each in a fresh process: no analysis kept between
            argv = ["--samples", str(args.samples), "--rounds", str(args.rounds)]
            sys.stdout.flush()
            subprocess.run([sys.executable, __file__, *argv, "--store-start", start], check=True)


if __name__ == "__main__":
    main()
