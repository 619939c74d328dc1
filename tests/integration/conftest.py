"""Fixtures of the integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
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


@pytest.fixture(scope="module")
def generator() -> Iterator[Any]:
    """The embedded model on the batching engine, one per test module (a cold prompt cache
    for each module), closed at the module's end."""
    from testtime.generators.models import load_generator

    gen = load_generator("smollm2-135m")
    yield gen
    asyncio.run(gen.aclose())
