"""The `testtime lab` command group and the options its commands share.

`cli/lab.py` (run, ls, report) and `cli/lab_allocate.py` (allocate, across, exchange,
efficiency) each add their commands to this group; `cli/__init__.py` imports both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from testtime.cli import app
from testtime.core.errors import ConfigError

lab = typer.Typer(help="Experiments: store every sample, replay every budget, fit, report.",
                  no_args_is_help=False)  # fmt: skip
app.add_typer(lab, name="lab")

Store = Annotated[Path, typer.Option("--store", help="the experiment store (SQLite file)")]
OutDir = Annotated[
    Path | None, typer.Option("--out", help="report folder [default: next to the store]")
]


def int_list(text: str, flag: str) -> list[int]:
    """'1,2,4' -> [1, 2, 4], for a flag that takes whole numbers."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{flag} must be whole numbers like 1,2,4; got {text!r}") from None
