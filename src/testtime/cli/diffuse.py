"""`testtime diffuse`: draw with a diffusion model, spending function evaluations (NFE) on
noise search or FK steering; `testtime diffuse train` rebuilds the embedded digit model.

`--digit 7` uses the embedded 8x8 digit model (its reward: the shipped classifier's
probability of 7); `--prompt TEXT --pipeline DIR --reward DIR` drives a local diffusers
pipeline with a local CLIP (or aesthetic) reward. Candidates go to a PNG grid, captioned
with their rewards; the cost is printed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from testtime.cli import app
from testtime.cli.common import err, human, out, positive
from testtime.core.budget import Budget
from testtime.core.cost import Cost
from testtime.core.errors import ConfigError
from testtime.core.registry import parse_params

diffuse = typer.Typer(help="Diffusion: noise search and FK steering under an NFE budget.")
app.add_typer(diffuse, name="diffuse")

BUDGET_HELP = "e.g. '160 nfe', '1e9 flops', '30 seconds'; sets the width unless --particles"
GUIDANCE_HELP = "digit model: 0 = unconditional (only the reward steers), 1 = class-conditional"


@diffuse.callback(invoke_without_command=True)
def draw(
    ctx: typer.Context,
    digit: Annotated[int | None, typer.Option(help="draw this digit (embedded model)")] = None,
    prompt: Annotated[str | None, typer.Option(help="text prompt (needs --pipeline)")] = None,
    pipeline: Annotated[Path | None, typer.Option(help="local diffusers pipeline")] = None,
    reward: Annotated[Path | None, typer.Option(help="local CLIP / aesthetic reward")] = None,
    strategy: Annotated[str, typer.Option("--strategy", "-s")] = "best_of_n",
    param: Annotated[list[str], typer.Option("--param", "-p", help="key=value")] = [],  # noqa: B006
    particles: Annotated[int | None, typer.Option(help="width: n, particles, ...")] = None,
    budget: Annotated[str | None, typer.Option("--budget", "-b", help=BUDGET_HELP)] = None,
    steps: Annotated[int | None, typer.Option(help="denoising steps per pass")] = None,
    guidance: Annotated[float | None, typer.Option(help=GUIDANCE_HELP)] = None,
    seed: Annotated[int, typer.Option()] = 0,
    output: Annotated[Path, typer.Option("--out", "-o", help="PNG grid")] = Path("diffuse.png"),
    trace: Annotated[Path | None, typer.Option(help="write the result as JSON")] = None,
    size: Annotated[int | None, typer.Option(help="image side in pixels (pipelines)")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, ... (pipelines)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Draw a digit or a prompt with a diffusion strategy; write the candidates' grid."""
    if ctx.invoked_subcommand is not None:
        return
    from testtime.diffusion import grid
    from testtime.diffusion.models import open_setup
    from testtime.diffusion.run import WIDTH, fill, solve, strategy_spec

    for path in (output, trace):
        if path is not None and not path.parent.is_dir():
            raise ConfigError(f"cannot write {path}: the folder {path.parent} does not exist")
    params: dict[str, Any] = parse_params(param)
    if steps is not None:
        params["steps"] = positive(steps, "--steps")
    spec = strategy_spec(strategy, params)
    if particles is not None:
        width = positive(particles, "--particles")
        spec = strategy_spec(strategy, {**params, WIDTH[strategy]: width})
    the_budget = Budget.parse(budget) if budget is not None else None
    setup = open_setup(
        digit=digit, prompt=prompt, pipeline=pipeline, reward=reward, guidance=guidance,
        size=positive(size, "--size") if size is not None else None, device=device,
    )  # fmt: skip
    if the_budget is not None and the_budget.nfe and particles is None:
        spec = fill(spec, the_budget.nfe, setup.denoiser.evals_per_call)
    outcome = solve(
        setup.problem, spec, setup.denoiser, setup.reward, budget=the_budget, seed=seed,
        judge=setup.judge,
    )  # fmt: skip
    result = outcome.result
    grid_png = grid.png(outcome.images, result, setup.reward.name)
    from testtime.diffusion import files

    files.write(output, grid_png)
    if trace is not None:
        files.write(trace, json.dumps(result.to_dict(), indent=1).encode())
    if as_json:
        out.print_json(json.dumps({**result.to_dict(), "grid": str(output)}))
    else:
        _print(result, setup.reward.name, spec, output)
    _print_cost(result.cost)


def _print(result: Any, reward: str, spec: Any, output: Path) -> None:
    chosen = next((c for c in result.candidates if c.id == result.chosen), None)
    out.print(f"[bold]{spec}[/bold] on {result.problem_id!r}")
    if chosen is None:
        out.print("no finished sample (the budget stopped it)")
    else:
        mark = {True: " [green](correct)[/green]", False: " [red](wrong)[/red]", None: ""}
        flag = " [yellow](budget)[/yellow]" if result.budget_exhausted else ""
        out.print(
            f"chosen: candidate {chosen.id} of {len(result.candidates)}, {reward} "
            f"{chosen.scores[reward]:.4g}, label {chosen.answer}{mark[result.correct]}{flag}"
        )
    out.print(f"grid: {output}")


def _print_cost(c: Cost) -> None:
    err.print(
        f"cost: {c.nfe} nfe in {c.generator_calls} denoiser calls, {c.verifier_calls} reward "
        f"evaluations, {c.samples} finished samples, {human(c.flops)} FLOPs, {c.seconds:.2f} s"
    )


@diffuse.command("train")
def train_cmd(
    seed: Annotated[int, typer.Option()] = 0,
    steps: Annotated[int, typer.Option(help="denoiser training steps")] = 10000,
    output: Annotated[Path | None, typer.Option("--out", help="weights file")] = None,
) -> None:
    """Train the embedded digit denoiser and classifier (seeded; a few minutes on CPU)."""
    from testtime.diffusion.train import WEIGHTS, TrainConfig, train

    positive(steps, "--steps")
    meta = train(TrainConfig(seed=seed, denoiser_steps=steps), output or WEIGHTS, log=err.print)
    out.print(
        f"wrote {output or WEIGHTS} in {meta['train_seconds']} s: denoiser "
        f"{meta['denoiser_params']} params, classifier {meta['classifier_params']} params, "
        f"held-out classifier accuracy {meta['classifier_test_accuracy']:.1%}"
    )
