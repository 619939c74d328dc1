"""`testtime experiment`: a small scaling experiment, several strategies at several budgets.

Every (strategy, budget) cell runs on the same problems, one cell after another with all
its problems concurrently (so the engine batches them) and a cold prompt cache, so each
cell's cost is what that strategy spends on its own. The table reports accuracy with a 95%
interval, samples, generated tokens and FLOPs per problem.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.table import Table

from testtime.cli import app
from testtime.cli.common import (
    DEFAULT_MODEL,
    DEFAULT_TASK,
    accuracy,
    human,
    load_model,
    out,
    positive,
    progress,
    total_cost,
)
from testtime.core.errors import ConfigError
from testtime.core.registry import Spec, parse_params
from testtime.core.types import Problem, Result
from testtime.strategies.base import STRATEGIES
from testtime.strategies.run import build_task, build_verifier, solve_many
from testtime.tasks.base import Task


@dataclass(frozen=True)
class Arm:
    """One row family of the table: a strategy, how its budget maps to a parameter, a verifier."""

    label: str
    strategy: str
    budget_param: str | None  # parameter set to the budget k; None = budget-free baseline
    params: tuple[tuple[str, Any], ...] = ()
    verifier: str | None = None


ARMS: dict[str, Arm] = {
    "greedy": Arm("greedy", "single", None, (("temperature", 0.0),)),
    "sampled": Arm("one sample, T=0.8", "single", None, (("temperature", 0.8),)),
    "self_consistency": Arm("self-consistency", "self_consistency", "n"),
    "adaptive": Arm("adaptive consistency", "adaptive_consistency", "max_samples"),
    "best_of_n": Arm("best-of-N, certainty", "best_of_n", "n", (), "self_certainty"),
    "weighted": Arm("weighted vote, certainty", "weighted_majority", "n", (), "self_certainty"),
    "coverage": Arm("oracle best-of-N=coverage", "best_of_n", "n", (), "oracle"),
}
DEFAULT_ARMS = "greedy,sampled,self_consistency,adaptive,best_of_n,weighted,coverage"


@app.command()
def experiment(
    task: Annotated[str, typer.Option("--task", "-t")] = DEFAULT_TASK,
    task_param: Annotated[list[str], typer.Option("--task-param")] = [],  # noqa: B006
    problems: Annotated[int, typer.Option("--problems", "-n")] = 30,
    arms: Annotated[str, typer.Option(help=f"comma list of: {', '.join(ARMS)}")] = DEFAULT_ARMS,
    budgets: Annotated[str, typer.Option(help="samples per problem, comma list")] = "1,4,16",
    model: Annotated[str, typer.Option("--model", "-m")] = DEFAULT_MODEL,
    max_tokens: Annotated[int, typer.Option()] = 128,
    seed: Annotated[int, typer.Option()] = 0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Run a small scaling experiment and print accuracy, tokens and FLOPs per strategy."""
    positive(problems, "--problems")
    ks = _budgets(budgets)
    chosen = [a.strip() for a in arms.split(",") if a.strip()]
    bad = [a for a in chosen if a not in ARMS]
    if bad or not chosen:
        raise ConfigError(f"unknown arm(s) {bad}; available: {', '.join(ARMS)}")
    the_task = build_task(task, parse_params(task_param))
    probs = list(the_task.problems())[:problems]
    cells = [(ARMS[a], k) for a in chosen for k in ([1] if ARMS[a].budget_param is None else ks)]
    specs = [_spec(arm, k) for arm, k in cells]  # validate everything before loading a model
    started = time.perf_counter()
    results = asyncio.run(_run_all(probs, cells, specs, the_task, model, max_tokens, seed))
    wall = time.perf_counter() - started
    rows = [_row(arm, k, rs) for (arm, k), rs in zip(cells, results, strict=True)]
    if as_json:
        out.print_json(json.dumps({"task": task, "problems": len(probs), "wall_seconds": wall,
                                   "rows": rows}))
        return
    _table(rows, f"{task}: {len(probs)} problems, model {model}", wall)


def _budgets(text: str) -> list[int]:
    try:
        ks = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--budgets must be whole numbers like 1,4,16; got {text!r}") from None
    if not ks or any(k <= 0 for k in ks):
        raise ConfigError(f"--budgets must be positive whole numbers like 1,4,16; got {text!r}")
    return sorted(set(ks))


def _spec(arm: Arm, k: int) -> Spec:
    params = dict(arm.params)
    if arm.budget_param is not None:
        params[arm.budget_param] = k
    return STRATEGIES.spec(arm.strategy, params)


async def _run_all(
    problems: list[Problem], cells: list[tuple[Arm, int]], specs: list[Spec], task: Task,
    model: str, max_tokens: int, seed: int,
) -> list[list[Result]]:
    generator = load_model(model)
    try:
        verifiers = {
            name: build_verifier(name, task=task, generator=generator)
            for name in {arm.verifier for arm, _ in cells if arm.verifier}
        }
        results = []
        with progress(len(cells) * len(problems), "experiment") as advance:
            for (arm, _), spec in zip(cells, specs, strict=True):
                generator.clear_cache()
                results.append(await solve_many(
                    problems, spec, generator, task=task,
                    verifier=verifiers.get(arm.verifier or ""),
                    max_tokens=max_tokens, seed=seed, on_result=advance,
                ))
        return results
    finally:
        await generator.aclose()


def _row(arm: Arm, k: int, results: list[Result]) -> dict[str, Any]:
    n = len(results)
    cost = total_cost(results)
    acc = accuracy(results) or 0.0
    half = 1.96 * math.sqrt(acc * (1 - acc) / n) if n else 0.0
    return {
        "strategy": arm.label, "budget": k if arm.budget_param else None,
        "accuracy": acc, "ci95": half,
        "samples": cost.samples / n, "generated_tokens": cost.generated_tokens / n,
        "flops": cost.flops / n, "verifier_tokens": cost.verifier_tokens / n,
    }


def _table(rows: list[dict[str, Any]], title: str, wall: float) -> None:
    table = Table(title=title, title_justify="left", caption_justify="left",
                  caption=f"per problem; ± is a 95% normal interval; wall time {wall:.0f} s")
    table.add_column("strategy")
    for col in ("k", "accuracy", "samples", "tokens", "FLOPs"):
        table.add_column(col, justify="right")
    last = None
    for r in rows:
        label = r["strategy"] if r["strategy"] != last else ""
        last = r["strategy"]
        table.add_row(
            label, "-" if r["budget"] is None else str(r["budget"]),
            f"{r['accuracy']:.0%} ±{r['ci95']:.0%}", f"{r['samples']:.1f}",
            f"{r['generated_tokens']:.0f}", human(r["flops"]),
        )
    out.print(table)
