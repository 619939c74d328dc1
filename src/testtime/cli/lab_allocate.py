"""`testtime lab allocate | across | efficiency | exchange`: compute-optimal policies, one
budget across problems, efficiency at equal accuracy, and Snell's exchange rate."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.markup import escape
from rich.table import Table

from testtime.cli.common import DEFAULT_STORE, out
from testtime.cli.lab_common import Store, int_list, lab
from testtime.core.cost import human
from testtime.core.errors import ConfigError

if TYPE_CHECKING:
    from testtime.lab.analysis.curves import Axis as CostAxis


@lab.command("allocate")
def allocate_cmd(
    run_id: str,
    bins: Annotated[int, typer.Option(help="quantile bins of predicted difficulty")] = 5,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="write the policy here (JSON)")
    ] = None,
    axis: Annotated[
        str, typer.Option(help="the budget's unit: samples, tokens or flops")
    ] = "flops",
    pilot: Annotated[int, typer.Option(help="pilot samples that predict difficulty")] = 4,
    difficulty: Annotated[
        str | None,
        typer.Option(help="score, vote, score+vote, or oracle (analysis only: gold pass rate)"),
    ] = None,
    verifier: Annotated[str | None, typer.Option(help="the pool verifier the pilot uses")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m")] = None,
    task: Annotated[str | None, typer.Option("--task", "-t")] = None,
    store: Store = DEFAULT_STORE,
) -> None:
    """Learn a compute-optimal policy from a run (Snell et al.): per difficulty bin, the best
    strategy and parameters at every budget; `compute_optimal` applies it to new problems."""
    from testtime.lab.data.store import open_store
    from testtime.lab.policy.allocate import allocate
    from testtime.strategies.policy import save_policy

    if axis not in ("samples", "tokens", "flops"):
        raise ConfigError(f"--axis must be samples, tokens or flops; got {axis!r}")
    if difficulty not in (None, "score", "vote", "score+vote", "oracle"):
        raise ConfigError(
            f"--difficulty must be score, vote, score+vote or oracle; got {difficulty!r}"
        )
    if out_file is not None and not out_file.parent.is_dir():
        raise ConfigError(f"--out {out_file}: the folder {out_file.parent} does not exist")
    with open_store(store, readonly=True) as db:
        policy = allocate(db, run_id, bins=bins, axis=axis, pilot=pilot, feature=difficulty,  # type: ignore[arg-type]
                          verifier=verifier, model=model, task=task)  # fmt: skip
    out.print(policy_table(policy))
    if out_file is not None:
        save_policy(policy, out_file)
        out.print(
            f"policy: {out_file} (trained on {len(policy.trained_on)} problems of run {run_id})"
        )


@lab.command("across")
def across_cmd(
    run_id: str,
    budgets: Annotated[
        str | None, typer.Option(help="uniform samples per problem to match, e.g. 1,2,4,8")
    ] = None,
    initial: Annotated[int, typer.Option(help="samples every problem gets first")] = 2,
    draws: Annotated[int, typer.Option(help="random pool orders averaged")] = 20,
    store: Store = DEFAULT_STORE,
) -> None:
    """Replay one budget spread across a run's problems (where votes are uncertain) against
    uniform allocation at equal total FLOPs, from the stored pool."""
    from testtime.lab.analysis.across import replay_across
    from testtime.lab.data.store import open_store
    from testtime.lab.reports.llm import across_lines

    ks = tuple(int_list(budgets, "--budgets")) if budgets else None
    if initial < 1 or draws < 1 or (ks is not None and min(ks, default=0) < 1):
        raise ConfigError("--initial, --draws and --budgets must be positive whole numbers")
    with open_store(store, readonly=True) as db:
        got = replay_across(db, run_id, ks=ks, initial=initial, draws=draws)
    for line in across_lines(got):
        out.print(line)


@lab.command("exchange")
def exchange_cmd(
    small: str,
    large: str,
    ratio: Annotated[
        list[float], typer.Option("--ratio", "-r", help="inference:pretraining tokens, R")
    ] = [],  # noqa: B006
) -> None:
    """Snell et al.'s exchange rate between two installed models: how many times the larger
    model's inference tokens the smaller may spend at equal total FLOPs, K = M + 3(M-1)/R."""
    from testtime.lab.analysis.costs import SNELL_RATIOS, exchange_lines, n_params

    sizes = {small: n_params(small), large: n_params(large)}
    if sizes[small] >= sizes[large]:
        raise ConfigError(
            f"{small!r} ({sizes[small]:,} parameters) is not smaller than {large!r} "
            f"({sizes[large]:,}); give the smaller model first"
        )
    if any(r <= 0 for r in ratio):
        raise ConfigError("--ratio must be positive: inference tokens / pretraining tokens")
    for line in exchange_lines(sizes, tuple(ratio) or SNELL_RATIOS):
        out.print(line)


@lab.command("efficiency")
def efficiency_cmd(
    run_id: str,
    arm: str,
    against: Annotated[list[str], typer.Option("--against", "-a", help="arm(s) to compare")],
    axis: Annotated[str, typer.Option(help="samples, tokens, flops or eflops")] = "flops",
    store: Store = DEFAULT_STORE,
) -> None:
    """How many times the cost of each point of ARM another arm needs for the same accuracy
    (Snell et al.'s efficiency at equal accuracy), from the stored run."""
    from testtime.lab.analysis.fit import efficiency
    from testtime.lab.analysis.replay import analyse
    from testtime.lab.data.store import open_store

    if axis not in ("samples", "tokens", "flops", "eflops"):
        raise ConfigError(f"--axis must be samples, tokens, flops or eflops; got {axis!r}")
    on = cast("CostAxis", axis)
    with open_store(store, readonly=True) as db:
        curves = {c.label: c for c in analyse(db, run_id).curves}
    for label in (arm, *against):
        if label not in curves:
            raise ConfigError(f"run {run_id} has no arm {label!r}; arms: {', '.join(curves)}")
    for other in against:
        for p, ratio in efficiency(curves[arm], curves[other], on):
            needs = "never reaches it" if ratio is None else f"needs {ratio:.2f}x the {axis}"
            out.print(escape(f"{arm} @ {p.budget}: {p.accuracy:.1%} [{p.lo:.0%}-{p.hi:.0%}] "
                             f"at {human(p.x(on))} {axis}; {other} {needs}"))  # fmt: skip


def policy_table(policy: Any) -> Table:
    """Each bin's frontier: from which budget on each choice is the best."""
    pilot = policy.pilot
    how = "1 - oracle pass rate" if pilot.feature == "oracle" else (
        f"{pilot.samples} pilot samples, {pilot.feature}" + (f" ({pilot.key})" if pilot.key else "")
    )  # fmt: skip
    table = Table(title=escape(f"compute-optimal policy of run {policy.run} (difficulty: {how})"),
                  title_justify="left")  # fmt: skip
    for col in ("bin", "difficulty", "problems", f"from {policy.axis}", "choice", "accuracy"):
        table.add_column(col, justify="left" if col in ("choice", "difficulty") else "right")
    edges = [-float("inf"), *policy.edges, float("inf")]
    sizes = policy.notes.get("bin_sizes", [])
    for b, front in enumerate(policy.frontiers):
        span = f"({edges[b]:.3g}, {edges[b + 1]:.3g}]"
        for i, c in enumerate(front):
            first = i == 0
            table.add_row(str(b) if first else "", span if first else "",
                          str(sizes[b]) if first and b < len(sizes) else "", human(c.cost),
                          escape(f"{c.label} @ {c.budget}"), f"{c.accuracy:.0%}",
                          end_section=i + 1 == len(front))  # fmt: skip
    return table
