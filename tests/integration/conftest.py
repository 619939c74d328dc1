"""Fixtures of the integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="module")
def generator() -> Iterator[Any]:
    """The embedded model on the batching engine, one per test module (a cold prompt cache
    for each module), closed at the module's end."""
    from testtime.generators.models import load_generator

    gen = load_generator("smollm2-135m")
    yield gen
    asyncio.run(gen.aclose())
