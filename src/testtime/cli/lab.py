"""`testtime lab`: scaling experiments that store every sample, resume, replay and report.

`testtime lab` alone runs the default experiment on the embedded model (re-running it
resumes from the store and finishes in seconds); `lab run` takes a YAML spec or flags,
`lab ls` lists stored runs, `lab report RUN_ID` rebuilds table and plots without generating.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from testtime.cli.common import DEFAULT_STORE, err, out, progress, status
from testtime.cli.lab_common import OutDir, Store, int_list, lab
from testtime.core.cost import human
from testtime.core.errors import ConfigError
from testtime.core.registry import parse_params

DEFAULT_SPEC: dict[str, Any] = {
    "name": "default",
    "model": "smollm2-135m",
    "task": "arithmetic",
    "problems": 30,
    "budgets": [1, 2, 4, 8, 16],
    "max_tokens": 128,
    "strategies": [
        {"name": "single", "label": "greedy", "params": {"temperature": 0.0}},
        "self_consistency",
        {"name": "best_of_n", "verifier": "self_certainty"},
        {"name": "weighted_majority", "verifier": "self_certainty"},
        "adaptive_consistency",
    ],
}


@lab.callback(invoke_without_command=True)
def default(ctx: typer.Context, store: Store = DEFAULT_STORE) -> None:
    """With no subcommand: the default experiment on the embedded model, table and report."""
    if ctx.invoked_subcommand is None:
        from testtime.lab.data.spec import parse_spec

        _run_and_report(parse_spec(DEFAULT_SPEC), _yaml(DEFAULT_SPEC), store, None, None, 1)


@lab.command("run")
def run_cmd(
    spec_file: Annotated[
        Path | None, typer.Argument(help="YAML run spec", show_default=False)
    ] = None,
    model: Annotated[list[str], typer.Option("--model", "-m")] = [],  # noqa: B006
    task: Annotated[str | None, typer.Option("--task", "-t")] = None,
    task_param: Annotated[list[str], typer.Option("--task-param")] = [],  # noqa: B006
    problems: Annotated[int | None, typer.Option("--problems", "-n")] = None,
    strategy: Annotated[
        list[str],
        typer.Option("--strategy", "-s", help="NAME[:key=value,...][@VERIFIER], repeatable"),
    ] = [],  # noqa: B006
    budgets: Annotated[
        str | None, typer.Option(help="samples per problem, e.g. 1,2,4,8,16")
    ] = None,
    seeds: Annotated[str | None, typer.Option(help="e.g. 0,1,2")] = None,
    pool: Annotated[int | None, typer.Option(help="samples per problem in the stored pool")] = None,
    max_tokens: Annotated[int | None, typer.Option()] = None,
    name: Annotated[str | None, typer.Option()] = None,
    repeat: Annotated[
        str | None, typer.Option(help="run again exactly as stored run RUN_ID")
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(help="fan out over Ray: 'local' (start one here) or a cluster address"),
    ] = None,
    workers: Annotated[int, typer.Option(help="Ray workers (each loads the model once)")] = 2,
    report: Annotated[bool, typer.Option(help="print the table and write the report")] = True,
    store: Store = DEFAULT_STORE,
    out_dir: OutDir = None,
) -> None:
    """Run (or resume) an experiment; the same spec resumes the same run."""
    from testtime.lab.data.spec import parse_spec

    flags = {
        "model": model, "task": task, "task_param": task_param, "problems": problems,
        "strategy": strategy, "budgets": budgets, "seeds": seeds, "pool": pool,
        "max_tokens": max_tokens, "name": name,
    }  # fmt: skip
    given = {k: v for k, v in flags.items() if v not in (None, [])}
    if repeat is not None:
        if spec_file is not None or given:
            raise ConfigError(
                "--repeat takes the whole spec from the stored run; drop the other flags"
            )
        _repeat(repeat, store, out_dir, ray, workers, report)
        return
    if spec_file is not None:
        if given:
            raise ConfigError(f"give a spec file or flags, not both (flags: {', '.join(given)})")
        source, data = _read_yaml(spec_file)
    else:
        data = _from_flags(given) if given else DEFAULT_SPEC
        source = _yaml(data)
    _run_and_report(parse_spec(data), source, store, out_dir, ray, workers, report=report)


@lab.command("ls")
def ls_cmd(store: Store = DEFAULT_STORE) -> None:
    """List the stored runs with their status and cost."""
    from testtime.lab.data.store import open_store

    with open_store(store, readonly=True) as db:
        runs = db.runs()
    table = Table(title=f"runs in {store}", title_justify="left")
    for col in ("run", "status", "started", "samples", "results", "FLOPs", "seconds"):
        left = col in ("run", "status", "started")
        table.add_column(col, justify="left" if left else "right", no_wrap=left)
    for r in runs:
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created"]))
        table.add_row(r["id"], r["status"], started, str(r["samples"]), str(r["results"]),
                      human(r["flops"]), f"{r['seconds']:.0f}")  # fmt: skip
    out.print(table if runs else f"no runs in {store} yet")


@lab.command("report")
def report_cmd(run_id: str, store: Store = DEFAULT_STORE, out_dir: OutDir = None) -> None:
    """Rebuild a run's table, plots and HTML page from the store (nothing is generated)."""
    from testtime.lab.data.store import open_store

    with open_store(store, readonly=True) as db:
        _report(db, run_id, out_dir or store.parent / "reports" / run_id)


def _run_and_report(
    spec: Any,
    source: str,
    store_path: Path,
    out_dir: Path | None,
    ray: str | None,
    workers: int,
    report: bool = True,
    run_id: str | None = None,
) -> None:
    from testtime.lab.data.store import open_store
    from testtime.lab.execution import runner

    with status("checking models and problems ..."):
        env = runner.environment(spec)  # a missing model fails here, before the store opens
        runner.checked_problems(spec)
    with open_store(store_path) as db:
        plan = runner.prepare(db, spec, source, run_id, env)
        done = len(plan.units) - len(plan.pending)
        verb = "resuming" if plan.resumed else "starting"
        err.print(f"{verb} run {plan.run_id}: {len(plan.units)} units, {done} already stored")
        if plan.pending:
            with progress(len(plan.pending), plan.run_id) as advance:
                if ray is not None:
                    from testtime.lab.execution.ray import run_ray

                    work = lambda: run_ray(db, spec, plan, ray, workers, on_unit=advance)  # noqa: E731
                else:
                    work = lambda: runner.run_local(db, spec, plan, on_unit=advance)  # noqa: E731
                seconds = runner.execute(db, spec, plan, work)
            err.print(f"stored {len(plan.pending)} units in {seconds:.0f} s")
        elif db.run(plan.run_id)["status"] != "success":
            db.set_status(plan.run_id, "success")
        if report:
            _report(db, plan.run_id, out_dir or store_path.parent / "reports" / plan.run_id)


def _report(db: Any, run_id: str, folder: Path) -> None:
    """Show the run's report (the one its kind of run gets) and write its files to `folder`."""
    from testtime.lab.reports import report_run

    with status("replaying the stored samples ..."):
        shown = report_run(db, run_id, folder)
    for item in shown:
        out.print(item)


def _repeat(run_id: str, store_path: Path, out_dir: Path | None, ray: str | None, workers: int,
            report: bool) -> None:  # fmt: skip
    from testtime.lab.data.spec import spec_from_dict
    from testtime.lab.data.store import open_store

    with open_store(store_path, readonly=True) as db:
        record = db.run(run_id)
        taken = {r["id"] for r in db.runs()}
    spec = spec_from_dict(record["spec"])
    new_id = next(f"{run_id}-r{i}" for i in range(1, 10_000) if f"{run_id}-r{i}" not in taken)
    err.print(f"repeating run {run_id} as {new_id}")
    _run_and_report(spec, record["source"], store_path, out_dir, ray, workers, report, new_id)


def _from_flags(given: dict[str, Any]) -> dict[str, Any]:
    data = {k: v for k, v in DEFAULT_SPEC.items() if k not in ("name",)}
    data["name"] = given.get("name", "run")
    if "model" in given:
        data.pop("model")
        data["models"] = given["model"]
    if "task" in given or "task_param" in given:
        data["task"] = {"name": given.get("task", DEFAULT_SPEC["task"]),
                        "params": parse_params(given.get("task_param", []))}  # fmt: skip
    for key in ("problems", "pool", "max_tokens"):
        if key in given:
            data[key] = given[key]
    if "budgets" in given:
        data["budgets"] = int_list(given["budgets"], "--budgets")
    if "seeds" in given:
        data["seeds"] = int_list(given["seeds"], "--seeds")
    if "strategy" in given:
        data["strategies"] = [_strategy_flag(s) for s in given["strategy"]]
    return data


def _strategy_flag(text: str) -> dict[str, Any]:
    """'NAME[:key=value,...][@VERIFIER]' -> a spec entry."""
    head, _, verifier = text.partition("@")
    name, _, params = head.partition(":")
    entry: dict[str, Any] = {"name": name.strip()}
    if params:
        entry["params"] = parse_params([p for p in params.split(",") if p.strip()])
    if verifier:
        entry["verifier"] = verifier.strip()
    return entry


def _read_yaml(path: Path) -> tuple[str, Any]:
    import yaml

    try:
        source = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read the run spec {path}: {e.strerror}") from None
    try:
        return source, yaml.safe_load(source)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None


def _yaml(data: dict[str, Any]) -> str:
    import yaml

    return str(yaml.safe_dump(data, sort_keys=False))


def ray_flag(argv: list[str]) -> list[str]:
    """Let `--ray` stand alone (meaning 'local'), as `--ray [ADDRESS]` reads."""
    fixed = list(argv)
    for i, a in enumerate(fixed):
        if a == "--ray" and (i + 1 == len(fixed) or fixed[i + 1].startswith("-")):
            fixed.insert(i + 1, "local")
            break
    return fixed
