"""Verifiers: what judges a candidate.

Importing this package registers every built-in verifier in `VERIFIERS`.
"""

from testtime.verifiers import (  # noqa: F401
    certainty,
    fake,
    judge,
    math,
    noisy,
    oracle,
    prm,
    probe,
    step_check,
    step_judge,
)
