"""Prefill: each distinct prompt of an admission computed once, after any cached start.

`plan` gives every distinct prompt a row of a fresh cache, copies in the longest start the
prefix cache holds, and tells each job what its prompt cost (recomputed once; the n - 1
shared copies and the cached start count as served from cache). `run` computes the rest of
every prompt in one left-padded batched forward and returns each row's next-token logits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from testtime.generators.kvcache import SlotCache
from testtime.generators.prefix import PrefixCache
from testtime.generators.runner import Runner
from testtime.generators.sequence import Job

if TYPE_CHECKING:
    import torch

Rows = dict[tuple[int, ...], tuple[int, int]]  # prompt -> (row, tokens already cached)


def plan(jobs: list[Job], pre: SlotCache, prefix: PrefixCache) -> Rows:
    """Rows for the distinct prompts, their cached starts copied into `pre`; jobs' costs set."""
    rows: Rows = {}
    pre.reserve(len({tuple(j.prompt) for j in jobs}), max(len(j.prompt) for j in jobs))
    for job in jobs:
        key = tuple(job.prompt)
        if key in rows:  # the same prompt twice in one admission: computed once
            job.recomputed, job.cached = 0, job.request.n * len(key)
            continue
        entry, start = prefix.lookup(key)
        if entry is not None:
            pre.copy_rows(entry, [0], [len(rows)], start)
        rows[key] = (len(rows), start)
        job.recomputed = len(key) - start
        job.cached = job.request.n * len(key) - job.recomputed
    return rows


def run(runner: Runner, pre: SlotCache, rows: Rows) -> torch.Tensor:
    """The uncached rest of every prompt in one forward: next-token logits per row."""
    import torch

    width = max(len(p) - start for p, (_, start) in rows.items())
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    pos = torch.full((len(rows), width), -1, dtype=torch.long)
    for p, (r, start) in rows.items():
        ids[r, width - len(p) + start :] = torch.tensor(p[start:])
        pos[r, width - len(p) + start :] = torch.arange(start, len(p))
    dev = runner.device
    return runner.forward(pre, ids.to(dev), pos.to(dev), prefill=True)
