"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from testtime.sandbox import SandboxUnavailable, probe


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One torch thread: on a shared 2-core machine, spinning thread pools cost 100x."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", autouse=True)
def sandbox_works(request: pytest.FixtureRequest) -> None:
    """For a module marked `sandbox`: the real jail must work here. Where bwrap cannot run
    its tests FAIL with the install hint, never skip silently; TESTTIME_NO_SANDBOX_TESTS=1
    leaves them out on a machine that cannot have it."""
    if request.node.get_closest_marker("sandbox") is None:
        return
    if os.environ.get("TESTTIME_NO_SANDBOX_TESTS") == "1":
        pytest.skip("TESTTIME_NO_SANDBOX_TESTS=1: sandbox tests left out")
    try:
        probe()
    except SandboxUnavailable as exc:
        pytest.fail(f"{exc} (or set TESTTIME_NO_SANDBOX_TESTS=1 where it cannot be installed)")
