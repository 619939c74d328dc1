"""What a lab run of the `instructions` task stored, checked again with today's checkers:
per number of constraints, greedy and per-sample prompt-level accuracy (strict and loose),
coverage@k (unbiased pass@k, strict), how many problems a selection could improve (some
samples follow every constraint, some do not), the instruction-level accuracy of samples,
and each kind's per-sample strict and loose pass rates. The lab's own table gives best-of-N
under the `constraints` verifier.

    .venv/bin/testtime lab run examples/instructions.yaml
    PYTHONPATH=src .venv/bin/python scripts/instructions_screen.py testtime-lab/store.sqlite
"""

from __future__ import annotations

import argparse
import collections
import math
import sqlite3
from typing import Any

from testtime.core import constraints as cs
from testtime.tasks.base import TASKS
from testtime.tasks.instructions import KEY


def pass_at(n: int, c: int, k: int) -> float:
    """Chen et al.'s unbiased pass@k from c right of n samples."""
    return 1.0 if n - c < k else 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pct(values: list[float] | list[bool]) -> float:
    return 100 * sum(values) / max(len(values), 1)


def level(problem_id: str) -> int:
    """The number of constraints of a problem, from its id ('instructions-K3-0-12')."""
    return int(problem_id.split("-")[1].removeprefix("K"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    args = ap.parse_args()
    db = sqlite3.connect(args.store)
    rows = list(db.execute("SELECT task, pool, problem, text, correct FROM samples"))
    problems: dict[str, Any] = {}
    for k in {level(r[2]) for r in rows}:
        size = 1 + max(int(r[2].rsplit("-", 1)[1]) for r in rows if level(r[2]) == k)
        spec = TASKS.spec("instructions", {"size": size, "constraints": k})
        problems |= {p.id: p for p in TASKS.build(spec).problems()}
    # per (k, pool, problem): [strict right, loose right]; per kind: [n, strict, loose]
    runs: dict[tuple[int, str, str], list[tuple[bool, bool]]] = collections.defaultdict(list)
    followed: dict[int, list[bool]] = collections.defaultdict(list)  # sampled, strict
    kinds: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0])
    changed = 0
    for _, pool, pid, text, stored in rows:
        drawn = problems[pid].metadata[KEY]
        reply = text.strip()
        strict, loose = cs.results(reply, drawn), cs.results(reply, drawn, "loose")
        right = bool(reply) and all(strict)
        changed += int(stored is not None and bool(stored) != right)
        runs[(level(pid), pool, pid)].append((right, bool(reply) and all(loose)))
        if pool != "T0-p1":
            followed[level(pid)] += strict
            for c, s, lo in zip(drawn, strict, loose, strict=True):
                kinds[c["kind"]][0] += 1
                kinds[c["kind"]][1] += s
                kinds[c["kind"]][2] += lo
    print(f"stored verdicts that today's checkers change: {changed}")
    ks = (1, 2, 4, 8, 16)
    print("K | greedy strict/loose | sample strict/loose | " + " ".join(f"pass@{k}" for k in ks)
          + " | mixed problems | instruction level")  # fmt: skip
    for lk in sorted({key[0] for key in runs}):
        greedy = [v[0] for (k, pool, _), v in runs.items() if k == lk and pool == "T0-p1"]
        pools = [v for (k, pool, _), v in runs.items() if k == lk and pool != "T0-p1"]
        wins = [sum(ok for ok, _ in p) for p in pools]
        cover = [pct([pass_at(len(p), c, k) for p, c in zip(pools, wins, strict=True)]) for k in ks]
        mixed = sum(1 for p, c in zip(pools, wins, strict=True) if 0 < c < len(p))
        print(
            f"{lk} | {pct([g[0] for g in greedy]):.0f}% / {pct([g[1] for g in greedy]):.0f}%"
            f" | {pct([s for p in pools for s, _ in p]):.1f}%"
            f" / {pct([lo for p in pools for _, lo in p]):.1f}% | "
            + " ".join(f"{c:.0f}%" for c in cover)
            + f" | {mixed}/{len(pools)} | {pct(followed[lk]):.0f}%"
        )  # fmt: skip
    print("\nkind | samples | strict | loose")
    for name, (n, good, lenient) in sorted(kinds.items(), key=lambda kv: -kv[1][1] / kv[1][0]):
        print(f"{name} | {n} | {100 * good / n:.0f}% | {100 * lenient / n:.0f}%")


if __name__ == "__main__":
    main()
