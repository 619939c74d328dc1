"""Benchmark: what `testtime serve` adds per request, against calling the library directly.

The same workload both ways in one run: C concurrent self-consistency requests (default 16
arithmetic problems, n=8, 128 new tokens each) sent over loopback HTTP to a `testtime serve`
process, and the same problems solved by `solve` in this process with the same generator
settings, seeds and problem ids (so both draw the same samples: the generated token totals
are printed to show it). Each round runs both, in alternating order, on fresh problems (a
different task seed), so neither side gets a warmer prefix cache or a quieter moment.
Prints per-request latency, wall time and CPU seconds for both, and the server's overhead
as ratios (target: under 5% at 16 concurrent requests). On a machine shared with other work
the wall times swing by tens of percent between rounds; the CPU seconds (this process for
`solve`, the server process for the server) are the steadier measure of what it adds.

    python bench/server.py                                # SmolLM2-135M, about 5 minutes
    python bench/server.py --rounds 1 --problems 8 --n 4  # quick
    python bench/server.py --model fake --latency 0.05    # the server's fixed cost alone
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx

from testtime.core.types import Problem
from testtime.generators.base import Generator
from testtime.server.launch import Launched
from testtime.server.plan import problem_id
from testtime.server.settings import Settings
from testtime.strategies.base import STRATEGIES
from testtime.strategies.run import build_task, solve

FAKE = """
import sys
from testtime.generators.fake import FakeGenerator
from testtime.server import Settings, serve
port, latency = sys.argv[1:3]
serve(Settings("fake", max_concurrent=64), FakeGenerator(latency=float(latency)),
      port=int(port), log_level="warning")
"""


def problems(count: int, seed: int) -> list[Problem]:
    """The task's problems as the server sees them: the prompt alone, its id from its text."""
    out = []
    for p in build_task("arithmetic", {"size": count, "seed": seed}).problems():
        chat = Problem.from_prompt(p.prompt)
        out.append(replace(chat, id=problem_id(chat.messages)))
    return out


async def direct(gen: Generator, batch: list[Problem], a: argparse.Namespace) -> dict[str, Any]:
    spec = STRATEGIES.spec("self_consistency", {"n": a.n})
    budget = Settings(a.model).max_budget  # what the server fills in for a request without one

    async def one(p: Problem) -> tuple[float, int, float]:
        t = time.perf_counter()
        r = await solve(p, spec, gen, budget=budget, max_tokens=a.max_tokens, seed=0)
        return time.perf_counter() - t, r.cost.generated_tokens, r.cost.seconds

    return await timed(asyncio.gather(*(one(p) for p in batch)))


async def served(server: Launched, batch: list[Problem], a: argparse.Namespace) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=len(batch) + 4)
    assert server.process is not None
    async with httpx.AsyncClient(base_url=server.url, timeout=600, limits=limits) as client:

        async def one(p: Problem) -> tuple[float, int, float]:
            body = {
                "model": f"self_consistency:n={a.n}@{a.model}",
                "messages": [{"role": "user", "content": p.prompt}],
                "max_tokens": a.max_tokens,
            }
            t = time.perf_counter()
            r = await client.post("/v1/chat/completions", json=body)
            r.raise_for_status()
            usage = r.json()["usage"]
            latency = time.perf_counter() - t
            return latency, int(usage["completion_tokens"]), float(usage["testtime"]["seconds"])

        return await timed(asyncio.gather(*(one(p) for p in batch)), cpu_of(server.process.pid))


async def timed(work: Any, cpu: Callable[[], float] = time.process_time) -> dict[str, Any]:
    """Wall time, `cpu` seconds spent meanwhile, generated tokens, the mean request latency,
    and the mean time of a request outside the model (latency - its generator calls' time)."""
    started, cpu_started = time.perf_counter(), cpu()
    got = await work
    return {
        "wall": time.perf_counter() - started,
        "cpu": cpu() - cpu_started,
        "latency": statistics.mean(lat for lat, _, _ in got),
        "outside": statistics.mean(lat - model for lat, _, model in got),
        "tokens": sum(k for _, k, _ in got),
    }


def cpu_of(pid: int) -> Callable[[], float]:
    """CPU seconds (user + system, every thread) of process `pid` so far."""
    import psutil

    proc = psutil.Process(pid)
    return lambda: sum(proc.cpu_times()[:2])


def load(a: argparse.Namespace) -> Generator:
    if a.model == "fake":
        from testtime.generators.fake import FakeGenerator

        return FakeGenerator(latency=a.latency)
    from testtime.generators.models import load_generator

    return load_generator(a.model)


def launch(a: argparse.Namespace) -> Launched:
    if a.model == "fake":
        return Launched.python(FAKE, str(a.latency))
    return Launched.cli(
        "--model",
        a.model,
        "--max-concurrent",
        str(a.problems),
        "--log-level",
        "warning",
        ready_s=300,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="smollm2-135m", help="a packaged model, or 'fake'")
    p.add_argument("--problems", type=int, default=16, help="concurrent requests per round")
    p.add_argument("--n", type=int, default=8, help="self-consistency samples per request")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--latency", type=float, default=0.05, help="the fake's seconds per call")
    a = p.parse_args()

    gen = load(a)
    rows: dict[str, list[dict[str, Any]]] = {"direct": [], "server": []}
    with launch(a) as server:
        warm = problems(2, seed=10_000)
        asyncio.run(direct(gen, warm, a))
        asyncio.run(served(server, warm, a))
        for r in range(a.rounds):
            batch = problems(a.problems, seed=r)
            for side in ("direct", "server") if r % 2 == 0 else ("server", "direct"):
                run = direct(gen, batch, a) if side == "direct" else served(server, batch, a)
                rows[side].append(asyncio.run(run))
            d, s = rows["direct"][-1], rows["server"][-1]
            print(
                f"round {r + 1}: direct {d['wall']:.2f} s ({d['cpu']:.1f} s CPU), "
                f"server {s['wall']:.2f} s ({s['cpu']:.1f} s CPU) "
                f"(tokens {d['tokens']} / {s['tokens']})",
                flush=True,
            )
    asyncio.run(gen.aclose())

    print(
        f"\n{a.model}: {a.problems} concurrent self_consistency:n={a.n} requests, "
        f"max_tokens {a.max_tokens}, {a.rounds} rounds"
    )
    print(f"{'':8} {'wall s':>8} {'latency s':>10} {'outside s':>10} {'CPU s':>8} {'tokens':>8}")
    for name, got in rows.items():
        med = {
            k: statistics.median(g[k] for g in got) for k in ("wall", "latency", "outside", "cpu")
        }
        tokens = sum(g["tokens"] for g in got)
        print(
            f"{name:8} {med['wall']:8.2f} {med['latency']:10.3f} {med['outside']:10.3f} "
            f"{med['cpu']:8.2f} {tokens:8d}"
        )
    pairs = list(zip(rows["direct"], rows["server"], strict=True))

    def ratios(key: str) -> str:
        got = sorted(s[key] / d[key] - 1 for d, s in pairs)
        return f"{statistics.median(got):+.1%} [{got[0]:+.0%} to {got[-1]:+.0%}]"

    added = statistics.median(s["outside"] - d["outside"] for d, s in pairs)
    share = added / statistics.median(d["latency"] for d, _ in pairs)
    print("(medians over rounds; 'outside': a request's latency minus its generator calls' time)")
    print(
        f"end to end, server vs direct (median [range] over rounds): latency {ratios('latency')}"
        f", wall {ratios('wall')}, CPU {ratios('cpu')}"
    )
    print(
        f"server overhead per request: {added * 1000:+.1f} ms outside the model = {share:+.2%} "
        f"of a request's latency (target < 5%)"
    )


if __name__ == "__main__":
    main()
