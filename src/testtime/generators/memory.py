"""The engine's memory ceiling: how many bytes its KV caches may hold, from the machine.

Every live sequence keeps one cache row as wide as the longest sequence in the batch, so
one long request can make every row wide (seen: a 6,000-word prompt beside a burst of
self-consistency requests took a server to 24 GB and the kernel killed it). The engine
therefore admits work only while its worst case fits under a ceiling: by default 40% of
the memory this process may use (the machine's, or its cgroup's limit when lower), or
what `TESTTIME_MAX_MEMORY` / the `max_memory` option says ("4GB", "512MB", bytes).

On a GPU the caches live in the device's memory, not the host's, so the default there is
80% of what the device holds free once the weights are loaded (as vLLM sizes its KV cache
from `gpu_memory_utilization`; the rest is left for activations and the sampler). Sized from
host RAM it admitted 36% of an H200's free memory, and on a machine with less GPU memory
than RAM it would admit work the GPU cannot hold.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from testtime.core.errors import ConfigError

SHARE = 0.4  # of the process's memory, for KV rows, prefill caches and the prefix cache
DEVICE_SHARE = 0.8  # of an accelerator's free memory after the weights, for the same
ENV = "TESTTIME_MAX_MEMORY"
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_bytes(text: str | int | float) -> int:
    """'4GB', '512 MiB', '1.5g' or a number of bytes, as bytes."""
    if isinstance(text, (int, float)):
        value, unit = float(text), ""
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(?:i?b)?\s*", text, re.IGNORECASE)
        if not m:
            raise ConfigError(
                f"cannot read a memory size from {text!r}; write e.g. '4GB', '512MB' or bytes"
            )
        value, unit = float(m.group(1)), m.group(2).lower()
    size = int(value * _UNITS[unit])
    if size <= 0:
        raise ConfigError(f"a memory ceiling must be positive, got {text!r}")
    return size


def machine_bytes() -> int:
    """The memory this process may use: physical memory, or its cgroup's limit if lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            raw = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and 0 < int(raw) < total:
            total = int(raw)
    return total


def device_free_bytes(device: str) -> int | None:
    """Free memory of a CUDA device ('cuda', 'cuda:1'), or None for a host device."""
    if not device.startswith("cuda"):
        return None
    import torch

    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return int(free)


def ceiling(
    option: str | int | float | None = None,
    device: str = "cpu",
    free: Callable[[str], int | None] = device_free_bytes,
) -> int:
    """The engine's memory ceiling in bytes: the option, else $TESTTIME_MAX_MEMORY, else 80%
    of an accelerator's free memory when the model runs on one (`free` reads it), else 40%
    of the process's memory."""
    if option is not None:
        return parse_bytes(option)
    env = os.environ.get(ENV)
    if env:
        return parse_bytes(env)
    on_device = free(device)
    if on_device is not None:
        return int(DEVICE_SHARE * on_device)
    return int(SHARE * machine_bytes())


def show(size: float) -> str:
    """Bytes for a person: '1.5 GB', '640 MB'."""
    if size >= 1 << 30:
        return f"{size / (1 << 30):.1f} GB"
    return f"{size / (1 << 20):.0f} MB"
