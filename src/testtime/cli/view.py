"""`testtime view`: a local web app showing a lab store, search traces and live runs."""

from __future__ import annotations

import importlib.util
import threading
import webbrowser
from pathlib import Path
from typing import Annotated

import typer

from testtime.cli import app
from testtime.cli.common import err, listenable
from testtime.core.errors import ConfigError


@app.command()
def view(
    store: Annotated[
        Path | None, typer.Option("--store", help="a lab experiment store (SQLite file)")
    ] = None,
    trace: Annotated[
        list[Path] | None,
        typer.Option("--trace", help="a trace file (testtime run ... --trace FILE); repeatable"),
    ] = None,
    host: Annotated[str, typer.Option(help="address to bind (127.0.0.1: this machine only)")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="port to listen on")] = 8765,
    open_browser: Annotated[
        bool, typer.Option("--open/--no-open", help="open the page in a browser")
    ] = True,
) -> None:
    """Look inside runs and searches in the browser: a lab store, traces, live progress."""
    if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
        raise ConfigError("the viewer needs fastapi and uvicorn; pip install 'testtime[serve]'")
    traces = list(trace or [])
    for path, flag in [(store, "--store")] + [(t, "--trace") for t in traces]:
        if path is not None and not path.is_file():
            raise ConfigError(f"{flag} {path} is not a file; give an existing file")
    listenable(host, port)  # a busy port is one line here, not a uvicorn traceback
    import uvicorn

    from testtime.view.app import create_app

    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"
    err.print(f"viewer on {url} (Ctrl-C stops it)")
    if open_browser:
        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    uvicorn.run(create_app(store, traces, warm=True), host=host, port=port, log_level="warning")
