"""Verifiers: what judges a candidate.

Importing this package registers every built-in verifier in `VERIFIERS`.
"""

from testtime.verifiers import (  # noqa: F401
    certainty,
    codet,
    constraints,
    fake,
    genrm,
    judge,
    math,
    mbr_exec,
    noisy,
    oracle,
    prm,
    probe,
    public_tests,
    reward_http,
    reward_model,
    step_check,
    step_judge,
    unit_tests,
)
