"""Tasks: where problems come from, and how answers are read and checked.

Importing this package registers every built-in task in `TASKS`.
"""

from testtime.tasks import (
    jsonl,  # noqa: F401
    reasoning_gym,  # noqa: F401
)
