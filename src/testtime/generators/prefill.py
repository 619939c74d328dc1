"""Prefill: each distinct prompt of an admission computed once, after any cached start.

`plan` finds, for every distinct prompt, the longest start the prefix cache holds and
tells each job what its prompt cost (recomputed once; the n - 1 shared copies and the
cached start count as served from cache). `groups` splits the prompts by how many tokens
are left to compute (in the runner's 64-token shape steps), and a `Prefill` computes one
group in left-padded forwards of at most a chunk each. Grouping matters once the cache
serves most of a prompt: a child's few new tokens would otherwise be padded to the longest
cold prompt admitted with it (measured under beam search: 2.5x more prefill positions than
tokens to compute).
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


class Prefill:
    """One group's prefill, computed `chunk` positions at a time.

    The engine runs one chunk per loop turn, so decode steps of the running batch go on
    between chunks and a request whose caller left stops within a chunk instead of holding
    the engine for the whole of a long prompt. Chunks start on the runner's 64-token shape
    steps, the boundaries a cached start continues from, so a chunked prompt's numbers equal
    one forward's (tested). Row i of `cache` is `group[i]`.
    """

    def __init__(self, runner: Runner, group: list[Planned], jobs: list[Job], chunk: int) -> None:
        import torch

        self.runner, self.group, self.jobs = runner, group, jobs
        self.chunk = max(ALIGN, chunk // ALIGN * ALIGN)
        self.cache = runner.new_cache()
        longest = max(len(p.prompt) for p in group)
        self.cache.reserve(len(group), -(-longest // ALIGN) * ALIGN)  # the forwards' width
        for r, p in enumerate(group):
            if p.entry is not None:
                self.cache.copy_rows(p.entry, [0], [r], p.start)
        width = -(-max(p.rest for p in group) // ALIGN) * ALIGN
        ids = torch.zeros((len(group), width), dtype=torch.long)
        pos = torch.full((len(group), width), -1, dtype=torch.long)
        for r, p in enumerate(group):
            ids[r, width - p.rest :] = torch.tensor(p.prompt[p.start :])
            pos[r, width - p.rest :] = torch.arange(p.start, len(p.prompt))
        self.ids, self.pos = ids.to(runner.device), pos.to(runner.device)
        self.done = 0  # positions computed so far (padding included)

    @property
    def rows(self) -> int:
        """Batch rows its jobs take once prefilled (one per sample)."""
        return sum(job.request.n for job in self.jobs)

    def step(self) -> torch.Tensor | None:
        """Compute the next chunk; the next-token logits per row once the last one is done."""
        end = min(self.done + self.chunk, self.ids.shape[1])
        ids, pos = self.ids[:, self.done : end], self.pos[:, self.done : end]
        logits = self.runner.forward(self.cache, ids, pos, prefill=True)
        self.done = end
        return logits if end == self.ids.shape[1] else None
