"""`testtime strategies | verifiers | tasks | models`: what exists, with parameters and defaults."""

from __future__ import annotations

import dataclasses
import typing
import zlib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from testtime.cli import app
from testtime.cli.common import DEFAULT_STORE, out
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


verifiers_app = typer.Typer(help="List verifiers (no subcommand), or train a probe.")
app.add_typer(verifiers_app, name="verifiers")


@verifiers_app.callback(invoke_without_command=True)
def verifiers(ctx: typer.Context) -> None:
    """List verifiers with their parameters and defaults."""
    if ctx.invoked_subcommand is None:
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
    from testtime.generators.backends import forms
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
    out.print(f"Also as --model: {forms(but='local')}")


@verifiers_app.command("train-probe")
def train_probe(
    run_id: str,
    store: Annotated[Path, typer.Option(help="the experiment store")] = DEFAULT_STORE,
    out_file: Annotated[Path, typer.Option("--out", help="where to write the probe")] = Path(
        "probe.npz"
    ),
    l2: Annotated[float, typer.Option(help="L2 penalty of the logistic regression")] = 1.0,
) -> None:
    """Train a probe (logistic regression on the policy's hidden states) on a run's samples."""
    import asyncio

    import numpy as np

    from testtime.cli.common import load_model
    from testtime.lab.data.store import open_store
    from testtime.lab.policy.probe import probe_examples
    from testtime.verifiers.probe import fit_probe

    with open_store(store, readonly=True) as db:
        model, requests, labels, groups = probe_examples(db, run_id)
    generator = load_model(model)

    async def features() -> list[list[float]]:
        try:
            return await generator.features(requests)
        finally:
            await generator.aclose()

    x, y = np.array(asyncio.run(features())), np.array(labels)
    held_out = {g for g in set(groups) if zlib.crc32(g.encode()) % 5 == 0}  # ~20% of problems
    test = np.array([g in held_out for g in groups])
    meta = {"model": generator.name, "run": run_id, "examples": len(y), "l2": l2}
    check = fit_probe(x[~test], y[~test], l2) if test.any() and (~test).any() else None
    if check is not None and len(set(y[test].tolist())) > 1:
        acc = float(((check.predict(x[test]) >= 0.5) == y[test]).mean())
        meta["held_out_accuracy"] = acc
        out.print(f"held-out accuracy {acc:.1%} on {int(test.sum())} samples of "
                  f"{len(held_out)} problems (base rate {y[test].mean():.1%})")  # fmt: skip
    probe = fit_probe(x, y, l2, meta)
    probe.save(out_file)
    out.print(f"probe trained on {len(y)} samples ({y.mean():.1%} correct): {out_file}")
