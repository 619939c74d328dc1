"""testtime: spend more compute at inference to get better answers, and measure how well it pays.

The public surface re-exports the core concepts; backends, tasks, verifiers and strategies
live in their own subpackages and are found by name through the registries.
"""

from testtime.core.budget import Budget
from testtime.core.cost import Cost
from testtime.core.errors import BudgetError, ConfigError, ModelNotFoundError, TesttimeError
from testtime.core.types import Candidate, Completion, Message, Problem, Request, Result

__all__ = [
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
    "TesttimeError",
]

__version__ = "0.1.0"
