"""The batching engine: every concurrent request's samples decode together, in one thread.

Requests from all running strategies queue up; between decode steps the engine admits
waiting ones, prefills each distinct prompt ONCE (batched forwards, one per group of
similar uncached length, skipping the longest start the prefix cache already holds),
copies its KV rows into the n samples' slots, and from then on every live sequence advances
one token per batched forward. A finished sequence leaves the batch at once (its slot is
refilled by moving the last row into it), so it stops costing compute. The model runs
only in the worker thread; the event loop just awaits futures.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from typing import TYPE_CHECKING

from testtime.core.errors import TesttimeError
from testtime.core.types import Request
from testtime.generators.base import Generation
from testtime.generators.prefill import groups, plan, run
from testtime.generators.prefix import PrefixCache
from testtime.generators.runner import Runner, keep_freed_memory
from testtime.generators.sampling import Sampler
from testtime.generators.sequence import Decode, Job, Seq

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
_CLOSE = None


class Engine:
    """Continuous batching over a `Runner`, fed from any number of event-loop tasks."""

    def __init__(
        self,
        runner: Runner,
        *,
        eos: frozenset[int],
        decode: Decode,
        n_params: int,
        max_batch: int = 128,
        max_prefill_tokens: int = 4096,
        threads: int | None = None,
        gather_s: float = 0.002,
        tune_malloc: bool = True,
        prefix_cache_tokens: int = 8192,
    ) -> None:
        self.runner = runner
        self.eos = eos
        self.decode = decode
        self.n_params = n_params
        self.max_batch = max_batch
        self.max_prefill_tokens = max_prefill_tokens
        self.threads = threads
        self.gather_s = gather_s  # after idling, wait this long so a burst of requests batches
        self.tune_malloc = tune_malloc
        self.cache = runner.new_cache()
        self.sampler = Sampler()
        self.prefix = PrefixCache(prefix_cache_tokens)  # prompts' K/V for later requests
        self.active: list[Seq] = []  # active[i] lives in cache row i
        self.waiting: deque[Job] = deque()
        self._inbox: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.steps = 0  # decode forwards run (for tests and benchmarks)
        self.prefills = 0

    def submit(self, request: Request, prompt: list[int]) -> Future[Generation]:
        """Queue a request; the future resolves when all its samples have ended."""
        fut: Future[Generation] = Future()
        with self._lock:
            if self._closed:
                raise TesttimeError("this generator was closed; load a new one to generate again")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="testtime-engine", daemon=True
                )
                self._thread.start()
        room = self.runner.max_positions - len(prompt)
        if room <= 0:
            raise TesttimeError(
                f"the prompt has {len(prompt)} tokens but the model reads at most "
                f"{self.runner.max_positions}; shorten the prompt or the prefix"
            )
        self._inbox.put(Job(request, prompt, fut, min(request.max_tokens, room)))
        return fut

    def close(self) -> None:
        """Stop the worker after its current step; requests still running fail. Idempotent."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None and thread.is_alive():
            self._inbox.put(_CLOSE)
            thread.join()

    # -- worker thread ---------------------------------------------------------------------
    def _run(self) -> None:
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)
        if self.runner.device.type == "cpu" and self.tune_malloc:
            keep_freed_memory()
        with torch.inference_mode():
            while self._receive():
                try:
                    self._drop_abandoned()
                    self._admit()
                    if self.active:
                        self._decode_step()
                except Exception as exc:  # a failed forward fails its requests, not the engine
                    log.exception("engine step failed")
                    self._fail_all(exc)
        self._fail_all(TesttimeError("the generator was closed while this request was running"))

    def _receive(self) -> bool:
        """Move new requests into the waiting line; block while idle. False once closing."""
        if not self.active and not self.waiting:
            job = self._inbox.get()
            if job is _CLOSE:
                return False
            self.waiting.append(job)
            time.sleep(self.gather_s)
        while True:
            try:
                job = self._inbox.get_nowait()
            except queue.Empty:
                return True
            if job is _CLOSE:
                return False
            self.waiting.append(job)

    def _admit(self) -> None:
        rows, tokens, batch = len(self.active), 0, list[Job]()
        while self.waiting:
            job = self.waiting[0]
            fits = rows + job.request.n <= self.max_batch
            fits_prefill = tokens + len(job.prompt) <= self.max_prefill_tokens
            if (rows or batch) and not (fits and fits_prefill):
                break
            batch.append(self.waiting.popleft())
            rows += job.request.n
            tokens += len(job.prompt)
        if batch:
            self._prefill(batch)

    def _prefill(self, jobs: list[Job]) -> None:
        """Prefill the distinct prompts (one forward per length group); give each job's n
        samples a row holding its prompt's K/V."""
        import torch

        planned = plan(jobs, self.prefix)
        keys = [tuple(job.prompt) for job in jobs]
        for job in jobs:
            job.seqs = [Seq.start(job, i) for i in range(job.request.n)]
        for group in groups(list(planned.values())):
            pre, logits = run(self.runner, group)
            self.prefills += 1
            row = {p.prompt: r for r, p in enumerate(group)}
            for p in group:
                self.prefix.put(p.prompt, pre, row[p.prompt])
            mine = [(job, row[k]) for job, k in zip(jobs, keys, strict=True) if k in row]
            src = [r for job, r in mine for _ in range(job.request.n)]
            first, width = len(self.active), max(len(p.prompt) for p in group)
            self.cache.reserve(first + len(src), width)
            self.cache.copy_rows(pre, src, list(range(first, first + len(src))), width)
            new = [s for job, _ in mine for s in job.seqs]
            self.active += new
            self._accept(new, logits[torch.tensor(src, device=self.runner.device)])

    def _decode_step(self) -> None:
        import torch

        dev = self.runner.device
        ids = torch.tensor([[s.tokens[-1]] for s in self.active], device=dev)
        pos = torch.tensor([[s.length] for s in self.active], device=dev)
        logits = self.runner.forward(self.cache, ids, pos)
        self.steps += 1
        for s in self.active:
            s.length += 1
        self._accept(self.active, logits)

    def _accept(self, seqs: list[Seq], logits: torch.Tensor) -> None:
        """Sample each sequence's next token, end the sequences that are done, finish jobs."""
        tokens = self.sampler(logits, [s.params() for s in seqs])
        want = [i for i, s in enumerate(seqs) if s.wants_info]
        infos = (
            self.sampler.infos(
                logits if len(want) == len(seqs) else logits[want],
                [tokens[i] for i in want],
                [seqs[i].job.request.top_logprobs for i in want],
            )
            if want
            else []
        )
        info_of = dict(zip(want, infos, strict=True))
        for i, (s, tok) in enumerate(zip(seqs, tokens, strict=True)):
            if s.finish is not None:  # a sibling finished first and cut it (first-finish)
                continue
            s.accept(tok, info_of.get(i), self.eos, self.decode)
            if s.finish in ("eos", "stop") and s.job.request.first_finish:
                s.job.cancel_rest()
        self._release()

    def _release(self) -> None:
        """Drop ended sequences from the batch (last row moves into the gap); finish jobs."""
        finished_jobs: dict[int, Job] = {}
        for i in range(len(self.active) - 1, -1, -1):
            s = self.active[i]
            if s.finish is None:
                continue
            last = self.active.pop()
            if i < len(self.active):
                self.cache.move_row(len(self.active), i, last.length)
                self.active[i] = last
            finished_jobs[id(s.job)] = s.job
        for job in finished_jobs.values():
            if job.done():
                result = job.result(self.n_params, self.decode)
                self._resolve(job, lambda f: f.set_result(result))  # noqa: B023 (called now)

    def _drop_abandoned(self) -> None:
        """Forget requests whose caller stopped waiting (their task was cancelled)."""
        self.waiting = deque(j for j in self.waiting if not j.abandoned)
        for s in self.active:
            if s.job.abandoned:
                s.finish = "cancelled"
        self._release()

    def _fail_all(self, exc: BaseException) -> None:
        jobs = {id(s.job): s.job for s in self.active} | {id(j): j for j in self.waiting}
        self.active, self.waiting = [], deque()
        for job in jobs.values():
            self._resolve(job, lambda f: f.set_exception(exc))

    @staticmethod
    def _resolve(job: Job, settle: Callable[[Future[Generation]], None]) -> None:
        if job.future.done():
            return
        with contextlib.suppress(InvalidStateError):  # the caller cancelled meanwhile
            settle(job.future)
