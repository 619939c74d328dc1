"""Reports of stored runs: terminal tables, PNG plots and HTML pages, from the store alone.

Each kind of run has its own report (`llm`, `diffusion`); `report_run` picks the run's.
"""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from testtime.lab.data.spec import DIFFUSION, run_kind
from testtime.lab.data.store import Store
from testtime.lab.reports import diffusion, llm


def report_run(store: Store, run_id: str, folder: Path) -> list[Table | str]:
    """Rebuild a stored run's report in `folder` as its kind of run asks, generating
    nothing; returns what to show on a terminal, in order (tables and lines)."""
    if run_kind(store.run(run_id)["spec"]) == DIFFUSION:
        return diffusion.report(store, run_id, folder)
    return llm.report(store, run_id, folder)
