"""Atomic writes, the one copy: a temp file beside the target, fsynced, then renamed over
it, so a crash or a reader never sees a half-written report, policy, probe, trace or grid."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from testtime.core.errors import ConfigError


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically; a ConfigError when its folder does not exist."""
    if not path.parent.is_dir():
        raise ConfigError(f"cannot write {path}: the folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
