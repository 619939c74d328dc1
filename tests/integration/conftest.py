"""Fixtures of the integration tests."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/integration is an integration test, whether its module says so
    or not, so `-m "not integration"` leaves them all out (the Ray tests once escaped)."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def collected() -> Iterator[None]:
    """Collect garbage as each test ends, so a socket or file it left open is reported (an
    error under the suite's warning filter) against that test, not against whichever later
    test the collector happens to run in (CI once failed a test for another's client)."""
    yield
    gc.collect()


@pytest.fixture(scope="module")
def generator() -> Iterator[Any]:
    """The embedded model on the batching engine, one per test module (a cold prompt cache
    for each module), closed at the module's end."""
    from testtime.generators.models import load_generator

    gen = load_generator("smollm2-135m")
    yield gen
    asyncio.run(gen.aclose())


@pytest.fixture
def openai_client() -> Iterator[Callable[..., Any]]:
    """Make official `openai` clients (no retries) for this test; each is closed when the test
    ends, so none leaves a pooled connection open for the collector to report later."""
    from openai import OpenAI

    made: list[Any] = []

    def make(base_url: str, timeout: float = 300, api_key: str = "unused") -> Any:
        made.append(OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0))
        return made[-1]

    yield make
    for client in made:
        client.close()
