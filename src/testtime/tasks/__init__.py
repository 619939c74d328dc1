"""Tasks: where problems come from, and how answers are read and checked.

Importing this package registers every built-in task in `TASKS`.
"""

from testtime.tasks import (
    code_family,  # noqa: F401
    code_jsonl,  # noqa: F401
    humaneval,  # noqa: F401
    instructions,  # noqa: F401
    jsonl,  # noqa: F401
    reasoning_gym,  # noqa: F401
)
