"""Verifiers: what judges a candidate.

Importing this package registers every built-in verifier in `VERIFIERS`.
"""

from testtime.verifiers import (  # noqa: F401
    certainty,
    codet,
    fake,
    judge,
    math,
    mbr_exec,
    noisy,
    oracle,
    prm,
    probe,
    public_tests,
    reward_model,
    reward_http,
    step_check,
    step_judge,
    unit_tests,
)
