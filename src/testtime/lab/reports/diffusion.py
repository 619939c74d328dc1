"""A diffusion run's report: reward and accuracy against NFE, from the store alone.

Each point is one arm at one NFE budget: the mean over problems of the chosen image's
reward and of the judge's verdict, with 95% percentile-bootstrap intervals over problems
(the lab's estimator), and the mean NFE and FLOPs actually spent.
"""

from __future__ import annotations

import io
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table
from rich.text import Text

from testtime.core.cost import human
from testtime.core.errors import ConfigError
from testtime.core.files import write_atomic
from testtime.lab.analysis.estimators import bootstrap_ci_many
from testtime.lab.data.spec import DIFFUSION, run_kind
from testtime.lab.data.store import Store

LEVEL, RESAMPLES = 0.95, 2000
CAPTION = f"{LEVEL:.0%} bootstrap intervals over problems"
AXES = {  # the plots' axis labels (the viewer draws the same plots)
    "nfe": "function evaluations (NFE) per problem",
    "accuracy": "judged accuracy",
    "reward": "reward of the chosen image",
}


@dataclass(frozen=True, slots=True)
class NfePoint:
    arm: str
    budget: int  # the NFE ceiling per problem
    problems: int
    nfe: float  # mean NFE actually spent
    flops: float
    accuracy: tuple[float, float, float]  # mean, lo, hi
    reward: tuple[float, float, float]


Rows = dict[tuple[str, int], dict[str, tuple[float, float, dict[str, float]]]]


def report(
    store: Store, run_id: str, folder: Path, pair: tuple[str, str] | None = None
) -> list[Table | str]:
    """Rebuild a diffusion run's report: its table (and arm A minus arm B, paired by problem,
    for a `pair`) to show, its plots written to `folder` and named in lines after them."""
    points = analyse(store, run_id)
    shown: list[Table | str] = [table(points, title(run_id))]
    if pair is not None:
        shown.append(comparison(compare(store, run_id, *pair), *pair))
    return [*shown, *(f"plot: {path}" for path in write_plots(points, folder, run_id))]


def title(run_id: str) -> str:
    return f"{run_id}: reward and judged accuracy against NFE"


def analyse(store: Store, run_id: str) -> list[NfePoint]:
    """Every (arm, budget) point of a diffusion run, in spec order."""
    spec, found = _rows(store, run_id)
    points = []
    for arm in spec["arms"]:
        for budget in arm["budgets"]:
            got = found.get((arm["label"], budget))
            if got:
                points.append(_point(arm["label"], budget, list(got.values())))
    return points


def compare(store: Store, run_id: str, a: str, b: str) -> list[tuple[int, Any, Any]]:
    """Arm a minus arm b at each budget both ran, paired by problem (the same noise
    stream): (budget, (accuracy diff, lo, hi), (reward diff, lo, hi))."""
    spec, found = _rows(store, run_id)
    labels = [arm["label"] for arm in spec["arms"]]
    for label in (a, b):
        if label not in labels:
            raise ConfigError(f"run {run_id} has no arm {label!r}; its arms: {labels}")
    out = []
    for budget in sorted({k[1] for k in found if k[0] == a} & {k[1] for k in found if k[0] == b}):
        left, right = found[(a, budget)], found[(b, budget)]
        both = sorted(set(left) & set(right))
        diff = np.array([[left[p][0] - right[p][0], left[p][1] - right[p][1]] for p in both])
        lo, hi = bootstrap_ci_many(diff, LEVEL, RESAMPLES)
        mean = diff.mean(axis=0)
        out.append((budget, (mean[0], lo[0], hi[0]), (mean[1], lo[1], hi[1])))
    return out


def _rows(store: Store, run_id: str) -> tuple[dict[str, Any], Rows]:
    spec = store.run(run_id)["spec"]
    if run_kind(spec) != DIFFUSION:
        raise ConfigError(f"run {run_id} is not a diffusion run; use `testtime lab report`")
    rows = store.db.execute(
        "SELECT arm, budget, problem, correct, cost, json_extract(trace, '$.chosen_reward')"
        " FROM results WHERE run = ? ORDER BY arm, budget, problem", (run_id,),
    ).fetchall()  # fmt: skip
    found: Rows = defaultdict(dict)
    for arm, budget, problem, correct, cost, reward in rows:
        found[(arm, budget)][problem] = (float(correct or 0), float(reward or 0), json.loads(cost))
    return spec, found


def _point(arm: str, budget: int, got: list[tuple[float, float, dict[str, float]]]) -> NfePoint:
    values = np.array([[a, r] for a, r, _ in got])
    lo, hi = bootstrap_ci_many(values, LEVEL, RESAMPLES)
    mean = values.mean(axis=0)
    return NfePoint(
        arm, budget, len(got),
        nfe=float(np.mean([c["nfe"] for _, _, c in got])),
        flops=float(np.mean([c["flops"] for _, _, c in got])),
        accuracy=(float(mean[0]), float(lo[0]), float(hi[0])),
        reward=(float(mean[1]), float(lo[1]), float(hi[1])),
    )  # fmt: skip


HEADERS = ("strategy", "nfe budget", "nfe spent", "FLOPs", "accuracy [CI]", "reward [CI]", "n")


def table_rows(points: list[NfePoint]) -> list[tuple[str, ...]]:
    """The report table's cells as it prints them, one row per point (an arm's name on its
    first row only); the viewer shows these same cells."""
    rows: list[tuple[str, ...]] = []
    last = None
    for p in points:
        a, r = p.accuracy, p.reward
        rows.append((
            p.arm if p.arm != last else "", str(p.budget), f"{p.nfe:.0f}", human(p.flops),
            f"{a[0]:.1%} [{a[1]:.1%}, {a[2]:.1%}]", f"{r[0]:.3f} [{r[1]:.3f}, {r[2]:.3f}]",
            str(p.problems),
        ))  # fmt: skip
        last = p.arm
    return rows


def table(points: list[NfePoint], title: str) -> Table:
    t = Table(title=title, caption=CAPTION)
    t.add_column(HEADERS[0], no_wrap=True)
    for h in HEADERS[1:]:
        t.add_column(h, justify="right")
    for first, *rest in table_rows(points):
        t.add_row(Text(first), *rest)
    return t


DIFFERENCE_HEADERS = ("nfe budget", "accuracy difference [CI]", "reward difference [CI]")


def comparison_rows(rows: list[tuple[int, Any, Any]]) -> list[tuple[str, str, str]]:
    """The comparison table's cells as it prints them (the viewer shows these same cells)."""
    return [
        (str(budget), f"{acc[0]:+.1%} [{acc[1]:+.1%}, {acc[2]:+.1%}]",
         f"{rew[0]:+.3f} [{rew[1]:+.3f}, {rew[2]:+.3f}]")
        for budget, acc, rew in rows
    ]  # fmt: skip


def comparison(rows: list[tuple[int, Any, Any]], a: str, b: str) -> Table:
    t = Table(title=Text(f"{a} minus {b}, paired by problem"), caption=CAPTION)
    for h in DIFFERENCE_HEADERS:
        t.add_column(h, justify="right")
    for cells in comparison_rows(rows):
        t.add_row(*cells)
    return t


def write_plots(points: list[NfePoint], out_dir: Path, title: str) -> list[Path]:
    """accuracy_nfe.png and reward_nfe.png (log2 NFE axis, bands), written atomically."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError("plots need matplotlib: pip install 'testtime[lab]'") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for metric in ("accuracy", "reward"):
        fig = Figure(figsize=(7, 4.5), dpi=110, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for arm in dict.fromkeys(p.arm for p in points):
            mine = [p for p in points if p.arm == arm]
            xs = [p.nfe for p in mine]
            mid, lo, hi = zip(*(getattr(p, metric) for p in mine), strict=True)
            (line,) = ax.plot(xs, mid, marker="o", label=arm)
            ax.fill_between(xs, lo, hi, alpha=0.2, color=line.get_color())
        ax.set_xscale("log", base=2)
        ax.set_xlabel(AXES["nfe"])
        ax.set_ylabel(AXES[metric])
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        path = out_dir / f"{metric}_nfe.png"
        write_atomic(path, buf.getvalue())
        written.append(path)
    return written
