"""Run model-written Python in a bubblewrap jail and judge it by the harness's own record.

What it does: every run is a fresh `bwrap` with new user, PID, network, IPC, UTS and mount
namespaces (`--unshare-all`), `--die-with-parent` and `--new-session`; only /usr, /lib*, /bin
and the interpreter's prefix are visible, read-only; /work and /tmp are fresh size-capped
tmpfs; the environment is empty but PATH, HOME and LANG. Under root the jail runs as nobody.
prlimit(1) sets CPU seconds, address space, processes, open files and file size (which also
caps stdout and stderr, written to files); the parent kills the process group at a wall-clock
deadline and the PID namespace takes every descendant with it. Expected values never enter the
jail: the harness encodes each call's value as plain tagged data (exact builtin types only,
so an `__eq__` that always says True is refused) and writes one record, marked with a per-run
nonce, after the calls; the parent rebuilds each value from builtin types and compares with
Python's `==` (so 1 == True and 2 == 2.0, as HumanEval's own asserts judge). A run that
exits before its record (`os._exit(0)`) fails. It fails closed: without a working bwrap,
`SandboxUnavailable` says how to install it and nothing runs. There is no unsandboxed mode.

What it does NOT cover: kernel exploits (the jail shares the host kernel; there is no seccomp
filter, so every syscall the user namespace allows is reachable); CPU and memory contention
(the limits are per process, no cgroup: a fork bomb runs until the deadline or the process cap,
and memory is capped per process, not in total); timing side channels; a solution that reads
the harness's memory to learn the nonce can write a record, but not the expected values, so it
can pass only by returning them; the first `file_bytes` of output are kept, the rest is cut
off by killing the writer (SIGXFSZ); the interpreter's prefix (its standard library and any
packages in it) is readable inside the jail.
"""

from testtime.sandbox.jail import Limits, SandboxUnavailable, probe
from testtime.sandbox.verdict import (
    Case,
    Execution,
    Verdict,
    aexecute,
    aobserve,
    execute,
    judge,
)

__all__ = [
    "Case",
    "Execution",
    "Limits",
    "SandboxUnavailable",
    "Verdict",
    "aexecute",
    "aobserve",
    "execute",
    "judge",
    "probe",
]
