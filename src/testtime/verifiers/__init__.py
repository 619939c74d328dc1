"""Verifiers: what judges a candidate.

Importing this package registers every built-in verifier in `VERIFIERS`, one line each.
"""

from testtime.verifiers import fake as fake
