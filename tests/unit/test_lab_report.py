"""The lab report: the rich table, the PNG figures and the self-contained HTML page."""

from __future__ import annotations

import html
import os
from pathlib import Path

import pytest
from rich.console import Console

from testtime.core.errors import ConfigError
from testtime.core.files import write_atomic
from testtime.lab.analysis.curves import Analysis, Ceiling, CoverageFit, Curve, Point
from testtime.lab.reports.llm import ReportFiles, human, table, write_report

pytest.importorskip("matplotlib")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EVIL = "<script>alert('x')</script>"


def point(k: int, acc: float, tokens_per_sample: float = 300.0) -> Point:
    return Point(
        budget=k,
        accuracy=acc,
        lo=max(0.0, acc - 0.13),
        hi=min(1.0, acc + 0.13),
        samples=float(k),
        tokens=k * tokens_per_sample,
        flops=k * tokens_per_sample * 2.7e8,
    )


def curve(label: str, accs: list[float], **kw: object) -> Curve:
    points = tuple(point(2**i, a) for i, a in enumerate(accs))
    return Curve(label, points, **kw)  # type: ignore[arg-type]


def analysis(**overrides: object) -> Analysis:
    fields: dict[str, object] = dict(
        run_id="run-2024-abc",
        title="arithmetic sweep",
        problems=40,
        curves=(
            curve("self_consistency", [0.3, 0.42, 0.5, 0.57, 0.6]),
            curve("best_of_n[self_certainty]", [0.3, 0.38, 0.45, 0.49, 0.5]),
            curve(EVIL, [0.3, 0.35, 0.4], estimator="monte-carlo"),
        ),
        coverage=curve("coverage", [0.3, 0.5, 0.66, 0.78, 0.86]),
        fit=CoverageFit(a=-1.2345, b=-0.4321, r2=0.987, ks=(1, 2, 4, 8, 16)),
        saturation={"self_consistency": 16, "best_of_n[self_certainty]": None},
        ceilings=(Ceiling("self_certainty", 0.5, 0.71, 0.12, 0.88),),
        pareto={"flops": (("self_consistency", 1), ("self_consistency", 8))},
        notes=("CI: 95% percentile bootstrap over problems",),
    )
    fields.update(overrides)
    return Analysis(**fields)  # type: ignore[arg-type]


def render(a: Analysis, budgets: list[int] | None = None) -> str:
    console = Console(record=True, width=160)
    console.print(table(a, budgets))
    return console.export_text()


def test_human() -> None:
    assert (human(1.234e9), human(999), human(1500), human(0)) == ("1.23G", "999", "1.5k", "0")


def test_table_shows_labels_accuracy_fit_and_pareto_marker() -> None:
    text = render(analysis())
    for needle in (
        "self_consistency",
        "best_of_n[self_certainty]",
        EVIL,
        "coverage (oracle pass@k)",
    ):
        assert needle in text
    assert "57% [44–70]" in text
    assert "a=-1.234" in text and "b=-0.4321" in text and "R²=0.987" in text
    assert "c(100)=" in text and "c(1000)=" in text
    assert "monte-carlo" in text and "self_consistency at k=16" in text
    assert "verifier ceiling self_certainty" in text and "71.0%" in text
    assert "CI: 95% percentile bootstrap" in text
    row = next(line for line in text.splitlines() if "57% [44–70]" in line)
    assert row.rstrip(" │|").endswith("*")
    assert "162G" in text  # FLOPs humanised: 2 samples * 300 tokens * 2.7e8


def test_table_label_once_per_group_and_budgets_filter() -> None:
    text = render(analysis(), budgets=[1, 4])
    assert text.count("self_consistency ") == 1 + 1  # one table row + the saturation line
    assert "42% [" not in text  # k=2 filtered out
    assert "50% [37–63]" in text


def test_write_report(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "report"
    files = write_report(analysis(), out)
    assert isinstance(files, ReportFiles)
    names = [p.name for p in files.pngs]
    assert names == [
        "accuracy_samples.png",
        "accuracy_tokens.png",
        "accuracy_flops.png",
        "coverage.png",
    ]
    blobs = [p.read_bytes() for p in files.pngs]
    for blob in blobs:
        assert blob.startswith(PNG_SIGNATURE) and len(blob) > 5000
    assert len(set(blobs)) == len(blobs)
    page = files.html.read_text(encoding="utf-8")
    assert files.html == out / "index.html"
    for name in names:
        assert f'<a href="{name}">' in page
    assert page.count("data:image/png;base64,") == 4
    assert html.escape(EVIL) in page and EVIL not in page
    assert "run-2024-abc" in page and "a=-1.234" in page
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]
    assert sorted(os.listdir(out)) == sorted([*names, "index.html"])


@pytest.mark.parametrize(
    "overrides",
    [
        dict(coverage=None, fit=None, pareto={}, saturation={}, ceilings=(), notes=()),
        dict(fit=None),
        dict(curves=(curve("single", [0.4]),), pareto={"flops": (("missing", 1),)}),
        dict(
            curves=(
                Curve("free", (Point(1, 0.2, 0.1, 0.3, 0, 0, 0), Point(2, 0.3, 0.2, 0.4, 1, 0, 0))),
            )
        ),
        dict(curves=(Curve("empty", ()),), coverage=None, fit=None),
        dict(curves=(), fit=CoverageFit(a=5.0, b=1.0, r2=-0.5, ks=(1, 2))),
    ],
)
def test_degenerate_analyses_do_not_crash(tmp_path: Path, overrides: dict[str, object]) -> None:
    a = analysis(**overrides)
    render(a)
    files = write_report(a, tmp_path)
    assert files.html.exists()
    for p in files.pngs:
        assert p.read_bytes().startswith(PNG_SIGNATURE)


def test_nothing_to_plot_yet(tmp_path: Path) -> None:
    a = analysis(curves=(), coverage=None, fit=None, pareto={})
    files = write_report(a, tmp_path)
    assert files.pngs == ()
    assert "Nothing to plot yet" in files.html.read_text(encoding="utf-8")
    assert "arithmetic sweep" in render(a)


def test_atomic_write_replaces_and_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "x.bin"
    write_atomic(target, b"old")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    with pytest.raises(TypeError):
        write_atomic(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["x.bin"]


def test_missing_matplotlib_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ConfigError, match=r"testtime\[lab\]"):
        write_report(analysis(), tmp_path)
    assert not list(tmp_path.iterdir())


def test_runaway_fit_and_no_frontier_are_stated_not_crashed() -> None:
    text = render(analysis(fit=CoverageFit(a=5.0, b=1.0, r2=-0.5, ks=(1, 2)), pareto={}))
    assert "c(100)=n/a" in text and "c(1000)=n/a" in text
    assert "Pareto" not in text
    assert "coverage law: not fitted" in render(analysis(fit=None))
