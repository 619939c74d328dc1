"""`testtime strategies | verifiers | tasks | models`: what exists, with parameters and defaults."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from rich.table import Table

from testtime.cli import app
from testtime.cli.common import out
from testtime.core.registry import Registry, _describe


def _params(reg: Registry[Any], name: str) -> str:
    entry = reg.get(name)
    hints = typing.get_type_hints(entry.params)
    defaults = reg.defaults(name)
    return (
        "\n".join(
            f"{f.name}={defaults[f.name]!r}  [dim]{_describe(hints[f.name])}[/dim]"
            for f in dataclasses.fields(entry.params)
        )
        or "[dim](none)[/dim]"
    )


def _list(reg: Registry[Any], title: str) -> None:
    table = Table(title=title, title_justify="left", show_lines=True)
    table.add_column("name", style="bold")
    table.add_column("what")
    table.add_column("parameters (defaults)")
    for name in reg.names():
        table.add_row(name, reg.get(name).summary, _params(reg, name))
    out.print(table)


@app.command()
def strategies() -> None:
    """List strategies with their parameters and defaults."""
    from testtime.strategies.base import STRATEGIES

    _list(STRATEGIES, "strategies")


@app.command()
def verifiers() -> None:
    """List verifiers with their parameters and defaults."""
    import testtime.verifiers  # noqa: F401  (registers)
    from testtime.verifiers.base import VERIFIERS

    _list(VERIFIERS, "verifiers")


@app.command()
def tasks() -> None:
    """List tasks with their parameters and defaults."""
    import testtime.tasks  # noqa: F401  (registers)
    from testtime.tasks.base import TASKS

    _list(TASKS, "tasks")


@app.command()
def models() -> None:
    """List packaged models: installed or not, and how to install them."""
    from testtime.generators.models import catalogue

    table = Table(title="models", title_justify="left")
    table.add_column("name", style="bold")
    table.add_column("installed")
    table.add_column("what")
    table.add_column("install with")
    for m in catalogue():
        table.add_row(
            m["name"] + (" (default)" if m["default"] else ""),
            "[green]yes[/green]" if m["installed"] else "[red]no[/red]",
            m["description"],
            m["install"],
        )
    out.print(table)
    out.print("Any local Hugging Face model directory or .gguf file also works: --model PATH")
