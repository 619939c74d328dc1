"""Shared CLI plumbing: loading the model, building components, progress bars, cost tables."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from testtime.core.cost import Cost
from testtime.core.errors import ConfigError
from testtime.core.types import Result
from testtime.generators.backends import forms
from testtime.generators.base import Generator

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

DEFAULT_TASK = "arithmetic"
DEFAULT_STORE = Path("testtime-lab") / "store.sqlite"  # the lab's experiment store
MODEL_HELP = f"the model: {forms()}"  # each registered backend's form, for --model


def load_model(name: str, device: str | None = None, dtype: str | None = None) -> Generator:
    """The generator for a model name in any backend's form (`MODEL_HELP`)."""
    from testtime.generators.models import open_generator

    opts: dict[str, Any] = {}
    if device:
        opts["device"] = device
    if dtype:
        opts["dtype"] = dtype
    with status(f"loading model {name} ..."):
        return open_generator(name, **opts)


@contextmanager
def status(text: str) -> Iterator[None]:
    """A spinner on a terminal; elsewhere (CI, nohup, a pipe) the text once, as a plain line."""
    if sys.stderr.isatty():
        with err.status(text, spinner="dots"):
            yield
    else:
        err.print(text, soft_wrap=True)
        yield


@contextmanager
def progress(total: int, label: str, enabled: bool = True) -> Iterator[Any]:
    """A rich progress bar on stderr (so --json output stays clean); yields an advance().

    Where stderr is not a terminal (CI, nohup, a pipe) a bar cannot draw, so plain lines
    say how far it is instead: one at the start, one at most every `EVERY` seconds, one
    at the end."""
    if not enabled or total <= 1:
        yield lambda *_: None
        return
    if not sys.stderr.isatty():
        lines = ProgressLines(total, label)
        try:
            yield lines.advance
        finally:
            lines.finish()
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    with bar:
        task_id = bar.add_task(label, total=total)
        yield lambda *_: bar.advance(task_id)


class ProgressLines:
    """Progress as plain lines: `label: 12/50 done (24%), 1m05s elapsed, ~3m26s left`."""

    EVERY = 10.0  # seconds between lines at least

    def __init__(self, total: int, label: str, clock: Callable[[], float] = time.monotonic):
        self.total, self.label, self.clock = total, label, clock
        self.done = 0
        self.started = self.last = clock()
        self._say(f"{label}: 0/{total} to do")

    def advance(self, *_: object) -> None:
        self.done += 1
        now = self.clock()
        if now - self.last >= self.EVERY and self.done < self.total:
            self.last = now
            elapsed = now - self.started
            left = elapsed / self.done * (self.total - self.done)
            self._say(
                f"{self.label}: {self.done}/{self.total} done ({self.done / self.total:.0%}), "
                f"{_clock(elapsed)} elapsed, ~{_clock(left)} left"
            )

    def finish(self) -> None:
        """The last line: how many finished (fewer than all when the run stopped early)."""
        elapsed = _clock(self.clock() - self.started)
        self._say(f"{self.label}: {self.done}/{self.total} done in {elapsed}")

    @staticmethod
    def _say(line: str) -> None:
        err.print(line, soft_wrap=True, markup=False)


def _clock(seconds: float) -> str:
    """73.4 -> '1m13s'; 5.2 -> '5s'."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def total_cost(results: Sequence[Result]) -> Cost:
    total = Cost()
    for r in results:
        total += r.cost
    return total


def accuracy(results: Sequence[Result]) -> float | None:
    graded = [r.correct for r in results if r.correct is not None]
    return sum(graded) / len(graded) if graded else None


def positive(value: int, name: str) -> int:
    if value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value}")
    return value


def listenable(host: str, port: int) -> None:
    """Refuse, before the model loads, a port out of range or an address we cannot bind
    (one in use, not of this machine): the server would fail there after loading it."""
    import errno
    import socket

    if not 1 <= port <= 65535:
        raise ConfigError(f"--port must be 1 to 65535, got {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as e:
        raise ConfigError(
            f"--host {host}: {e.strerror}; give an address of this machine, e.g. 127.0.0.1 "
            "(this machine only) or 0.0.0.0 (every interface)"
        ) from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind(address)
        except OSError as e:
            why = {
                errno.EADDRINUSE: "another process is listening there; stop it or pick "
                "another --port",
                errno.EACCES: "permission denied (ports below 1024 need privileges); pick "
                "a --port above 1023",
                errno.EADDRNOTAVAIL: "that address is not one of this machine's; use "
                "127.0.0.1 or 0.0.0.0",
            }.get(e.errno or 0, e.strerror)
            raise ConfigError(f"cannot listen on {host}:{port}: {why}") from None
