"""testtime: spend more compute at inference to get better answers, and measure how well it pays.

One import is enough to use the library::

    import testtime as tt

    gen = tt.load_generator("smollm2-135m")
    task = tt.build_task("arithmetic", {"size": 20})
    spec = tt.STRATEGIES.spec("self_consistency", {"n": 8})
    results = await tt.solve_many(task.problems(), spec, gen, task=task)

The core concepts are imported here; running (`solve`, `solve_many`, `RunSettings`), the
builders, `load_generator` and the registries (`STRATEGIES`, `VERIFIERS`, `TASKS`) load on
first use, so `import testtime` stays cheap (no model backend, no torch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from testtime.core.budget import Budget
from testtime.core.cost import Cost
from testtime.core.errors import BudgetError, ConfigError, ModelNotFoundError, TesttimeError
from testtime.core.types import Candidate, Completion, Message, Problem, Request, Result

if TYPE_CHECKING:
    from testtime.generators.models import load_generator
    from testtime.strategies.base import STRATEGIES
    from testtime.strategies.run import RunSettings, build_task, build_verifier, solve, solve_many
    from testtime.tasks.base import TASKS
    from testtime.verifiers.base import VERIFIERS

_LAZY = {
    "load_generator": "testtime.generators.models",
    "STRATEGIES": "testtime.strategies.base",
    "RunSettings": "testtime.strategies.run",
    "build_task": "testtime.strategies.run",
    "build_verifier": "testtime.strategies.run",
    "solve": "testtime.strategies.run",
    "solve_many": "testtime.strategies.run",
    "TASKS": "testtime.tasks.base",
    "VERIFIERS": "testtime.verifiers.base",
}

__all__ = [
    "STRATEGIES",
    "TASKS",
    "VERIFIERS",
    "Budget",
    "BudgetError",
    "Candidate",
    "Completion",
    "ConfigError",
    "Cost",
    "Message",
    "ModelNotFoundError",
    "Problem",
    "Request",
    "Result",
    "RunSettings",
    "TesttimeError",
    "build_task",
    "build_verifier",
    "load_generator",
    "solve",
    "solve_many",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """The lazily loaded names: imported on first use, then kept."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'testtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
