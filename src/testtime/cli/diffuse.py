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
from testtime.cli.common import DEFAULT_STORE, err, out, positive
from testtime.core.budget import Budget
from testtime.core.cost import Cost, human
from testtime.core.errors import ConfigError
from testtime.core.registry import parse_params

diffuse = typer.Typer(help="Diffusion: noise search and FK steering under an NFE budget.")
app.add_typer(diffuse, name="diffuse")

BUDGET_HELP = "e.g. '160 nfe', '1e9 flops', '30 seconds'; sets the width unless --particles"
GUIDANCE_HELP = (
    "digit model: 1 = class-conditional (default), 0 = unconditional (only the reward "
    "steers, as in the science check)"
)


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
    from testtime.diffusion.run import fill, solve, strategy_spec, widen

    for path in (output, trace):
        if path is not None and not path.parent.is_dir():
            raise ConfigError(f"cannot write {path}: the folder {path.parent} does not exist")
    params: dict[str, Any] = parse_params(param)
    if steps is not None:
        params["steps"] = positive(steps, "--steps")
    spec = strategy_spec(strategy, params)
    if particles is not None:
        spec = widen(spec, positive(particles, "--particles"))
    the_budget = Budget.parse(budget) if budget is not None else None
    if device is not None:
        device = _device(device, pipeline)
    setup = open_setup(
        digit=digit, prompt=prompt, pipeline=pipeline, reward=reward, guidance=guidance,
        size=positive(size, "--size") if size is not None else None, device=device,
    )  # fmt: skip
    if the_budget is not None and the_budget.nfe and particles is None:
        spec = fill(spec, the_budget.nfe, setup.denoiser.evals_per_call)
    outcome = solve(
        setup.problem, spec, setup.denoiser, setup.reward, budget=the_budget, seed=seed,
        judge=setup.judge, keep_scored=trace is not None,
    )  # fmt: skip
    result = outcome.result
    grid_png = grid.png(outcome.images, result, setup.reward.name)
    from testtime.core.files import write_atomic

    write_atomic(output, grid_png)
    if trace is not None:
        write_atomic(trace, json.dumps(_traced(outcome, grid), indent=1).encode())
    if as_json:
        out.print_json(json.dumps({**result.to_dict(), "grid": str(output)}))
    else:
        _print(result, setup.reward.name, spec, output)
    _print_cost(result.cost)


def _traced(outcome: Any, grid: Any) -> dict[str, Any]:
    """The result as a trace file holds it, with its images as PNG data URLs: each
    candidate's, and every rewarded intermediate estimate's with its reward (the viewer's)."""
    from testtime.core.types import traced

    scored = [
        {"images": grid.data_urls(images), "rewards": rewards.tolist()}
        for images, rewards in outcome.scored
    ]
    images = {"candidates": grid.data_urls(outcome.images), "scored": scored}
    return {**traced(outcome.result), "images": images}


def _device(device: str, pipeline: Path | None) -> str:
    """The torch device for a pipeline (auto resolved), checked before anything loads."""
    if pipeline is None:
        raise ConfigError(
            f"--device {device} is for text-to-image pipelines (--pipeline); the digit model "
            "runs on this CPU, so drop it"
        )
    from testtime.generators.transformers import pick_device

    return str(pick_device(device))


def _print(result: Any, reward: str, spec: Any, output: Path) -> None:
    chosen = next((c for c in result.candidates if c.id == result.chosen), None)
    out.print(f"{spec.kind} [bold]{spec}[/bold] on {result.problem_id!r}")  # not an LLM's
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


LabStore = Annotated[Path, typer.Option("--store", help="the experiment store (SQLite)")]
Compare = Annotated[str | None, typer.Option(help="A,B: arm A minus arm B, paired by problem")]


@diffuse.command("lab")
def lab_cmd(
    spec_file: Annotated[Path | None, typer.Argument(help="YAML spec (kind: diffusion)")] = None,
    repeats: Annotated[int | None, typer.Option(help="problems per digit")] = None,
    store: LabStore = DEFAULT_STORE,
    output: Annotated[Path | None, typer.Option("--out", help="plots folder")] = None,
    compare: Compare = None,
) -> None:
    """Strategies x NFE budgets on the digit model, stored (and resumed) in the lab store;
    prints accuracy and reward per budget with 95% intervals and writes the plots."""
    from testtime.cli.common import progress
    from testtime.lab.data.store import open_store
    from testtime.lab.execution import diffusion as dlab

    data = dict(dlab.DEFAULT) if spec_file is None else _yaml(spec_file)
    if repeats is not None:
        data["repeats"] = positive(repeats, "--repeats")
    spec = dlab.parse_diffusion_spec(data)
    store.parent.mkdir(parents=True, exist_ok=True)
    with open_store(store) as db, progress(dlab.units(spec), spec.name) as advance:
        run_id = dlab.run(db, spec, json.dumps(data), on_unit=advance)
    show_report(store, run_id, output, compare)


@diffuse.command("report")
def report_cmd(
    run_id: Annotated[str, typer.Argument(help="a diffusion run in the store")],
    store: LabStore = DEFAULT_STORE,
    output: Annotated[Path | None, typer.Option("--out", help="plots folder")] = None,
    compare: Compare = None,
) -> None:
    """Rebuild a stored diffusion run's table and plots without sampling again."""
    show_report(store, run_id, output, compare)


def show_report(store: Path, run_id: str, output: Path | None, compare: str | None) -> None:
    """Print a stored diffusion run's table (and an A,B comparison) and write its plots."""
    from testtime.lab.data.store import open_store
    from testtime.lab.reports import diffusion

    pair = compare.split(",") if compare else []
    if compare and len(pair) != 2:
        raise ConfigError(f"--compare takes two arm labels, A,B; got {compare!r}")
    with open_store(store, readonly=True) as db:
        shown = diffusion.report(
            db, run_id, output or store.parent / run_id, (pair[0], pair[1]) if pair else None
        )
    for item in shown:
        out.print(item)


def _yaml(path: Path) -> Any:
    try:
        import yaml
    except ImportError:
        raise ConfigError("spec files need pyyaml: pip install 'testtime[lab]'") from None
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read the spec {path}: {e}") from None
