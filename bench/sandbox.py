"""Benchmark: sandboxed executions per second against a bare subprocess, in one run.

The same small solutions (HumanEval-like functions written below, one wrong and one that
raises, so every verdict kind but timeout shows up), run two ways:
  sandbox   `testtime.sandbox.execute` / `aexecute`: prlimit + bubblewrap (every namespace,
            read-only binds, tmpfs work dir, empty environment), then the parent's `judge`
  bare      the same interpreter running the same harness file (sandbox/harness.py) with the
            same job on stdin and the same nonce-marked record fd, as a plain subprocess:
            no bwrap, no prlimit, no temp dir of its own, judged by the same `judge`
Both ways must give the same verdict, count and detail for every solution (checked each
round). Sequential: one execution at a time. Concurrent: as many at once as cores (the
sandbox's async API; the bare way through a thread pool of the same size). Each round runs
both ways, alternating which goes first (A B, then B A); the table gives executions/s
(median over rounds) and the sandbox / bare wall-time ratio, median [quartiles] over rounds.
Target of issue 15: the sandbox costs under 2x a bare subprocess.

    python bench/sandbox.py                 # 15 rounds x 6 solutions x 4, about 25 s
    python bench/sandbox.py --rounds 5 --repeat 2

Then, unless `--share-problems 0`: best-of-16 on the first problems of the procedural code
family (`pyfunc`) with the embedded model, once per code verifier, and the share of the run's
wall time during which a verifier was scoring (running candidates in the jail).

Measured (2 cores, root, so each jail runs as a uid of its own):
  `--rounds 6 --repeat 2`, load average 0.3 (before the code tasks' lab runs):
    sequential  sandbox 48.6 exec/s, bare 70.8 exec/s, ratio 1.48x [1.41-1.52], same verdicts
    concurrent  sandbox 82.0 exec/s, bare 131.3 exec/s, ratio 1.62x [1.53-1.69], same verdicts
  the same while two lab runs and the test suite shared the cores (load average 2-5):
    sequential 2.02x [1.24-2.72], concurrent 2.06x [1.36-2.54]: too noisy to read more into.
  Before the jail waited on a pidfd (Popen.wait(timeout) polls with sleeps growing to 50 ms,
  which added ~15 ms to each ~15 ms run) the ratios were 2.23x and 2.39x.
  Best-of-16 on the first 8 pyfunc problems with smollm2-135m (`--share-problems 8`, loaded
  machine): public_tests 9.4 s of 65.0 s wall with a verifier scoring (14.5%; 16.3 jail
  seconds summed over concurrent jails), mbr_exec 14.3 s of 91.8 s (15.6%; 25.0 s summed).
  Generation dominates: executing the 128 programs costs about a sixth of the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from testtime.core.types import Candidate, Problem
from testtime.sandbox import Case, Execution, Limits, aexecute, execute, judge, probe
from testtime.sandbox.jail import HARNESS, Raw, interpreter
from testtime.verifiers.base import Scores, Verifier

# (name, code, cases): small functions in the HumanEval style, with their expected values.
SOLUTIONS: list[tuple[str, str, list[Case]]] = [
    (
        "has_close_elements",
        "def has_close_elements(numbers, threshold):\n"
        "    for i, a in enumerate(numbers):\n"
        "        for j, b in enumerate(numbers):\n"
        "            if i != j and abs(a - b) < threshold:\n"
        "                return True\n"
        "    return False\n",
        [
            Case("has_close_elements([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3)", True),
            Case("has_close_elements([1.0, 2.0, 5.9, 4.0, 5.0], 0.95)", True),
            Case("has_close_elements([1.0, 2.0, 3.0, 4.0, 5.0], 0.5)", False),
        ],
    ),
    (
        "separate_paren_groups",
        "def separate_paren_groups(s):\n"
        "    out, cur, depth = [], [], 0\n"
        "    for c in s:\n"
        "        if c == '(':\n"
        "            depth += 1\n"
        "            cur.append(c)\n"
        "        elif c == ')':\n"
        "            depth -= 1\n"
        "            cur.append(c)\n"
        "            if depth == 0:\n"
        "                out.append(''.join(cur))\n"
        "                cur = []\n"
        "    return out\n",
        [
            Case(
                "separate_paren_groups('(()()) ((())) () ((())()())')",
                ["(()())", "((()))", "()", "((())()())"],
            ),
            Case("separate_paren_groups('( ) (( )) (( )( ))')", ["()", "(())", "(()())"]),
        ],
    ),
    (
        "fib",
        "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n"
        "    return a\n",
        [Case("fib(10)", 55), Case("fib(1)", 1), Case("fib(30)", 832040)],
    ),
    (
        "sort_third (wrong)",  # sorts the whole list, not every third element
        "def sort_third(l):\n    return sorted(l)\n",
        [Case("sort_third([5, 6, 3, 4, 8, 9, 2])", [2, 6, 3, 4, 8, 9, 5])],
    ),
    (
        "word_count (raises)",
        "def word_count(s):\n    return {w: s.count(w) for w in s.split()}[None]\n",
        [Case("word_count('a b a')", {"a": 2, "b": 1})],
    ),
    (
        "unique_sorted",
        "def unique(l):\n    return sorted(set(l))\n",
        [Case("unique([5, 3, 5, 2, 3, 3, 9, 0, 123])", [0, 2, 3, 5, 9, 123])],
    ),
]
LIMITS = Limits(wall_seconds=10.0)


def bare(code: str, cases: list[Case], limits: Limits = LIMITS) -> Execution:
    """The harness as a plain subprocess of the jail's interpreter: same script, same job,
    same record fd protocol and the same `judge`; no bwrap, no rlimits, pipes for output."""
    nonce = secrets.token_hex(16)
    job = {"nonce": nonce, "code": code, "calls": [c.call for c in cases]}
    with tempfile.TemporaryFile() as record:
        fd = record.fileno()
        start = time.monotonic()
        proc = subprocess.Popen(
            [interpreter(), "-I", "-S", str(HARNESS), str(fd)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(fd,),
        )
        timed_out = False
        try:
            out, err = proc.communicate(json.dumps(job).encode(), timeout=limits.wall_seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
            proc.kill()
            out, err = proc.communicate()
        seconds = time.monotonic() - start
        record.seek(0)
        text = record.read().decode("utf-8", "replace")
    raw = Raw(
        returncode=None if timed_out else proc.returncode,
        timed_out=timed_out,
        record=text,
        stdout=out.decode("utf-8", "replace"),
        stderr=err.decode("utf-8", "replace"),
        seconds=seconds,
        nonce=nonce,
    )
    return judge(raw, cases)


def sandboxed(code: str, cases: list[Case]) -> Execution:
    return execute(code, cases, LIMITS)


def workload(repeat: int) -> list[tuple[str, str, list[Case]]]:
    return SOLUTIONS * repeat


def outcome(e: Execution) -> tuple[str, int, int, str]:
    """What must agree between the two ways (the detail, not the seconds or output)."""
    return e.verdict.value, e.passed, e.total, e.detail


Runner = Callable[[str, list[Case]], Execution]
_BARE_POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 1)


def run_sequential(runner: Runner, jobs: list[tuple[str, str, list[Case]]]) -> list[Execution]:
    return [runner(code, cases) for _, code, cases in jobs]


def run_concurrent(way: str, jobs: list[tuple[str, str, list[Case]]]) -> list[Execution]:
    """As many at once as cores: the sandbox through `aexecute`, bare through a pool as big."""

    async def go() -> list[Execution]:
        if way == "sandbox":
            return list(await asyncio.gather(*(aexecute(c, k, LIMITS) for _, c, k in jobs)))
        loop = asyncio.get_running_loop()
        futures = [loop.run_in_executor(_BARE_POOL, bare, c, k) for _, c, k in jobs]
        return list(await asyncio.gather(*futures))

    return asyncio.run(go())


@dataclass
class Row:
    """One mode's measurements: wall seconds per round for each way, and agreement."""

    mode: str
    executions: int
    wall: dict[str, list[float]] = field(default_factory=lambda: {"sandbox": [], "bare": []})
    agree: bool = True
    mismatch: str = ""

    def rate(self, way: str) -> float:
        return self.executions / statistics.median(self.wall[way])

    def ratios(self) -> list[float]:
        return [s / b for s, b in zip(self.wall["sandbox"], self.wall["bare"], strict=True)]


def once(mode: str, way: str, jobs: list[tuple[str, str, list[Case]]]) -> list[Execution]:
    if mode == "concurrent":
        return run_concurrent(way, jobs)
    return run_sequential(sandboxed if way == "sandbox" else bare, jobs)


def compare(mode: str, *, rounds: int = 5, repeat: int = 1) -> Row:
    """Both ways `rounds` times on the same solutions, alternating which goes first, after
    one warm-up each; every round's verdicts must agree solution by solution."""
    probe()  # fail closed, and the probe's one-off cost stays out of the timings
    jobs = workload(repeat)
    row = Row(mode, len(jobs))
    ways = ("sandbox", "bare")
    for way in ways:
        once(mode, way, jobs[: len(SOLUTIONS)])
    for r in range(rounds):
        results: dict[str, list[Execution]] = {}
        for way in ways if r % 2 == 0 else ways[::-1]:
            start = time.perf_counter()
            results[way] = once(mode, way, jobs)
            row.wall[way].append(time.perf_counter() - start)
        for (name, _, _), s, b in zip(jobs, results["sandbox"], results["bare"], strict=True):
            if outcome(s) != outcome(b) and row.agree:
                row.agree = False
                row.mismatch = f"{name}: sandbox {outcome(s)} vs bare {outcome(b)}"
    return row


def spread(values: list[float]) -> str:
    """The median and, over several rounds, the interquartile range."""
    if len(values) < 4:
        return f"{statistics.median(values):.2f}x"
    q1, mid, q3 = statistics.quantiles(values, n=4)
    return f"{mid:.2f}x [{q1:.2f}-{q3:.2f}]"


def print_table(rows: list[Row]) -> None:
    print("| mode | executions / round | sandbox exec/s | bare exec/s | sandbox / bare wall "
          "| same verdicts |")  # fmt: skip
    print("|" + " --- |" * 6)
    for r in rows:
        print(
            f"| {r.mode} | {r.executions} | {r.rate('sandbox'):.1f} | {r.rate('bare'):.1f} | "
            f"{spread(r.ratios())} | {'yes' if r.agree else 'NO: ' + r.mismatch} |"
        )


class Timed(Verifier):
    """A verifier that records the wall-clock intervals its scoring took."""

    def __init__(self, inner: Verifier) -> None:
        self.inner = inner
        self.name = inner.name
        self.traits = inner.traits
        self.spans: list[tuple[float, float]] = []

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> Scores:
        start = time.perf_counter()
        try:
            return await self.inner.score(problem, candidates)
        finally:
            self.spans.append((start, time.perf_counter()))


def covered(spans: list[tuple[float, float]]) -> float:
    """Seconds during which at least one span was open (concurrent scorings count once)."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(spans):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


@dataclass
class Share:
    """One best-of-16 run: wall seconds, seconds with a verifier scoring, sandbox seconds."""

    verifier: str
    problems: int
    wall: float
    scoring: float
    sandbox: float
    generated: int


def share(verifier: str, problems: int, model: str, task: str, n: int = 16) -> Share:
    """Best-of-`n` with `verifier` on the first `problems` of `task` with `model`: how much
    of the run's wall time had code running (the verifier's scoring, which runs the jail)."""
    import testtime as tt

    gen = tt.load_generator(model)
    built = tt.build_task(task)
    chosen = list(built.problems())[:problems]
    timed = Timed(tt.build_verifier(verifier, task=built, generator=gen))
    spec = tt.STRATEGIES.spec("best_of_n", {"n": n})
    settings = tt.RunSettings(verifier=timed, max_tokens=256)
    start = time.perf_counter()
    results = asyncio.run(tt.solve_many(chosen, spec, gen, settings))
    wall = time.perf_counter() - start
    return Share(
        verifier,
        len(chosen),
        wall,
        covered(timed.spans),
        sum(r.cost.sandbox_seconds for r in results),
        sum(r.cost.generated_tokens for r in results),
    )


def print_shares(shares: list[Share], model: str, task: str) -> None:
    print(f"\nbest-of-16 on {task} with {model}, problems run at once; execution share = wall "
          "seconds with a verifier scoring (running the jail) / run wall seconds")  # fmt: skip
    print("| verifier | problems | generated tokens | run wall s | scoring wall s "
          "| sandbox s (summed) | execution share |")  # fmt: skip
    print("|" + " --- |" * 7)
    for s in shares:
        print(
            f"| {s.verifier} | {s.problems} | {s.generated} | {s.wall:.1f} | {s.scoring:.1f} "
            f"| {s.sandbox:.1f} | {s.scoring / s.wall:.1%} |"
        )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--repeat", type=int, default=4, help="each solution this often per round")
    p.add_argument("--mode", choices=["sequential", "concurrent", "both"], default="both")
    p.add_argument("--share-problems", type=int, default=8,
                   help="problems of the best-of-16 run (0: leave it out)")  # fmt: skip
    p.add_argument("--share-verifiers", default="public_tests,mbr_exec")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--task", default="pyfunc")
    a = p.parse_args(argv)
    modes = ["sequential", "concurrent"] if a.mode == "both" else [a.mode]
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"{len(SOLUTIONS)} solutions x {a.repeat} per round, {a.rounds} rounds alternating "
          f"A B / B A, {os.cpu_count()} cores (load average {load}), uid {os.geteuid()}, "
          f"interpreter {interpreter()}; ratio: median [quartiles] over rounds")  # fmt: skip
    rows = [compare(m, rounds=a.rounds, repeat=a.repeat) for m in modes]
    print_table(rows)
    if not all(r.agree for r in rows):
        print("WARNING: the sandbox and the bare subprocess gave different verdicts")
    if a.share_problems > 0:
        names = [v for v in a.share_verifiers.split(",") if v]
        shares = [share(v, a.share_problems, a.model, a.task) for v in names]
        print_shares(shares, a.model, a.task)


if __name__ == "__main__":
    main()
