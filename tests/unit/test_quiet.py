"""No library warning reaches a user's terminal from the command line (a transformers
deprecation printed into `make demo`'s table once); TESTTIME_DEBUG=1 shows them."""

from __future__ import annotations

import os
import subprocess
import sys

WARN = (
    "from testtime.cli import quiet_libraries; quiet_libraries(); import warnings; "
    "warnings.warn('past_key_values is deprecated', FutureWarning); "
    "from tqdm.auto import tqdm; list(tqdm(range(3), desc='converting')); print('done')"
)


def run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TESTTIME_", "TQDM_"))}
    return subprocess.run(
        [sys.executable, "-c", WARN], capture_output=True, text=True, env={**clean, **env}
    )


def test_library_warnings_and_bars_stay_off_the_terminal() -> None:
    out = run({})
    assert out.stdout.strip() == "done" and out.stderr == ""


def test_debug_shows_them() -> None:
    out = run({"TESTTIME_DEBUG": "1"})
    assert "past_key_values is deprecated" in out.stderr
