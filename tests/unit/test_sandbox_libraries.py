"""`Limits.libraries`: packages of this process bound read-only into the jail (sympy for the
reasoning-gym scorers that parse answers), refused in one line when they cannot be given.

These run the real bubblewrap jail: without it they FAIL with the install hint, unless
TESTTIME_NO_SANDBOX_TESTS=1 on a machine that cannot have it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from testtime.sandbox import Case, Limits, SandboxUnavailable, Verdict, execute
from testtime.sandbox import jail as jail_module

pytestmark = pytest.mark.sandbox  # the real jail must work (tests/conftest.py)

SYMPY = Limits(wall_seconds=20.0, libraries=("sympy", "mpmath"))


def test_a_named_library_imports_in_the_jail_and_only_then() -> None:
    import sympy

    run = execute("import sympy", [Case("sympy.__version__", sympy.__version__)], SYMPY)
    assert run.verdict is Verdict.PASSED, run.detail
    bare = execute("import sympy", [Case("1", 1)])
    assert bare.verdict is Verdict.FAILED and "No module named 'sympy'" in bare.detail


def test_a_bound_library_is_read_only(tmp_path: Path) -> None:
    import sympy

    host = Path(sympy.__file__).parent / f"testtime-escape-{os.getpid()}"
    code = (
        "import sympy, pathlib\n"
        "folder = pathlib.Path(sympy.__file__).parent\n"
        f"(folder / {host.name!r}).write_text('x')\n"
    )
    run = execute(code, [Case("1", 1)], SYMPY)
    assert not host.exists()
    assert run.verdict is Verdict.FAILED and "Read-only file system" in run.detail


def test_a_missing_library_is_refused_in_one_line() -> None:
    limits = Limits(libraries=("testtime_no_such_library",))
    with pytest.raises(SandboxUnavailable, match="not a top-level package") as refused:
        execute("", [Case("1", 1)], limits)
    assert "\n" not in str(refused.value)
    with pytest.raises(SandboxUnavailable, match="not a top-level package"):
        execute("", [Case("1", 1)], Limits(libraries=("os.path",)))


def test_a_library_that_does_not_import_in_the_jail_is_refused() -> None:
    """reasoning_gym needs packages the jail is not given: refused, not a failing job."""
    with pytest.raises(SandboxUnavailable, match="do not import in the sandbox") as refused:
        execute("", [Case("1", 1)], Limits(libraries=("reasoning_gym",)))
    assert "\n" not in str(refused.value)


def test_a_library_the_jails_user_cannot_read_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    jail_module.library_binds.cache_clear()
    monkeypatch.setattr(jail_module, "_reachable", lambda path, uid: False)
    try:
        with pytest.raises(SandboxUnavailable, match="cannot read"):
            execute("", [Case("1", 1)], Limits(libraries=("mpmath",)))
    finally:
        jail_module.library_binds.cache_clear()
