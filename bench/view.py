"""How fast the viewer's pages open in headless Chromium (issue 18). Not a timed test: it
prints times; the goal is under 2 s a page.

    python bench/view.py [--nodes 2000] [--rounds 5]

Sections (each prints its own lines):
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


def open_page(driver: Any, url: str) -> float:
    """Seconds from asking for the page to its script's data-ready."""
    started = time.perf_counter()
    driver.get(url)
    while not driver.execute_script("return document.body.dataset.ready === '1'"):
        if time.perf_counter() - started > 60:
            raise RuntimeError(f"{url} was not ready in 60 s")
        time.sleep(0.005)
    return time.perf_counter() - started


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    trace_section(args.nodes, args.rounds)


if __name__ == "__main__":
    main()
