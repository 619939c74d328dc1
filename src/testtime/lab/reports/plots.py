"""The report's figures, as PNG bytes: accuracy against each cost axis, and coverage with its law.

matplotlib is imported lazily (it is the optional `lab` extra) and only through its object API
(`Figure` + the Agg canvas), never pyplot's global state, so figures can be drawn from any thread.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np

from testtime.core.errors import ConfigError
from testtime.lab.analysis.curves import AXIS_LABELS, Analysis, Axis, Curve, Point

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from testtime.lab.analysis.across import Across
    from testtime.strategies.policy import Policy

COVERAGE_LABEL = "coverage (oracle pass@k)"


def require() -> None:
    """Raise ConfigError, with the install command, when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise ConfigError("plots need matplotlib: pip install 'testtime[lab]'") from e


def _figure() -> tuple[Figure, Axes]:
    require()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _positive(points: tuple[Point, ...], axis: Axis) -> list[Point]:
    """The points a log axis can show: zero or negative cost is dropped."""
    return [p for p in points if p.x(axis) > 0]


def _percent_y(ax: Axes) -> None:
    from matplotlib.ticker import PercentFormatter

    ax.set_ylim(0, 1)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.grid(True, which="major", alpha=0.3)


def _log_x(ax: Axes, base: int) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.set_xscale("log", base=base)
    if base == 2:  # 1, 2, 4, 8 rather than 2^0, 2^1, ...
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def _band(
    ax: Axes,
    pts: list[Point],
    axis: Axis,
    label: str,
    color: str | None = None,
    ls: str = "-",
    alpha: float = 0.2,
) -> None:
    """Draw one curve, line and markers, with its confidence band."""
    xs = [p.x(axis) for p in pts]
    ys = [p.accuracy for p in pts]
    (line,) = ax.plot(xs, ys, marker="o", ms=4, label=label, color=color, ls=ls)
    band_color = line.get_color()
    ax.fill_between(
        xs, [p.lo for p in pts], [p.hi for p in pts], color=band_color, alpha=alpha, lw=0
    )


def _note(ax: Axes, text: str, y: float = 0.5) -> None:
    ax.text(0.5, y, text, transform=ax.transAxes, ha="center", va="center", color="gray")


def accuracy_png(analysis: Analysis, axis: Axis) -> bytes:
    """Accuracy against `axis` per problem: every curve, coverage dashed, Pareto points ringed."""
    fig, ax = _figure()
    drawn = False
    for curve in analysis.curves:
        if pts := _positive(curve.points, axis):
            _band(ax, pts, axis, curve.label)
            drawn = True
    if analysis.coverage and (pts := _positive(analysis.coverage.points, axis)):
        _band(ax, pts, axis, COVERAGE_LABEL, color="black", ls="--", alpha=0.08)
        drawn = True
    by_label = {c.label: c for c in analysis.curves}
    ringed = [
        p
        for label, budget in analysis.pareto.get(axis, ())
        for p in _positive(by_label[label].points if label in by_label else (), axis)
        if p.budget == budget
    ]
    if ringed:
        ax.scatter(
            [p.x(axis) for p in ringed],
            [p.accuracy for p in ringed],
            s=140,
            facecolors="none",
            edgecolors="crimson",
            linewidths=1.5,
            label="Pareto frontier",
            zorder=3,
        )
    if drawn:
        _log_x(ax, 2 if axis == "samples" else 10)
        ax.legend(fontsize="small", loc="lower right")
    else:
        _note(ax, "no points with a positive cost to plot")
    _percent_y(ax)
    ax.set_xlabel(AXIS_LABELS[axis])
    ax.set_ylabel("accuracy")
    ax.set_title(
        f"{analysis.title}: accuracy vs {AXIS_LABELS[axis]} ({analysis.problems} problems)"
    )
    return _png(fig)


def coverage_png(analysis: Analysis) -> bytes:
    """Coverage against k with its band, and the fitted law drawn to ~10x the largest k."""
    fig, ax = _figure()
    cov: Curve | None = analysis.coverage
    pts = [p for p in cov.points if p.budget > 0] if cov else []
    fit = analysis.fit
    if pts:
        _band(ax, pts, "samples", "measured coverage", color="black", alpha=0.12)
    if fit and (ks := [p.budget for p in pts] or list(fit.ks)):
        grid = np.geomspace(min(ks), 10 * max(ks), 200)
        with np.errstate(over="ignore"):
            curve = np.clip(np.exp(fit.a * grid**fit.b), 0, 1)
        ax.plot(grid, curve, color="tab:blue", label="fit: log c = a·k^b")
        text = f"a = {fit.a:.4g}\nb = {fit.b:.4g}\nR² = {fit.r2:.3f}"
        ax.text(0.03, 0.97, text, transform=ax.transAxes, va="top", family="monospace")
    if pts or fit:
        _log_x(ax, 2)
        ax.legend(fontsize="small", loc="lower right")
    if not fit:
        _note(ax, "no coverage law fitted" if pts else "no coverage curve in this run", 0.08)
    _percent_y(ax)
    ax.set_xlabel("k (samples per problem)")
    ax.set_ylabel("coverage (pass@k)")
    ax.set_title(f"{analysis.title}: coverage ({analysis.problems} problems)")
    return _png(fig)


def allocation_png(policy: Policy) -> bytes:
    """Per difficulty bin, the best strategy at each budget: its accuracy, coloured by choice."""
    require()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullFormatter

    bins = len(policy.frontiers)
    fig = Figure(figsize=(3.2 * bins, 3.8), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, bins, sharey=True, squeeze=False)[0]
    labels = sorted({c.label for f in policy.frontiers for c in f})
    colors = {label: f"C{i % 10}" for i, label in enumerate(labels)}
    edges = [-np.inf, *policy.edges, np.inf]
    top = max(c.cost for f in policy.frontiers for c in f) * 2
    for b, (ax, front) in enumerate(zip(axes, policy.frontiers, strict=True)):
        for i, c in enumerate(front):
            end = front[i + 1].cost if i + 1 < len(front) else top
            ax.plot([c.cost, end], [c.accuracy] * 2, color=colors[c.label], lw=3)
            ax.plot([c.cost], [c.accuracy], "o", color=colors[c.label], ms=5)
            ax.annotate(str(c.budget), (c.cost, c.accuracy), fontsize=7,
                        xytext=(2, 4), textcoords="offset points")  # fmt: skip
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title(f"bin {b}: ({edges[b]:.2g}, {edges[b + 1]:.2g}]", fontsize=9)
        ax.set_xlabel(f"{policy.axis} per problem", fontsize=8)
        _percent_y(ax)
    axes[0].set_ylabel("best accuracy in the bin")
    handles = [Line2D([], [], color=colors[label], lw=3, label=label) for label in labels]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(4, len(labels)),
               fontsize="small")  # fmt: skip
    feature = "1 - pass rate (oracle)" if policy.pilot.feature == "oracle" else (
        f"{policy.pilot.feature} of {policy.pilot.samples} pilot samples"
    )  # fmt: skip
    fig.suptitle(f"best strategy per difficulty bin (difficulty: {feature}; bin 0 is the "
                 "easiest; number: the lab budget)")  # fmt: skip
    return _png(fig)


def across_png(across: Across) -> bytes:
    """Uniform vs adaptive allocation at equal total FLOPs, and samples given to each problem."""
    require()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.5), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    xs = [p.flops for p in across.points]
    for name, adaptive, color in (
        ("uniform (majority@k)", False, "tab:gray"),
        ("adaptive across problems", True, "tab:blue"),
    ):
        ys = [p.adaptive if adaptive else p.uniform for p in across.points]
        left.plot(xs, [y[0] for y in ys], marker="o", color=color, label=name)
        left.fill_between(xs, [y[1] for y in ys], [y[2] for y in ys], color=color, alpha=0.15)
    left.set_xscale("log")
    left.set_xlabel("total FLOPs per problem (equal for both)")
    left.set_ylabel("accuracy")
    left.legend(fontsize="small", loc="lower right")
    _percent_y(left)
    mid = across.points[len(across.points) // 2]
    order = range(len(across.problems))
    right.bar(order, mid.allocation, color="tab:blue", label="adaptive (mean over orders)")
    right.axhline(mid.k, color="tab:gray", ls="--", label=f"uniform: {mid.k} each")
    twin = right.twinx()
    twin.plot(order, across.pass_rate, color="black", lw=1, label="pass rate (oracle)")
    twin.set_ylim(0, 1)
    twin.set_ylabel("pass rate of the pool")
    right.set_xlabel("problem (hardest first)")
    right.set_ylabel("samples allocated")
    right.legend(fontsize="small", loc="upper left")
    fig.suptitle(f"one budget across {len(across.problems)} problems (pool {across.pool})")
    return _png(fig)
