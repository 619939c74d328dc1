"""`testtime serve`: test-time scaling behind an OpenAI-compatible API."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated

import typer

from testtime.cli import app
from testtime.cli.common import MODEL_HELP, err, listenable, load_model, positive
from testtime.core.budget import Budget
from testtime.core.errors import ConfigError
from testtime.core.voting import fallback_rule
from testtime.generators.base import Generator
from testtime.generators.models import DEFAULT_MODEL

BUDGET_HELP = "the most any request may spend (and the budget of requests naming none)"


@app.command()
def serve(
    model: Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)] = DEFAULT_MODEL,
    upstream: Annotated[
        str | None,
        typer.Option(help="proxy to this OpenAI-compatible server, e.g. http://host:8000/v1"),
    ] = None,
    upstream_model: Annotated[str | None, typer.Option(help="the upstream's model name")] = None,
    upstream_params: Annotated[
        int, typer.Option(help="the upstream model's parameter count, for FLOPs")
    ] = 0,
    name: Annotated[str | None, typer.Option(help="the model name clients use")] = None,
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    max_queue: Annotated[int, typer.Option(help="requests admitted (running + waiting)")] = 64,
    max_concurrent: Annotated[int, typer.Option(help="requests running at once")] = 16,
    deadline: Annotated[
        float, typer.Option(help="seconds a request may take, queue included")
    ] = 300.0,
    max_budget: Annotated[str, typer.Option(help=BUDGET_HELP)] = "64 samples",
    max_tokens: Annotated[int, typer.Option(help="the most new tokens per sample")] = 4096,
    max_param: Annotated[
        int, typer.Option(help="the largest size parameter a request may give (n, steps, ...)")
    ] = 4096,
    keys: Annotated[
        Path | None,
        typer.Option(
            help='JSON file of API keys: {"KEY": {"name": "alice", "cap_tokens": N, '
            '"cap_sandbox_seconds": S}}'
        ),
    ] = None,
    drain: Annotated[
        int, typer.Option(help="seconds to finish in-flight requests at shutdown")
    ] = 30,
    allow_file_verifiers: Annotated[
        bool, typer.Option(help="let requests name verifiers that load local files (prm, probe)")
    ] = False,
    run_tests: Annotated[
        bool,
        typer.Option(
            help="run the tests requests bring (testtime.tests) on their samples' code, in the "
            "bubblewrap sandbox; refuses to start where the sandbox cannot run"
        ),
    ] = False,
    allow_policy_dir: Annotated[
        list[Path] | None,
        typer.Option(
            help="a directory whose policy files requests may name (compute_optimal's "
            "policy=); repeat for more. Without it, requests name no files"
        ),
    ] = None,
    fallback: Annotated[
        str,
        typer.Option(
            help="how to choose when a strategy's vote decides nothing (every sample its own "
            "answer group, as free text is): likelihood (the highest mean token logprob) or "
            "first; a request may name another (testtime.fallback)"
        ),
    ] = "likelihood",
    device: Annotated[str | None, typer.Option(help="cpu, cuda, ...")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Serve a model over the OpenAI chat-completions API, with any strategy per request."""
    if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
        raise ConfigError("serving needs fastapi and uvicorn; pip install 'testtime[serve]'")
    from testtime.server import Settings
    from testtime.server import serve as run_server
    from testtime.server.limits import Keys

    for value, flag in (
        (max_queue, "--max-queue"),
        (max_concurrent, "--max-concurrent"),
        (max_tokens, "--max-tokens"),
        (max_param, "--max-param"),
    ):
        positive(value, flag)
    if max_queue < max_concurrent:
        raise ConfigError(
            f"--max-queue ({max_queue}) counts running and waiting requests, so it must be at "
            f"least --max-concurrent ({max_concurrent})"
        )
    if not deadline > 0:
        raise ConfigError(f"--deadline must be a positive number of seconds, got {deadline}")
    if (upstream is None) != (upstream_model is None):
        raise ConfigError("--upstream and --upstream-model go together; give both or neither")
    policy_dirs = tuple(d.expanduser().resolve() for d in allow_policy_dir or ())
    for d in policy_dirs:
        if not d.is_dir():
            raise ConfigError(f"--allow-policy-dir {d} is not a directory; give one that exists")
    settings = Settings(
        model=name or upstream_model or model,
        max_queue=max_queue,
        max_concurrent=max_concurrent,
        deadline=deadline,
        max_budget=Budget.parse(max_budget),
        max_tokens=max_tokens,
        max_param=max_param,
        allow_file_verifiers=allow_file_verifiers,
        run_tests=run_tests,
        policy_dirs=policy_dirs,
        keys=Keys.load(keys) if keys is not None else None,
        upstream=upstream,
        fallback=fallback_rule(fallback),
    )
    listenable(host, port)  # a bad or busy port fails now, not after the model loads
    if run_tests:  # no sandbox, no server: request tests never run outside it
        from testtime.sandbox import probe

        probe()
    generator = _generator(model, upstream, upstream_model, upstream_params, device)
    where = f"upstream {upstream} ({upstream_model})" if upstream else model
    tests = " (running request tests in the sandbox)" if run_tests else ""
    err.print(f"serving {settings.model!r} from {where} on http://{host}:{port}/v1{tests}")
    err.print(f"requests in flight, live: http://{host}:{port}/testtime/live")
    run_server(settings, generator, host=host, port=port, drain=drain, log_level=log_level)


def _generator(
    model: str, upstream: str | None, upstream_model: str | None, n_params: int, device: str | None
) -> Generator:
    if upstream is None or upstream_model is None:
        return load_model(model, device=device)
    from testtime.generators.http import HTTPGenerator

    return HTTPGenerator(upstream, upstream_model, n_params=n_params)
