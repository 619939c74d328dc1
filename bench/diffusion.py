"""Benchmark: batched particle denoising against one particle at a time, in one run.

The same diffusion strategy on the same problem and seed, two ways:
  batched   every particle in one denoiser forward per step (the library's default)
  single    the denoiser (and the reward) called on one particle at a time: the same
            `solve` with `max_batch=1`, so the sampler code, the noise draws and the
            resampling are the library's own, and only the batch size of each call differs
Each round runs both, alternating which goes first (A B, then B A), and the table gives the
median single/batched wall-time ratio with its quartiles over rounds (target: >= 3x at 8
particles on 2 cores), the same ratio for the time spent inside the denoiser alone, and the
process CPU time ratio (steadier on a shared machine). The outputs are checked: the same NFE,
the same chosen candidate and resampling genealogy, and the final samples equal up to float
rounding (a one-row matmul takes a different kernel from a batched one), whose max absolute
difference is printed.

    python bench/diffusion.py                       # digits + mixture, FK + best-of-N, ~10 s
    python bench/diffusion.py --rounds 41 --threads 2,1   # README's figures, about 2 minutes
    python bench/diffusion.py --model digits --strategy fk_steering --particles 8

On this tiny net two torch threads make a batched call slower than one does (each op's
hand-off to the second thread costs more than the op); the per-op timings printed under
each table show it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

# as testtime.diffusion does on import, but before torch is first imported here
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
from torch import Tensor

from testtime.core.types import Problem
from testtime.diffusion import digits
from testtime.diffusion.base import Outcome
from testtime.diffusion.denoisers import Denoiser, Reward
from testtime.diffusion.gmm import LinearReward, MixtureDenoiser
from testtime.diffusion.run import solve, strategy_spec, widen

MODELS = ("digits", "gmm")
STRATEGIES = ("fk_steering", "best_of_n")


class Timed:
    """A denoiser that adds up the seconds spent inside its forward calls."""

    def __init__(self, inner: Denoiser) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __call__(self, x: Tensor, t: float, condition: Any) -> Tensor:
        started = time.perf_counter()
        out = self.inner(x, t, condition)
        self.seconds += time.perf_counter() - started
        self.calls += 1
        return out


def model(name: str, guidance: float) -> tuple[Denoiser, Reward, Problem]:
    """The denoiser, reward and problem: the shipped digit model ("draw a 7"), or the exact
    2-D Gaussian-mixture denoiser with a linear reward."""
    if name == "digits":
        return digits.DigitsDenoiser(guidance=guidance), digits.DigitReward(), digits.problem(7)
    return MixtureDenoiser(), LinearReward(), Problem.from_prompt("a point", id="gmm")


@dataclass
class Way:
    """One way's measurements, one entry per round."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    net: list[float] = field(default_factory=list)  # seconds inside the denoiser
    calls: int = 0
    nfe: int = 0


@dataclass
class Row:
    """Both ways on one (model, strategy, particles) point, and how far their outputs differ."""

    model: str
    strategy: str
    particles: int
    steps: int
    batched: Way
    single: Way
    max_diff: float = 0.0  # max |batched - single| over the final samples of every round
    same_choice: bool = True  # chosen candidate, labels and genealogy identical every round

    def ratios(self, what: str) -> list[float]:
        a, b = getattr(self.batched, what), getattr(self.single, what)
        return sorted(s / t for s, t in zip(b, a, strict=True))


def once(
    name: str, strategy: str, particles: int, steps: int, max_batch: int, seed: int,
    guidance: float,
) -> tuple[Outcome, float, float, Timed]:  # fmt: skip
    """One strategy run: its outcome, wall and CPU seconds, and the timed denoiser."""
    den, reward, problem = model(name, guidance)
    timed = Timed(den)
    spec = widen(strategy_spec(strategy, {"steps": steps}), particles)
    wall, cpu = time.perf_counter(), time.process_time()
    out = solve(problem, spec, timed, reward, seed=seed, max_batch=max_batch)  # type: ignore[arg-type]
    return out, time.perf_counter() - wall, time.process_time() - cpu, timed


def genealogy(out: Outcome) -> Any:
    """What must not change with the batch size: choice, labels, resampling ancestors."""
    trace = out.result.trace or {}
    checkpoints = [(c["resampled"], c.get("ancestors")) for c in trace.get("checkpoints", [])]
    labels = [c.answer for c in out.result.candidates]
    return out.result.chosen, labels, checkpoints, trace.get("final_ancestors")


def compare(
    name: str, strategy: str, particles: int, *, steps: int = 20, rounds: int = 5,
    seed: int = 0, guidance: float = 0.0,
) -> Row:  # fmt: skip
    """Run both ways `rounds` times, alternating which goes first, after one warm-up each."""
    row = Row(name, strategy, particles, steps, Way(), Way())
    ways = ((row.batched, particles), (row.single, 1))
    for _, max_batch in ways:  # warm-up: first-call allocations, lazy inits
        once(name, strategy, particles, steps, max_batch, seed, guidance)
    for r in range(rounds):
        outs: dict[int, Outcome] = {}
        for way, max_batch in ways if r % 2 == 0 else ways[::-1]:
            out, wall, cpu, timed = once(name, strategy, particles, steps, max_batch, seed,
                                         guidance)  # fmt: skip
            way.wall.append(wall)
            way.cpu.append(cpu)
            way.net.append(timed.seconds)
            way.calls, way.nfe = timed.calls, out.result.cost.nfe
            outs[max_batch] = out
        a, b = outs[particles], outs[1]
        diff = float((a.images.double() - b.images.double()).abs().max())
        row.max_diff = max(row.max_diff, diff)
        row.same_choice &= genealogy(a) == genealogy(b) and a.images.shape == b.images.shape
    if row.batched.nfe != row.single.nfe:
        raise AssertionError(f"NFE differ: {row.batched.nfe} batched vs {row.single.nfe} single")
    return row


def spread(values: list[float]) -> str:
    """The median and, over several rounds, the interquartile range (a shared machine's
    stalls make the extremes meaningless)."""
    if len(values) < 4:
        return f"{statistics.median(values):.2f}x"
    q1, mid, q3 = statistics.quantiles(values, n=4)
    return f"{mid:.2f}x [{q1:.2f}-{q3:.2f}]"


def print_table(rows: list[Row]) -> None:
    print("| model | strategy | particles | NFE | wall batched | wall single | single / batched "
          "wall | CPU | denoiser only | denoiser per call batched / single | max abs diff | "
          "same choice |")  # fmt: skip
    print("|" + " --- |" * 12)
    for r in rows:
        ms = [1000 * statistics.median(w.wall) for w in (r.batched, r.single)]
        us = [1e6 * statistics.median(w.net) / w.calls for w in (r.batched, r.single)]
        print(
            f"| {r.model} | {r.strategy} | {r.particles} | {r.batched.nfe} | {ms[0]:.1f} ms | "
            f"{ms[1]:.1f} ms | {spread(r.ratios('wall'))} | {spread(r.ratios('cpu'))} | "
            f"{spread(r.ratios('net'))} | {us[0]:.0f} / {us[1]:.0f} us | {r.max_diff:.1e} | "
            f"{'yes' if r.same_choice else 'NO'} |"
        )


def op_micros(batch: int, repeat: int = 2000) -> tuple[float, float]:
    """Microseconds of one Linear(256, 256) and one LayerNorm(256) at this batch: the digit
    denoiser's building blocks (13 and 4 of them per forward), to show what a call costs."""
    linear, norm, x = torch.nn.Linear(256, 256), torch.nn.LayerNorm(256), torch.randn(batch, 256)
    out = []
    with torch.no_grad():
        for op in (linear, norm):
            for _ in range(repeat // 10):
                op(x)
            started = time.perf_counter()
            for _ in range(repeat):
                op(x)
            out.append(1e6 * (time.perf_counter() - started) / repeat)
    return out[0], out[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", choices=[*MODELS, "both"], default="both")
    p.add_argument("--strategy", choices=[*STRATEGIES, "both"], default="both")
    p.add_argument("--particles", default="4,8,16", help="comma-separated particle counts")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--threads", default="2", help="torch intra-op threads; '1,2': a table each")
    p.add_argument("--guidance", type=float, default=0.0,
                   help="the digit model's classifier-free guidance (2 evals per call unless "
                   "0 or 1)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    models = MODELS if a.model == "both" else (a.model,)
    strategies = STRATEGIES if a.strategy == "both" else (a.strategy,)
    counts = [int(k) for k in a.particles.split(",")]
    for threads in [int(n) for n in a.threads.split(",")]:
        torch.set_num_threads(threads)
        load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
        print(f"\ntorch {torch.__version__}, {threads} thread(s) on {os.cpu_count()} cores "
              f"(load average {load}), {a.steps} steps, {a.rounds} rounds alternating "
              f"A B / B A, seed {a.seed}; ratios: median [quartiles] over rounds")  # fmt: skip
        rows = [
            compare(name, strategy, k, steps=a.steps, rounds=a.rounds, seed=a.seed,
                    guidance=a.guidance)
            for name in models for strategy in strategies for k in counts
        ]  # fmt: skip
        print_table(rows)
        ops = {k: op_micros(k) for k in sorted({1, *counts})}
        print("one op, batch: " + "; ".join(
            f"{k}: Linear {lin:.1f} us, LayerNorm {ln:.1f} us" for k, (lin, ln) in ops.items()
        ))  # fmt: skip
        if not all(r.same_choice for r in rows):
            print("WARNING: a batched and a single run chose differently (see 'same choice')")


if __name__ == "__main__":
    main()
