"""Verifiers: what judges a candidate.

Importing this package registers every built-in verifier in `VERIFIERS`.
"""

from testtime.verifiers import certainty, fake, judge, math, noisy, oracle, step_check  # noqa: F401
