"""Benchmark: prefix reuse in the engine under step-level search, measured side by side.

Beam search (default n=16, width 4, HF search-and-learn's shape) with the exact step
checker on 16 problems, run twice on the embedded model in one process: with the engine's
prefix cache (a child's prompt = the problem + its parent's steps, which siblings share),
and with the cache off. Seeded outputs are identical either way (checked), so the two
runs do the same work; it prints wall time and recomputed prompt tokens for both, and
the ratios (targets: >= 2x fewer recomputed tokens, >= 1.5x faster).

Two workloads, because what the cache can save is bounded by prefill's share of the time:
  default  the default task's zero-shot prompt (~70 tokens): decoding dominates
  worked   3-5 term chain sums under the `worked` prompt (four step-by-step worked
           examples, ~350 tokens), the usual few-shot set-up of step-level search

    python bench/search.py                          # both, about 20 minutes on 2 cores
    python bench/search.py --workload worked --problems 4 --max-steps 4   # quick
"""

from __future__ import annotations

import argparse
import asyncio
import time

from testtime.generators.models import load_generator
from testtime.strategies.base import STRATEGIES
from testtime.strategies.run import build_task, build_verifier, solve_many
from testtime.tasks.base import Task

CHAIN = '{"min_terms": 3, "max_terms": 5, "min_digits": 1, "max_digits": 1}'


def workload(name: str, size: int) -> Task:
    if name == "default":
        return build_task("arithmetic", {"size": size})
    return build_task(
        "reasoning_gym", {"dataset": "chain_sum", "config": CHAIN, "size": size, "prompt": "worked"}
    )


async def run(cache_tokens: int, a: argparse.Namespace, task: Task) -> tuple:
    gen = load_generator(a.model, prefix_cache_tokens=cache_tokens)
    try:
        spec = STRATEGIES.spec("beam_search", {"n": a.n, "width": a.width,
                                               "max_steps": a.max_steps})  # fmt: skip
        verifier = build_verifier("step_check")
        started = time.perf_counter()
        results = await solve_many(task.problems(), spec, gen, task=task, verifier=verifier)
        wall = time.perf_counter() - started
    finally:
        await gen.aclose()
    recomputed = sum(r.cost.prompt_tokens for r in results)
    cached = sum(r.cost.cached_prompt_tokens for r in results)
    return wall, recomputed, cached, [r.answer for r in results]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--workload", choices=["default", "worked", "both"], default="both")
    p.add_argument("--problems", type=int, default=16)
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--width", type=int, default=4)
    p.add_argument("--max-steps", type=int, default=6)
    p.add_argument("--cache-tokens", type=int, default=65536)
    a = p.parse_args()
    names = ["default", "worked"] if a.workload == "both" else [a.workload]
    print(f"beam search n={a.n} width={a.width} max_steps={a.max_steps} on {a.problems} "
          f"problems, model {a.model}")  # fmt: skip
    for name in names:
        task = workload(name, a.problems)
        with_cache = asyncio.run(run(a.cache_tokens, a, task))
        without = asyncio.run(run(0, a, task))
        print(f"\n[{name}]")
        for label, (wall, recomputed, cached, _) in (("prefix cache", with_cache),
                                                     ("no cache", without)):  # fmt: skip
            print(f"{label:>13}: {wall:7.1f} s, {recomputed:7d} prompt tokens recomputed, "
                  f"{cached:7d} served from cache")  # fmt: skip
        print(
            f"recomputed tokens: {without[1] / max(1, with_cache[1]):.2f}x fewer with the cache "
            f"(target >= 2x); wall time: {without[0] / with_cache[0]:.2f}x faster "
            "(target >= 1.5x)"
        )
        print(f"answers identical with and without the cache: {with_cache[3] == without[3]}")


if __name__ == "__main__":
    main()
