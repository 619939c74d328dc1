"""Shared CLI plumbing: loading the model, building components, progress bars, cost tables."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from testtime.core.cost import Cost
from testtime.core.errors import ConfigError
from testtime.core.types import Result
from testtime.generators.base import Generator

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

DEFAULT_MODEL = "smollm2-135m"
DEFAULT_TASK = "arithmetic"


def load_model(name: str, device: str | None = None, dtype: str | None = None) -> Generator:
    """The generator for a packaged model name, a local path, or 'fake'."""
    from testtime.generators.models import open_generator

    opts: dict[str, Any] = {}
    if device:
        opts["device"] = device
    if dtype:
        opts["dtype"] = dtype
    with err.status(f"loading model {name} ...", spinner="dots"):
        return open_generator(name, **opts)


@contextmanager
def progress(total: int, label: str, enabled: bool = True) -> Iterator[Any]:
    """A rich progress bar on stderr (so --json output stays clean); yields an advance()."""
    if not enabled or total <= 1 or not sys.stderr.isatty():
        yield lambda *_: None
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


def total_cost(results: Sequence[Result]) -> Cost:
    total = Cost()
    for r in results:
        total += r.cost
    return total


def accuracy(results: Sequence[Result]) -> float | None:
    graded = [r.correct for r in results if r.correct is not None]
    return sum(graded) / len(graded) if graded else None


def human(x: float) -> str:
    """1234567 -> '1.23M'."""
    for unit, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def positive(value: int, name: str) -> int:
    if value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value}")
    return value
