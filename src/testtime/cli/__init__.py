"""The `testtime` command line: a thin shell that parses, calls the library and prints.

Every user error (a `TesttimeError`) becomes one red line on stderr and exit code 2,
never a traceback.
"""

from __future__ import annotations

import logging
import os
import sys

import typer

from testtime.core.errors import TesttimeError

app = typer.Typer(
    name="testtime",
    help="Spend more compute at inference to get better answers, and measure how well it pays.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# each of these modules adds its commands to `app`
from testtime.cli import diffuse, lab, lab_allocate, listing, run, serve, view  # noqa: E402,F401


def quiet_libraries() -> None:
    """Library warnings (a deprecation in transformers or torch, say) go to the log, not to
    the user's terminal; `TESTTIME_DEBUG=1` shows them. The tests turn them into errors
    instead, so an upstream change is found by us (`make test-latest`)."""
    if os.environ.get("TESTTIME_DEBUG"):
        return
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.ERROR)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # we print our own progress
    os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF conversion bar


def main() -> None:
    """Entry point of the console script."""
    quiet_libraries()
    sys.argv[1:] = lab.ray_flag(sys.argv[1:])
    try:
        app()
    except TesttimeError as e:
        from rich.console import Console

        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {e}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
