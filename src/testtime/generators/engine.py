"""The batching engine: every concurrent request's samples decode together, in one thread.

Requests from all running strategies queue up; between decode steps the engine admits
waiting ones, prefills each distinct prompt ONCE (batched forwards, one per group of
similar uncached length, skipping the longest start the prefix cache already holds),
copies its KV rows into the n samples' slots, and from then on every live sequence advances
one token per batched forward. A finished sequence leaves the batch at once (its slot is
refilled by moving the last row into it), so it stops costing compute. The model runs
only in the worker thread; the event loop just awaits futures.

Every submitted future resolves, with a result or an error, whatever raises and wherever:
a failure that belongs to one request (its prompt lookup, its prefill, its stop strings)
fails that request alone; one that belongs to the shared batch (a decode forward, the
sampler) fails the requests in it; the engine then serves the next request. A long prompt
is prefilled a chunk per turn, so a caller that leaves stops its work within a chunk, and
work is admitted only while its worst case fits under the memory ceiling (`memory.py`).
A request with a response format brings its compiled grammar: its rows' logits are masked
to what the grammar allows before sampling (`grammar.py`); a row whose grammar fails fails
its own request.
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
from typing import TYPE_CHECKING, Any

from testtime.core.errors import DeadlineError, TesttimeError
from testtime.core.types import Request
from testtime.generators import memory
from testtime.generators.base import Generation
from testtime.generators.grammar import Masks
from testtime.generators.kvcache import SlotCache
from testtime.generators.prefill import Prefill, groups, plan
from testtime.generators.prefix import PrefixCache
from testtime.generators.runner import ALIGN, Runner, keep_freed_memory
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
        prefill_chunk: int = 512,
        threads: int | None = None,
        gather_s: float = 0.002,
        tune_malloc: bool = True,
        prefix_cache_tokens: int = 8192,
        max_memory: str | int | float | None = None,
    ) -> None:
        self.runner = runner
        self.eos = eos
        self.decode = decode
        self.n_params = n_params
        self.max_batch = max_batch
        self.max_prefill_tokens = max_prefill_tokens
        self.prefill_chunk = prefill_chunk
        self.threads = threads
        self.gather_s = gather_s  # after idling, wait this long so a burst of requests batches
        self.tune_malloc = tune_malloc
        self.max_memory = memory.ceiling(max_memory, str(runner.device))
        per_token = max(1, runner.token_bytes)
        # the prefix cache gets at most a quarter of the ceiling; the batch the rest
        prefix_cache_tokens = min(prefix_cache_tokens, self.max_memory // 4 // per_token)
        self.batch_memory = self.max_memory - prefix_cache_tokens * per_token
        self.cache = runner.new_cache(self.batch_memory)
        self.sampler = Sampler()
        self.masks = Masks()  # constrained rows' token masks (response formats)
        self.prefix = PrefixCache(prefix_cache_tokens)  # prompts' K/V for later requests
        self.active: list[Seq] = []  # active[i] lives in cache row i
        self.waiting: deque[Job] = deque()
        self.prefilling: list[Prefill] = []  # admitted groups whose prompts are computing
        self._inbox: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._stopped: str | None = None  # why the worker ended, once it has
        self.steps = 0  # decode forwards run (for tests and benchmarks)
        self.prefills = 0  # prefill forwards run (chunks)

    def submit(
        self, request: Request, prompt: list[int], grammar: Any = None
    ) -> Future[Generation]:
        """Queue a request; the future resolves when all its samples have ended. With a
        compiled `grammar` (`grammar.Grammars`), every sample follows it."""
        room = self.runner.max_positions - len(prompt)
        if room <= 0:
            raise TesttimeError(
                f"the prompt has {len(prompt)} tokens but the model reads at most "
                f"{self.runner.max_positions}; shorten the prompt or the prefix"
            )
        fut: Future[Generation] = Future()
        job = Job(
            request, prompt, fut, min(request.max_tokens, room), grammar=grammar, eos=self.eos
        )
        self._check_fits(job)
        with self._lock:  # the worker drains the inbox under this lock when it stops
            if self._stopped is not None or self._closed:
                raise TesttimeError(
                    self._stopped or "this generator was closed; load a new one to generate again"
                )
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="testtime-engine", daemon=True
                )
                self._thread.start()
            self._inbox.put(job)
        return fut

    def close(self) -> None:
        """Stop the worker after its current step; requests still running fail. Idempotent."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None and thread.is_alive():
            self._inbox.put(_CLOSE)
            thread.join()

    def _check_fits(self, job: Job) -> None:
        """Refuse a request whose worst case alone exceeds the memory ceiling (it would
        never be admitted)."""
        need = self._batch_bytes(max(2, job.request.n), job.extent) + self._prefill_bytes([job])
        if need > self.batch_memory:
            raise TesttimeError(
                f"this request needs up to {memory.show(need)} of KV cache ({job.request.n} "
                f"sample(s) of up to {job.extent} tokens) but the engine may use "
                f"{memory.show(self.batch_memory)}; ask for fewer samples or max_tokens, or raise "
                f"the ceiling ({memory.ENV}, e.g. {memory.ENV}=8GB)"
            )

    # -- worker thread ---------------------------------------------------------------------
    def _run(self) -> None:
        import torch

        why = "the generator was closed while this request was running"
        try:
            if self.threads:
                torch.set_num_threads(self.threads)
            if self.runner.device.type == "cpu" and self.tune_malloc:
                keep_freed_memory()
            with torch.inference_mode():
                while self._receive():
                    try:
                        self._step()
                    except Exception as exc:  # a failed step fails its requests, not the engine
                        log.exception("engine step failed")
                        self._fail_all(exc)
        except BaseException as exc:  # the worker itself broke: nothing may wait on it
            why = f"the generator stopped after an internal error ({exc!r}); load it again"
            log.exception("engine worker stopped")
        finally:
            self._stop(why)

    def _stop(self, why: str) -> None:
        """Fail everything in flight and everything still queued; refuse new requests."""
        error = TesttimeError(why)
        with self._lock:
            self._stopped = why
            while True:
                try:
                    job = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    self.waiting.append(job)
        self._fail_all(error)

    def _step(self) -> None:
        self._drop_abandoned()
        self._expire(time.monotonic())
        self._admit()
        # the batch's cache may grow ahead of need only into what the prefills leave free
        self.cache.max_bytes = self.batch_memory - sum(p.cache.nbytes for p in self.prefilling)
        self._advance_prefills()
        if self.active:
            self._decode_step()

    def _receive(self) -> bool:
        """Move new requests into the waiting line; block while idle. False once closing."""
        if not self.active and not self.waiting and not self.prefilling:
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

    # -- admission under the memory ceiling -------------------------------------------------
    def _batch_bytes(self, rows: int, extent: int) -> int:
        width = -(-extent // ALIGN) * ALIGN
        return SlotCache.bytes_for(rows, width, self.runner.token_bytes)

    def _prefill_bytes(self, jobs: list[Job]) -> int:
        return sum(self._batch_bytes(1, len(job.prompt)) for job in jobs)

    def _in_use(self) -> tuple[int, int, int]:
        """Rows, widest extent and prefill-cache bytes of the admitted work."""
        jobs = [s.job for s in self.active] + [j for p in self.prefilling for j in p.jobs]
        rows = len(self.active) + sum(p.rows for p in self.prefilling)
        extent = max((j.extent for j in jobs), default=0)
        pre = sum(p.cache.nbytes for p in self.prefilling)
        return rows, extent, pre

    def _admit(self) -> None:
        """Admit waiting requests in order while rows, prefill tokens and memory allow."""
        rows, extent, pre = self._in_use()
        busy = rows > 0
        batch: list[Job] = []
        tokens = 0
        while self.waiting:
            job = self.waiting[0]
            new_rows, new_extent = rows + job.request.n, max(extent, job.extent)
            need = (
                max(self._batch_bytes(max(2, new_rows), new_extent), self.cache.nbytes)
                + pre
                + self._prefill_bytes([*batch, job])
            )
            fits = new_rows <= self.max_batch and need <= self.batch_memory
            fits_prefill = tokens + len(job.prompt) <= self.max_prefill_tokens
            if (busy or batch) and not (fits and (fits_prefill or not batch)):
                break
            batch.append(self.waiting.popleft())
            rows, extent, tokens = new_rows, new_extent, tokens + len(job.prompt)
        if batch:
            try:
                self._start_prefills(batch)
            except Exception as exc:  # none of the admitted requests may be left behind
                log.warning("admission failed: %r", exc)
                started = {id(j) for p in self.prefilling for j in p.jobs}
                for job in batch:
                    if id(job) not in started:
                        self._fail_job(job, exc)

    def _start_prefills(self, jobs: list[Job]) -> None:
        """Plan the admitted requests' prompts; a request whose planning fails fails alone."""
        planned_jobs: list[Job] = []
        for job in jobs:
            try:
                job.seqs = [Seq.start(job, i) for i in range(job.request.n)]
                planned_jobs.append(job)
            except Exception as exc:
                self._fail_job(job, exc)
        try:
            planned = plan(planned_jobs, self.prefix)
        except Exception:  # find the request at fault: plan each alone
            planned = {}
            for job in list(planned_jobs):
                try:
                    planned |= plan([job], self.prefix)
                except Exception as exc:
                    planned_jobs.remove(job)
                    self._fail_job(job, exc)
        keys = {id(job): tuple(job.prompt) for job in planned_jobs}
        for group in groups(list(planned.values())):
            prompts = {p.prompt for p in group}
            mine = [job for job in planned_jobs if keys[id(job)] in prompts]
            try:
                self.prefilling.append(Prefill(self.runner, group, mine, self.prefill_chunk))
            except Exception as exc:
                for job in mine:
                    self._fail_job(job, exc)

    def _advance_prefills(self) -> None:
        """One chunk of every prefill in progress; a finished one joins the batch."""
        for pre in list(self.prefilling):
            try:
                logits = pre.step()
                self.prefills += 1
                if logits is not None:
                    self.prefilling.remove(pre)
                    self._activate(pre, logits)
            except Exception as exc:  # this prefill's requests fail; the batch goes on
                log.warning("prefill failed: %r", exc)
                if pre in self.prefilling:
                    self.prefilling.remove(pre)
                self._drop_rows_of(pre.jobs, exc)

    def _activate(self, pre: Prefill, logits: torch.Tensor) -> None:
        """Give each of the prefill's jobs n rows holding its prompt's K/V; sample the first
        token of each."""
        import torch

        row = {p.prompt: r for r, p in enumerate(pre.group)}
        for p in pre.group:
            self.prefix.put(p.prompt, pre.cache, row[p.prompt])
        jobs = [job for job in pre.jobs if not job.abandoned and job.error is None]
        src = [row[tuple(job.prompt)] for job in jobs for _ in range(job.request.n)]
        if not src:
            return
        first, width = len(self.active), max(len(p.prompt) for p in pre.group)
        # the whole worst case now, once: growing step by step while decoding left every
        # outgrown buffer in the allocator's heap (peak RSS ~2.4x the KV it held, measured)
        extent = max(s.job.extent for s in [*self.active, *(s for j in jobs for s in j.seqs)])
        self.cache.reserve(max(2, first + len(src)), -(-extent // ALIGN) * ALIGN)
        self.cache.copy_rows(pre.cache, src, list(range(first, first + len(src))), width)
        new = [s for job in jobs for s in job.seqs]
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
        """Sample each sequence's next token, end the sequences that are done, finish jobs.

        Sampling is shared by the rows (a failure fails their requests); taking a token (stop
        strings, logprobs) is per sequence, so a failure there fails its own request alone.
        """
        try:
            tokens = self.sampler(self._masked(seqs, logits), [s.params() for s in seqs])
            want = [i for i, s in enumerate(seqs) if s.wants_info]
            infos = (
                self.sampler.infos(
                    logits if len(want) == len(seqs) else logits[want],
                    [tokens[i] for i in want],
                    [_asked_top(seqs[i].job.request.top_logprobs) for i in want],
                )
                if want
                else []
            )
        except Exception as exc:
            log.warning("sampling failed: %r", exc)
            self._drop_rows_of(list({id(s.job): s.job for s in seqs}.values()), exc)
            return
        info_of = dict(zip(want, infos, strict=True))
        for i, (s, tok) in enumerate(zip(seqs, tokens, strict=True)):
            if s.finish is not None:  # a sibling finished first and cut it (first-finish)
                continue
            try:
                s.accept(tok, info_of.get(i), self.eos, self.decode)
            except Exception as exc:
                log.warning("a sequence failed: %r", exc)
                s.job.fail(exc)
                continue
            if s.finish in ("eos", "stop") and s.job.request.first_finish:
                s.job.cancel_rest()
        self._release()

    def _masked(self, seqs: list[Seq], logits: torch.Tensor) -> torch.Tensor:
        """The logits to sample from: constrained rows masked to their grammar (in a copy
        when logprobs are asked, which describe the model's raw distribution). A row whose
        grammar fails fails its own request."""
        rows = [(i, s.matcher) for i, s in enumerate(seqs) if s.matcher is not None]
        if not rows:
            return logits
        masked = logits.clone() if any(s.wants_info for s in seqs) else logits
        for i, exc in self.masks.apply(masked, rows):
            log.warning("a response format's grammar failed: %r", exc)
            seqs[i].job.fail(exc)
        return masked

    def _release(self) -> None:
        """Drop ended sequences from the batch (last row moves into the gap); finish jobs;
        give back cache memory the batch no longer needs."""
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
        if finished_jobs:  # memory first: a caller that hears back finds it given back
            self._shrink()
        for job in finished_jobs.values():
            if job.done():
                self._finish(job)

    def _finish(self, job: Job) -> None:
        result: Generation | None = None
        if job.error is None:
            try:
                result = job.result(self.n_params, self.decode)
            except Exception as exc:
                job.error = exc
        error = job.error
        if error is not None:
            self._resolve(job, lambda f: f.set_exception(error))
        elif result is not None:
            self._resolve(job, lambda f: f.set_result(result))

    def _shrink(self) -> None:
        """Keep the batch's cache no larger than what its live rows can still need."""
        if not self.active:
            self.cache.clear()
            return
        width = -(-max(s.job.extent for s in self.active) // ALIGN) * ALIGN
        self.cache.fit(max(2, len(self.active)), width)

    def _drop_abandoned(self) -> None:
        """Forget requests whose caller stopped waiting (their task was cancelled)."""
        self.waiting = deque(j for j in self.waiting if not j.abandoned)
        for pre in list(self.prefilling):
            pre.jobs = [j for j in pre.jobs if not j.abandoned]
            if not pre.jobs:  # nobody waits for this prompt any more: stop computing it
                self.prefilling.remove(pre)
        for s in self.active:
            if s.job.abandoned:
                s.finish = "cancelled"
        self._release()

    def _expire(self, now: float) -> None:
        """Deadlines: a running request returns what it has (finish "length"); one that has
        not started fails with `DeadlineError`."""
        late = DeadlineError("the seconds budget ran out before this request could start")
        for job in [j for j in self.waiting if j.past(now)]:
            self.waiting.remove(job)
            self._resolve(job, lambda f: f.set_exception(late))
        for pre in list(self.prefilling):
            gone = [j for j in pre.jobs if j.past(now)]
            for job in gone:
                pre.jobs.remove(job)
                self._resolve(job, lambda f: f.set_exception(late))
            if not pre.jobs:
                self.prefilling.remove(pre)
        cut = False
        for s in self.active:
            if s.finish is None and s.job.past(now):
                s.finish, cut = "length", True
        if cut:
            self._release()

    def _fail_job(self, job: Job, exc: BaseException) -> None:
        """Fail a request that holds no rows in the batch."""
        job.fail(exc)
        self._resolve(job, lambda f: f.set_exception(exc))

    def _drop_rows_of(self, jobs: list[Job], exc: BaseException) -> None:
        """Fail these requests and take their rows out of the batch; the rest go on."""
        for job in jobs:
            job.fail(exc)
            if not job.seqs or all(s not in self.active for s in job.seqs):
                self._resolve(job, lambda f: f.set_exception(exc))
        self._release()

    def _fail_all(self, exc: BaseException) -> None:
        jobs = {id(s.job): s.job for s in self.active} | {id(j): j for j in self.waiting}
        jobs |= {id(j): j for p in self.prefilling for j in p.jobs}
        self.active, self.waiting, self.prefilling = [], deque(), []
        with contextlib.suppress(Exception):
            self.cache.clear()
        for job in jobs.values():
            self._resolve(job, lambda f: f.set_exception(exc))

    @staticmethod
    def _resolve(job: Job, settle: Callable[[Future[Generation]], None]) -> None:
        if job.future.done():
            return
        with contextlib.suppress(InvalidStateError):  # the caller cancelled meanwhile
            settle(job.future)


SPARE_TOP = 4  # alternatives asked beyond top_logprobs: ids that decode alike merge into one


def _asked_top(k: int) -> int:
    """How many of a position's likeliest ids to take, so that `k` distinct texts remain
    after ids that decode to the same text merge (`sequence._named`)."""
    return k + SPARE_TOP if k else 0
