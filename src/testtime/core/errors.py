"""Errors that speak to the user: what was wrong, what is allowed, what to do next.

The CLI turns any `TesttimeError` into a one-line message without a traceback.
"""

from __future__ import annotations


class TesttimeError(Exception):
    """Base of every error a user can cause and fix."""


class ConfigError(TesttimeError, ValueError):
    """A name, parameter or value that is not allowed."""


class ModelNotFoundError(TesttimeError):
    """A model that is not installed, or whose files are missing or corrupt."""


class BudgetError(TesttimeError):
    """A budget too small to do even one unit of work."""


class DeadlineError(BudgetError):
    """A seconds budget ran out before the generator could start a request."""


class DataError(TesttimeError, ValueError):
    """Input data (a JSONL line, a task entry) that cannot be read."""


def unknown(kind: str, name: str, allowed: list[str] | tuple[str, ...]) -> ConfigError:
    """The standard error for an unknown name, listing what exists."""
    listing = ", ".join(sorted(allowed)) or "(none)"
    return ConfigError(f"unknown {kind} {name!r}; available: {listing}")
