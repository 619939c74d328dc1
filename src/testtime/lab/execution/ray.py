"""Fanning a run out over a Ray cluster: many workers generate, one process writes.

Each worker is an actor that loads its generator once and takes batches of units; its
rows come back to this process, which alone writes the store (one transaction per unit,
INSERT OR IGNORE). A worker that dies loses only its unfinished batches, which go back
on the queue for a fresh worker, so nothing is lost and nothing is stored twice.
"""

from __future__ import annotations

import asyncio
import math
import socket
from collections import deque
from collections.abc import Callable
from typing import Any

from testtime.core.errors import ConfigError, TesttimeError
from testtime.generators.models import open_generator
from testtime.lab.data.rows import ResultRow, SampleRow, Unit, VerdictRow
from testtime.lab.data.spec import RunSpec
from testtime.lab.data.store import Store
from testtime.lab.execution.runner import Plan, writer
from testtime.lab.execution.work import UnitRunner

Rows = list[tuple[Unit, list[SampleRow], ResultRow | None, list[VerdictRow]]]


class Worker:
    """A Ray actor's state: one generator and the run's tasks, built once."""

    def __init__(self, spec: RunSpec, model: str) -> None:
        self.generator = open_generator(model)
        self.runner = UnitRunner(spec, self.generator)

    def n_params(self) -> int:
        return self.generator.n_params

    async def run(self, units: list[Unit]) -> Rows:
        done = await asyncio.gather(*(self.runner.run(u) for u in units))
        return [(u, s, r, v) for u, (s, r, v) in zip(units, done, strict=True)]


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--ray needs Ray, an optional extra: pip install 'testtime[ray]'"
        ) from None
    return ray


def connect(address: str, workers: int) -> bool:
    """Join the cluster at `address` ('local' starts one here); True if we started it."""
    ray = _ray()
    if ray.is_initialized():
        return False
    try:
        if address == "local":
            ray.init(num_cpus=max(2, workers), include_dashboard=False, log_to_driver=False)
        else:
            _probe(address)
            ray.init(address=address, log_to_driver=False)
    except (ConnectionError, TimeoutError, ValueError, RuntimeError) as e:
        raise ConfigError(
            f"no Ray cluster answers at {address!r} ({str(e).splitlines()[0] if str(e) else e}); "
            f"start one with `ray start --head`, or use --ray local"
        ) from None
    return True


def _probe(address: str) -> None:
    """Fail fast on a host:port nobody listens on (Ray itself retries for minutes)."""
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return  # 'auto' and friends: Ray's own lookup
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise ConnectionError(f"nothing listens there: {e.strerror or e}") from None


async def run_ray(
    store: Store,
    spec: RunSpec,
    plan: Plan,
    address: str,
    workers: int = 2,
    *,
    on_unit: Callable[[Unit], None] | None = None,
    worker: type[Worker] = Worker,
    batch: int | None = None,
) -> None:
    """Do a plan's pending units on `workers` Ray actors per model; store rows here."""
    if workers <= 0:
        raise ConfigError(f"--workers must be a positive number, got {workers}")
    ray = _ray()
    started = connect(address, workers)
    try:
        write = writer(store, plan.run_id, on_unit)
        for model in spec.models:
            units = [u for u in plan.pending if u.model == model]
            if units:
                size = batch or max(1, min(16, math.ceil(len(units) / (workers * 4))))
                batches = deque(units[i : i + size] for i in range(0, len(units), size))
                await _drain(ray, worker, spec, model, batches, workers, write, store, plan)
    finally:
        if started:
            ray.shutdown()


async def _drain(
    ray: Any, worker: type[Worker], spec: RunSpec, model: str, queue: deque[list[Unit]],
    workers: int, write: Callable[..., None], store: Store, plan: Plan,
) -> None:  # fmt: skip
    actor_cls = ray.remote(num_cpus=1, max_concurrency=4)(worker)
    actors = [actor_cls.remote(spec, model) for _ in range(workers)]
    store.set_n_params(plan.run_id, model, await _get(ray, actors[0].n_params.remote()))
    inflight: dict[Any, tuple[Any, list[Unit]]] = {}
    lives = 3 * workers  # replacement workers before giving up

    def submit(actor: Any) -> None:
        if queue:
            units = queue.popleft()
            inflight[actor.run.remote(units)] = (actor, units)

    for actor in actors:
        submit(actor)
        submit(actor)  # two batches each, so a worker never waits for the driver
    while inflight:
        ready, _ = await asyncio.to_thread(ray.wait, list(inflight), num_returns=1)
        actor, units = inflight.pop(ready[0])
        try:
            rows = await _get(ray, ready[0])
        except ray.exceptions.RayActorError:
            queue.appendleft(units)  # a lost worker: its batch is done again, elsewhere
            lives -= 1
            if lives < 0:
                raise ConfigError(
                    "Ray workers keep dying (see the Ray logs: out of memory?); stored units are "
                    "kept, re-run the same command to resume"
                ) from None
            for ref, (a, us) in list(inflight.items()):
                if a is actor:  # its other batch dies with it
                    del inflight[ref]
                    queue.appendleft(us)
            actor = actor_cls.remote(spec, model)
            submit(actor)
            submit(actor)
            continue
        for unit, samples, result, verdicts in rows:
            write(unit, samples, result, verdicts)
        submit(actor)


async def _get(ray: Any, ref: Any) -> Any:
    try:
        return await asyncio.to_thread(ray.get, ref)
    except ray.exceptions.RayTaskError as e:  # a user error inside a worker: show it as ours
        cause = getattr(e, "cause", None)
        if isinstance(cause, TesttimeError):
            raise cause from None
        raise
