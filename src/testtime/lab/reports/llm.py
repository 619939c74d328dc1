"""An LLM run's report: its `Analysis` as a rich table for the terminal, PNG plots and one
HTML page, with the run's oracle-binned policy and across-problem replay where it allows them.

`table()` needs only rich; `write_report()` also needs matplotlib (the `lab` extra).
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from rich.table import Table
from rich.text import Text

from testtime.core.cost import human
from testtime.core.errors import TesttimeError
from testtime.core.files import write_atomic
from testtime.lab.analysis.across import Across, replay_across
from testtime.lab.analysis.curves import AXES, MEMORY, Analysis, CoverageFit, Curve
from testtime.lab.analysis.replay import analyse
from testtime.lab.data.store import Store
from testtime.lab.policy.allocate import allocate
from testtime.lab.reports import plots
from testtime.lab.reports.plots import COVERAGE_LABEL
from testtime.strategies.policy import Policy

HEADERS = ("strategy", "k", "accuracy [95% CI]", "samples", "tokens", "FLOPs", "estimator", "")
PARETO_MARK = "*"
PARETO_KEY = f"{PARETO_MARK} on the Pareto frontier of accuracy against FLOPs"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ReportFiles:
    """What `write_report` wrote: the page and the figures beside it."""

    html: Path
    pngs: tuple[Path, ...]


def report(store: Store, run_id: str, folder: Path) -> list[Table | str]:
    """Rebuild an LLM run's report: replay its stored samples, write the figures and page to
    `folder`, and return what to show: the table at the run's budgets, the across-problem
    lines, and where the page is."""
    spec = store.run(run_id)["spec"]
    budgets = sorted({b for arm in spec["arms"] for b in arm["budgets"]} | {spec["pool"]})
    analysis = analyse(store, run_id)
    policy = _where_allowed(lambda: allocate(store, run_id, feature="oracle"))
    across = _where_allowed(lambda: replay_across(store, run_id))
    files = write_report(analysis, folder, budgets, policy=policy, across=across)
    lines = across_lines(across) if across else []
    return [table(analysis, budgets), *lines, f"report: {files.html}"]


def _where_allowed(make: Callable[[], T]) -> T | None:
    """What `make` learns from the run, or None where the run does not allow it (several
    models, no pool, nothing graded: the report has no such figure)."""
    try:
        return make()
    except TesttimeError:
        return None


def table_rows(analysis: Analysis, budgets: Sequence[int] | None) -> list[tuple[str, ...]]:
    """The table's cells, one row per (curve, budget); a curve's label only on its first row."""
    frontier = set(analysis.pareto.get("flops", ()))
    wanted = None if budgets is None else set(budgets)
    curves: list[tuple[str, Curve]] = [(c.label, c) for c in analysis.curves]
    if analysis.coverage:
        curves.append((COVERAGE_LABEL, analysis.coverage))
    rows: list[tuple[str, ...]] = []
    for label, curve in curves:
        points = [p for p in curve.points if wanted is None or p.budget in wanted]
        for i, p in enumerate(points):
            on_frontier = curve is not analysis.coverage and (label, p.budget) in frontier
            rows.append(
                (
                    "" if i else label,
                    str(p.budget),
                    f"{p.accuracy:.0%} [{100 * p.lo:.0f}–{100 * p.hi:.0f}]",
                    f"{p.samples:.3g}",
                    human(p.tokens),
                    human(p.flops),
                    curve.estimator,
                    PARETO_MARK if on_frontier else "",
                )
            )
    return rows


def _extrapolate(fit: CoverageFit, k: int) -> str:
    try:
        c = fit.predict(k)
    except OverflowError:
        c = math.inf
    return f"{c:.1%}" if c <= 1 else "n/a (a > 0 grows past 100%)"


def summary(analysis: Analysis) -> list[str]:
    """The lines under the table: coverage law, saturation, verifier ceilings, notes."""
    lines = []
    if fit := analysis.fit:
        lines.append(
            f"coverage law: log c = a·k^b, a={fit.a:.4g}, b={fit.b:.4g}, R²={fit.r2:.3f}, "
            f"extrapolated c(100)={_extrapolate(fit, 100)}, c(1000)={_extrapolate(fit, 1000)}"
        )
    elif analysis.coverage:
        lines.append("coverage law: not fitted")
    if analysis.saturation:
        parts = [
            f"{label} at k={k}" if k is not None else f"{label} not yet"
            for label, k in analysis.saturation.items()
        ]
        lines.append("saturation: " + ", ".join(parts))
    for c in analysis.ceilings:
        lines.append(
            f"verifier ceiling {c.verifier} (score ≥ {c.threshold:g}): {c.value:.1%} "
            f"(true positives {c.true_positive_rate:.1%}, false positives "
            f"{c.false_positive_rate:.1%})"
        )
    lines.extend(analysis.notes)
    return lines


def _pareto_key(analysis: Analysis) -> str:
    return PARETO_KEY if analysis.pareto.get("flops") else ""


def table(analysis: Analysis, axis_budgets: Sequence[int] | None = None) -> Table:
    """The analysis as a rich table; `axis_budgets` limits the rows to those budgets."""
    caption = "\n".join(line for line in (_pareto_key(analysis), *summary(analysis)) if line)
    t = Table(
        title=Text(f"{analysis.title} ({analysis.problems} problems, run {analysis.run_id})"),
        caption=Text(caption),
        caption_justify="left",
    )
    for i, h in enumerate(HEADERS):
        t.add_column(h, justify="left" if i in (0, 6) else "right")
    rows = table_rows(analysis, axis_budgets)
    for i, row in enumerate(rows):
        last = i + 1 == len(rows) or bool(rows[i + 1][0])  # end of a curve's group
        t.add_row(*(Text(cell) for cell in row), end_section=last)
    return t


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}
table{border-collapse:collapse;font-size:.9em}th,td{padding:.2em .7em;text-align:right}
th:first-child,td:first-child{text-align:left}tr.first td{border-top:1px solid #ccc}
img{max-width:100%}.meta{color:#666}"""


def _html(analysis: Analysis, pngs: dict[str, bytes], budgets: Sequence[int] | None) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in HEADERS)
    body = "".join(
        f"<tr{' class=first' if row[0] else ''}>"
        + "".join(f"<td>{e(c)}</td>" for c in row)
        + "</tr>"
        for row in table_rows(analysis, budgets)
    )
    lines = "".join(f"<li>{e(line)}</li>" for line in summary(analysis))
    figures = "".join(
        f'<p><a href="{e(name)}"><img alt="{e(name)}" '
        f'src="data:image/png;base64,{base64.b64encode(data).decode()}"></a></p>'
        for name, data in pngs.items()
    )
    if not pngs:
        figures = "<p><em>Nothing to plot yet: this analysis has no points.</em></p>"
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(analysis.title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{e(analysis.title)}</h1>"
        f'<p class="meta">run {e(analysis.run_id)}, {analysis.problems} problems</p>'
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        f"<p class=meta>{e(_pareto_key(analysis))}</p><ul>{lines}</ul>{figures}</body></html>\n"
    )


def write_report(
    analysis: Analysis,
    out_dir: Path,
    axis_budgets: Sequence[int] | None = None,
    *,
    policy: Policy | None = None,
    across: Across | None = None,
) -> ReportFiles:
    """Write the four PNGs (plus the allocation figures when given a policy learned from the
    run, or an across-problem replay) and a self-contained index.html, each atomically."""
    plots.require()
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs: dict[str, bytes] = {}
    if any(c.points for c in analysis.curves) or analysis.coverage:
        pngs = {f"accuracy_{axis}.png": plots.accuracy_png(analysis, axis) for axis in AXES}
        pngs["coverage.png"] = plots.coverage_png(analysis)
        if any(p.eflops > 0 for c in analysis.curves for p in c.points):
            pngs[f"accuracy_{MEMORY}.png"] = plots.accuracy_png(analysis, MEMORY)
    if policy is not None:
        pngs["allocation.png"] = plots.allocation_png(policy)
    if across is not None and across.points:
        pngs["across.png"] = plots.across_png(across)
    for name, data in pngs.items():
        write_atomic(out_dir / name, data)
    page = out_dir / "index.html"  # last, so it never links figures not yet written
    write_atomic(page, _html(analysis, pngs, axis_budgets).encode())
    return ReportFiles(html=page, pngs=tuple(out_dir / name for name in pngs))


def across_lines(across: Across) -> list[str]:
    """One line per total budget: uniform against adaptive accuracy at equal FLOPs."""
    return [
        f"across {len(across.problems)} problems at {human(p.flops)} FLOPs each (= {p.k} "
        f"samples uniform): uniform {p.uniform[0]:.1%} [{p.uniform[1]:.1%}-{p.uniform[2]:.1%}], "
        f"adaptive {p.adaptive[0]:.1%} [{p.adaptive[1]:.1%}-{p.adaptive[2]:.1%}] spending "
        f"{human(p.adaptive_flops)}, samples per problem {min(p.allocation):.1f}-"
        f"{max(p.allocation):.1f}"
        for p in across.points
    ]
