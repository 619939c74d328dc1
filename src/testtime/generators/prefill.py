"""Prefill: each distinct prompt of an admission computed once, after any cached start.

`plan` finds, for every distinct prompt, the longest start the prefix cache holds and
tells each job what its prompt cost (recomputed once; the n - 1 shared copies and the
cached start count as served from cache). `groups` splits the prompts by how many tokens
are left to compute (in the runner's 64-token shape steps), and `run` computes one group
in one left-padded forward. Grouping matters once the cache serves most of a prompt: a
child's few new tokens would otherwise be padded to the longest cold prompt admitted with
it (measured under beam search: 2.5x more prefill positions than tokens to compute).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from testtime.generators.kvcache import SlotCache
from testtime.generators.prefix import PrefixCache
from testtime.generators.runner import ALIGN, Runner
from testtime.generators.sequence import Job

if TYPE_CHECKING:
    import torch


@dataclass(slots=True)
class Planned:
    """A distinct prompt of the admission and the cached start it can skip."""

    prompt: tuple[int, ...]
    entry: SlotCache | None
    start: int

    @property
    def rest(self) -> int:
        return len(self.prompt) - self.start


def plan(jobs: list[Job], prefix: PrefixCache) -> dict[tuple[int, ...], Planned]:
    """The distinct prompts with their cached starts; each job's prompt cost is set."""
    planned: dict[tuple[int, ...], Planned] = {}
    for job in jobs:
        key = tuple(job.prompt)
        if key in planned:  # the same prompt twice in one admission: computed once
            job.recomputed, job.cached = 0, job.request.n * len(key)
            continue
        entry, start = prefix.lookup(key)
        planned[key] = Planned(key, entry, start)
        job.recomputed = len(key) - start
        job.cached = job.request.n * len(key) - job.recomputed
    return planned


def groups(planned: list[Planned]) -> list[list[Planned]]:
    """Prompts bucketed by uncached length rounded up to the runner's shape step."""
    out: dict[int, list[Planned]] = {}
    for p in planned:
        out.setdefault(-(-p.rest // ALIGN), []).append(p)
    return [out[k] for k in sorted(out)]


def run(runner: Runner, group: list[Planned]) -> tuple[SlotCache, torch.Tensor]:
    """One group in one forward: its cache (row i = group[i]) and next-token logits per row."""
    import torch

    pre = runner.new_cache()
    pre.reserve(len(group), max(len(p.prompt) for p in group))
    for r, p in enumerate(group):
        if p.entry is not None:
            pre.copy_rows(p.entry, [0], [r], p.start)
    width = max(p.rest for p in group)
    ids = torch.zeros((len(group), width), dtype=torch.long)
    pos = torch.full((len(group), width), -1, dtype=torch.long)
    for r, p in enumerate(group):
        ids[r, width - p.rest :] = torch.tensor(p.prompt[p.start :])
        pos[r, width - p.rest :] = torch.arange(p.start, len(p.prompt))
    dev = runner.device
    return pre, runner.forward(pre, ids.to(dev), pos.to(dev), prefill=True)
