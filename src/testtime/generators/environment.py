"""The process environment torch and transformers need, set before they are first imported."""

from __future__ import annotations

import os


def quiet_threads() -> None:
    """Offline, and idle OpenMP threads that sleep instead of spinning (on a shared 2-core
    machine spinning threads made decoding 50x slower as soon as another process ran;
    measured). An existing setting wins."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
