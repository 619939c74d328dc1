"""`testtime run`: one prompt, or N problems of a task, through one strategy."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from testtime.cli import app
from testtime.cli.common import (
    MODEL_HELP,
    accuracy,
    err,
    load_model,
    out,
    positive,
    progress,
    total_cost,
)
from testtime.core.budget import UNITS, Budget
from testtime.core.cost import Cost, human
from testtime.core.errors import ConfigError
from testtime.core.files import write_atomic
from testtime.core.registry import Spec, parse_params
from testtime.core.structured import KINDS, ResponseFormat, response_format
from testtime.core.types import Problem, Result, traced
from testtime.core.voting import FIRST, SINGLETONS
from testtime.generators.models import DEFAULT_MODEL
from testtime.lab.data.arms import BUDGET_PARAM, WIDTH_BUDGET
from testtime.lab.data.spec import sized
from testtime.strategies.base import STRATEGIES
from testtime.strategies.run import RunSettings, build_task, build_verifier, solve_many
from testtime.tasks.base import FreeForm, JsonAnswers, Task
from testtime.verifiers.base import VERIFIERS

BUDGET_HELP = "ceiling, e.g. '16 samples', '4096 tokens', '1e12 flops', '30 seconds'"
FORMAT_HELP = (
    "JSON output, every sample constrained and the vote on parsed JSON: json_object, "
    "@schema.json (a JSON schema file), or a JSON schema or response_format object as text"
)
DEFAULT_LIMIT = 10
Params = Annotated[list[str], typer.Option("--param", "-p", help="strategy parameter key=value")]


@app.command()
def run(
    prompt: Annotated[str | None, typer.Argument(help="a prompt; omit it to run a task")] = None,
    task: Annotated[str | None, typer.Option("--task", "-t", help="task name")] = None,
    task_param: Annotated[list[str], typer.Option("--task-param", help="task key=value")] = [],  # noqa: B006
    limit: Annotated[
        int | None,
        typer.Option("--limit", "-n", help="problems to run from the task [default: 10]"),
    ] = None,
    strategy: Annotated[str, typer.Option("--strategy", "-s")] = "self_consistency",
    param: Params = [],  # noqa: B006
    verifier: Annotated[str | None, typer.Option("--verifier", "-v")] = None,
    verifier_param: Annotated[list[str], typer.Option("--verifier-param")] = [],  # noqa: B006
    model: Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)] = DEFAULT_MODEL,
    budget: Annotated[str | None, typer.Option("--budget", "-b", help=BUDGET_HELP)] = None,
    max_tokens: Annotated[int, typer.Option(help="max new tokens per sample")] = 256,
    answer: Annotated[str | None, typer.Option(help="gold answer for a prompt")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    output: Annotated[str | None, typer.Option("--response-format", help=FORMAT_HELP)] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, ...")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    trace: Annotated[
        Path | None,
        typer.Option(
            help="write every result (candidates, steps, scores, search trace) to a JSON file"
        ),
    ] = None,
) -> None:
    """Run one strategy on a prompt or on problems of a task; print answers and cost."""
    if prompt is not None and task is not None:
        raise ConfigError("give either a prompt or --task, not both")
    if limit is not None:
        positive(limit, "--limit")
    positive(max_tokens, "--max-tokens")
    if trace is not None and not trace.parent.is_dir():
        raise ConfigError(f"--trace {trace}: the folder {trace.parent} does not exist")
    spec = STRATEGIES.spec(strategy, parse_params(param))
    judge = VERIFIERS.spec(verifier, parse_params(verifier_param)) if verifier else None
    the_budget = Budget.parse(budget) if budget is not None else None
    fmt = format_option(output)
    the_task: Task = JsonAnswers() if fmt is not None and fmt.json else FreeForm()
    if prompt is not None:
        problems = [Problem.from_prompt(prompt, answer=answer)]
    else:
        name, params = task or "arithmetic", parse_params(task_param)
        the_task = build_task(name, sized(name, params, limit))
        problems = list(the_task.problems())[: limit or DEFAULT_LIMIT]
        if limit is not None and len(problems) < limit:  # asked for more than there are
            err.print(
                f"note: task {name!r} has {len(problems)} problems; running all of them "
                f"(-n asked for {limit})"
            )
    settings = RunSettings(
        task=the_task, budget=the_budget, max_tokens=max_tokens, seed=seed, response_format=fmt
    )
    results = asyncio.run(_run(problems, spec, judge, settings, model, device, not as_json))
    if trace is not None:
        _write_trace(trace, results)
    if as_json:
        _print_json(results, single=prompt is not None)
    else:
        _print_table(results, spec_str=str(spec))
        if the_budget is not None:
            err.print(budget_line(the_budget, results, spec))
        _print_cost(total_cost(results))
    note = singletons_note(results)
    if note:
        err.print(note, markup=False)


async def _run(
    problems: list[Problem],
    spec: Spec,
    verifier: Spec | None,
    settings: RunSettings,
    model: str,
    device: str | None,
    show_progress: bool,
) -> list[Result]:
    """Load the model, build the verifier on it (a judge asks it), run every problem."""
    generator = load_model(model, device=device)
    try:
        if verifier is not None:
            built = build_verifier(verifier, task=settings.task, generator=generator)
            settings = replace(settings, verifier=built)
        with progress(len(problems), spec.name, show_progress) as advance:
            return await solve_many(problems, spec, generator, settings, on_result=advance)
    finally:
        await generator.aclose()


def _write_trace(path: Path, results: list[Result]) -> None:
    """All results as JSON, written atomically (a temp file beside it, then renamed)."""
    data = json.dumps([traced(r) for r in results], indent=1).encode()
    try:
        write_atomic(path, data)
    except OSError as e:
        raise ConfigError(f"cannot write --trace {path}: {e.strerror}") from None
    err.print(f"trace: {path}")


def _print_json(results: list[Result], single: bool) -> None:
    if single:
        out.print_json(json.dumps(results[0].to_dict()))
        return
    acc = accuracy(results)
    out.print_json(
        json.dumps(
            {
                "accuracy": acc,
                "cost": total_cost(results).to_dict(),
                "results": [r.to_dict() for r in results],
            }
        )
    )


def _print_table(results: list[Result], spec_str: str) -> None:
    table = Table(title=spec_str, title_justify="left")
    table.add_column("problem")
    table.add_column("answer")
    table.add_column("correct")
    table.add_column("samples", justify="right")
    table.add_column("tokens", justify="right")
    for r in results:
        mark = {True: "[green]yes[/green]", False: "[red]no[/red]", None: "-"}[r.correct]
        flag = " [yellow](budget)[/yellow]" if r.budget_exhausted else ""
        table.add_row(
            r.problem_id,
            f"{escape(str(r.answer))}{flag}",  # `List[int]` is text, not rich markup
            mark,
            str(r.cost.samples),
            str(r.cost.generated_tokens),
        )
    out.print(table)
    if len(results) == 1 and results[0].text:
        out.print("[bold]chosen completion:[/bold]")
        out.print(results[0].text, markup=False)
    acc = accuracy(results)
    if acc is not None:
        out.print(f"accuracy: {acc:.1%} on {len(results)} problems")


def singletons_note(results: list[Result]) -> str:
    """One line when a vote decided nothing because every sample was its own answer group
    (the trace says so: core.voting.singletons), naming what chose instead; else ""."""
    hit = [r.trace for r in results if r.trace and r.trace.get("groups") == SINGLETONS]
    if not hit:
        return ""
    where = f" on {len(hit)} of {len(results)} problems" if len(results) > 1 else ""
    head = f"note: every sample was its own answer group ({SINGLETONS}){where}, so no vote decided"
    chose = {str(t.get("selection", FIRST)) for t in hit}
    if FIRST in chose:  # sample order, nothing else
        return f"{head}; the first sample stands: choose with e.g. -s best_of_n -v likelihood"
    return f"{head}; chosen by {', '.join(sorted(chose))}"


def budget_line(budget: Budget, results: list[Result], spec: Spec) -> str:
    """What ran under a ceiling: the most one problem spent on each capped axis, how many
    problems reached it, and the parameter that stopped the strategy first, if one did."""
    spent = {
        "samples": max(r.cost.samples for r in results),
        "tokens": max(r.cost.generated_tokens for r in results),
        "flops": max(r.cost.flops for r in results),
        "seconds": max(r.cost.seconds for r in results),
        "nfe": max(r.cost.nfe for r in results),
    }
    parts = [
        f"{_amount(unit, spent[unit])} of {_amount(unit, cap)} {unit}"
        if unit != "seconds"  # a deadline on the wall clock, which summed call time is not
        else f"{spent[unit]:.1f} s in calls (summed over calls) under a {cap:g} s deadline"
        for unit in UNITS
        if (cap := getattr(budget, unit)) is not None
    ]
    line = f"budget per problem (a ceiling): spent at most {', '.join(parts)}"
    reached = sum(r.budget_exhausted for r in results)
    if reached:
        line += f"; {reached} of {len(results)} problem(s) reached it"
    param = BUDGET_PARAM.get(spec.name)
    size = getattr(spec.params, param, None) if param else None
    cap = budget.samples
    if cap and isinstance(size, int) and spec.name not in WIDTH_BUDGET and size < cap:
        line += f"; {spec.name} stops at {param}={size} (-p {param}={cap} lets it spend more)"
    return line


def _amount(unit: str, x: float) -> str:
    return human(x) if unit == "flops" else f"{x:g}"


def _print_cost(c: Cost) -> None:
    err.print(
        f"cost: {c.samples} samples, {c.generated_tokens} generated tokens"
        + (f" ({c.reasoning_tokens} reasoning)" if c.reasoning_tokens else "")
        + f", {c.prompt_tokens} prompt tokens (+{c.cached_prompt_tokens} cached), "
        f"{c.verifier_calls} verifier calls ({c.verifier_tokens} tokens), "
        f"{human(c.flops)} FLOPs, {c.seconds:.1f} s in calls (summed over calls and problems)"
        + (f", {c.sandbox_seconds:.2f} s of code in the sandbox" if c.sandbox_seconds else "")
    )


def format_option(text: str | None) -> ResponseFormat | None:
    """--response-format: a kind (json_object, text), @FILE holding a JSON schema, or JSON
    text: a response_format object (its type is one of the kinds) or else a JSON schema."""
    if text is None:
        return None
    if text in KINDS and text != "json_schema":
        return response_format({"type": text})
    where = "--response-format"
    if text.startswith("@"):
        path = Path(text[1:]).expanduser()
        try:
            text, where = path.read_text(), f"--response-format {path}"
        except OSError as e:
            raise ConfigError(f"--response-format: cannot read {path}: {e.strerror}") from None
    try:
        raw = json.loads(text)
    except ValueError as e:
        raise ConfigError(
            f"{where} is not JSON ({e}); give json_object, @schema.json or a JSON schema"
        ) from None
    if isinstance(raw, dict) and raw.get("type") in KINDS:
        return response_format(raw)
    return response_format({"type": "json_schema", "json_schema": {"name": "cli", "schema": raw}})
