"""Run the harness under bubblewrap with rlimits, a wall-clock deadline and capped output."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import queue
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testtime.core.errors import TesttimeError

HARNESS = Path(__file__).with_name("harness.py")
INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`; it needs unprivileged "
    "user namespaces, on Ubuntu >= 23.10 also an AppArmor profile for bwrap)"
)
NOBODY = 65534
SLOT_UIDS = 61000  # as root, jails run as 61000, 61001, ... (uids of no account), in turn
SLOTS = 128
LIBRARIES = "/pylib"  # where `Limits.libraries` appear inside the jail (first on sys.path)


class SandboxUnavailable(TesttimeError):
    """bubblewrap is missing or cannot create namespaces here, so no code is run."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What one execution may use. Output is capped by `file_bytes` (each stream is a file)."""

    wall_seconds: float = 10.0
    cpu_seconds: int = 10
    memory_bytes: int = 1 << 30  # address space of each process
    processes: int = 64
    open_files: int = 64
    file_bytes: int = 16 << 20  # largest file, stdout and stderr included
    disk_bytes: int = 64 << 20  # the tmpfs work dir
    # Top-level packages of this process the jailed code may import, bound read-only at
    # LIBRARIES (e.g. ("sympy", "mpmath")). Pure Python only: the jail's Python may be
    # another build (Debian's, when this one sits under a private /root).
    libraries: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Raw:
    """What came back from one jailed run, before any judging."""

    returncode: int | None  # None when killed at the wall-clock deadline
    timed_out: bool
    record: str
    stdout: str
    stderr: str
    seconds: float
    nonce: str


def _reachable(path: Path, uid: int) -> bool:
    """Whether `uid` may traverse every folder above `path` (root skips the check)."""
    if uid == 0:
        return True
    return all(os.stat(p).st_mode & 0o001 for p in path.parents)


@functools.cache
def interpreter() -> str:
    """The Python the jail runs: this one's base install, or the system's when the jail's user
    cannot reach it (e.g. a pyenv Python under a private /root)."""
    uid = NOBODY if os.geteuid() == 0 else os.geteuid()
    for candidate in (Path(sys.base_prefix) / "bin" / "python3", Path("/usr/bin/python3")):
        real = candidate.resolve()
        if real.exists() and _reachable(real, uid):
            return str(real)
    raise SandboxUnavailable(
        "no Python the sandbox user can reach; install python3 under /usr (apt-get install python3)"
    )


def _prefix(python: str) -> str:
    """The folder holding the interpreter's bin/ and lib/, bound read-only into the jail."""
    return str(Path(python).parent.parent)


@functools.cache
def library_binds(libraries: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(host path, jail path) of each named top-level package or module, read-only in the
    jail; `SandboxUnavailable` in one line when one is missing or the jail's user cannot
    read it (then nothing runs: the job would only fail on its import)."""
    uid = NOBODY if os.geteuid() == 0 else os.geteuid()
    binds = []
    for name in libraries:
        spec = importlib.util.find_spec(name) if name.isidentifier() else None
        locations = list(spec.submodule_search_locations or []) if spec else []
        origin = spec.origin if spec else None
        source = Path(locations[0]) if locations else Path(origin) if origin else None
        if source is None or not source.exists():
            raise SandboxUnavailable(
                f"cannot give the sandbox the library {name!r}: it is not a top-level package "
                "installed for this Python; install it, or name another"
            )
        source = source.resolve()
        if not (_reachable(source, uid) and os.stat(source).st_mode & 0o004):
            raise SandboxUnavailable(
                f"cannot give the sandbox the library {name!r}: the sandbox's user cannot read "
                f"{source}; install it where every user may read it (e.g. a venv outside /root)"
            )
        binds.append((str(source), f"{LIBRARIES}/{source.name}"))
    return tuple(binds)


def bwrap_command(bwrap: str, python: str, harness: Path, limits: Limits, fd: int) -> list[str]:
    """The bwrap command line: every namespace new, only the interpreter's prefix, /usr and
    the named libraries visible (read-only), a fresh tmpfs work dir, an empty environment,
    the harness script."""
    cmd = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--clearenv"]
    cmd += ["--ro-bind", "/usr", "/usr"]
    for link in ("bin", "lib", "lib64", "sbin"):
        target = Path("/") / link
        if target.is_symlink():
            cmd += ["--symlink", os.readlink(target), str(target)]
        elif target.is_dir():
            cmd += ["--ro-bind", str(target), str(target)]
    prefix = _prefix(python)
    if not prefix.startswith("/usr"):
        cmd += ["--ro-bind", prefix, prefix]
    for source, inside in library_binds(limits.libraries):
        cmd += ["--ro-bind", source, inside]
    cmd += ["--ro-bind", str(harness), "/harness/harness.py"]
    cmd += ["--proc", "/proc", "--dev", "/dev"]
    cmd += ["--size", str(limits.disk_bytes), "--tmpfs", "/tmp"]
    cmd += ["--size", str(limits.disk_bytes), "--tmpfs", "/work", "--chdir", "/work"]
    for key, value in (("PATH", "/usr/bin:/bin"), ("HOME", "/work"), ("LANG", "C.UTF-8")):
        cmd += ["--setenv", key, value]
    return [*cmd, "--", python, "-I", "-S", "/harness/harness.py", str(fd)]


def _own_processes(uid: int) -> int:
    """How many processes `uid` runs now (RLIMIT_NPROC counts them all, not just ours)."""
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                count += entry.stat().st_uid == uid
            except OSError:
                continue
    return count


def prlimit_command(prlimit: str, limits: Limits, uid: int) -> list[str]:
    """prlimit(1) sets the rlimits on bwrap, which the jailed processes inherit."""
    nproc = limits.processes + (_own_processes(uid) if uid < SLOT_UIDS else 0)
    return [
        prlimit,
        f"--cpu={limits.cpu_seconds}",
        f"--as={limits.memory_bytes}",
        f"--nproc={nproc}",
        f"--nofile={limits.open_files}",
        f"--fsize={limits.file_bytes}",
        "--core=0",
        "--",
    ]


@functools.cache
def probe(bwrap: str = "bwrap") -> tuple[str, str, str]:
    """bwrap, prlimit and the jail's Python, once per process; raises `SandboxUnavailable`
    in one line when the jail cannot be built here (fail closed: nothing is run unjailed)."""
    found = shutil.which(bwrap)
    if found is None:
        raise SandboxUnavailable(
            f"cannot run code: bubblewrap (bwrap) is not installed; {INSTALL_HINT}"
        )
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        raise SandboxUnavailable("cannot run code: prlimit is missing; apt-get install util-linux")
    python = interpreter()
    job = {"nonce": "probe", "code": "", "calls": []}
    raw = _jail(found, prlimit, python, job, Limits(wall_seconds=30.0))
    if raw.timed_out or raw.returncode != 0 or '"results"' not in raw.record:
        why = (raw.stderr.strip().splitlines() or ["no output"])[-1][:200]
        raise SandboxUnavailable(
            f"cannot run code: bwrap cannot create its namespaces ({why}); {INSTALL_HINT}"
        )
    return found, prlimit, python


def _read_capped(path: Path, cap: int) -> str:
    with path.open("rb") as f:
        return f.read(cap).decode("utf-8", "replace")


_SLOTS: queue.Queue[int] = queue.Queue()  # first in, first out: a uid rests while others run
for _i in range(SLOTS):
    _SLOTS.put(SLOT_UIDS + _i)


def _jail(bwrap: str, prlimit: str, python: str, job: dict[str, Any], limits: Limits) -> Raw:
    """One jailed run of the harness; blocks its thread until the harness ends or is killed.

    As root, each jail runs as a uid of its own, taken in turn from `SLOTS` uids, so
    RLIMIT_NPROC binds per jail: with one shared uid (nobody) a jail's processes counted
    against every other's cap, and concurrent jails failed with EAGAIN (seen: 140 of 200).
    A finished jail's processes linger while the kernel tears its namespaces down (~2 s,
    measured), so a uid comes back only after every other one has been used."""
    if os.geteuid() != 0:
        return _run(bwrap, prlimit, python, job, limits, None)
    uid = _SLOTS.get()
    try:
        return _run(bwrap, prlimit, python, job, limits, uid)
    finally:
        _SLOTS.put(uid)


def _run(
    bwrap: str,
    prlimit: str,
    python: str,
    job: dict[str, Any],
    limits: Limits,
    slot: int | None,
) -> Raw:
    drop = slot is not None  # as root: run as the slot's uid so RLIMIT_NPROC binds
    uid = slot if slot is not None else os.geteuid()
    nonce = str(job["nonce"])
    with tempfile.TemporaryDirectory(prefix="testtime-sandbox-") as tmp:
        out, err, rec, inp = (Path(tmp) / n for n in ("stdout", "stderr", "record", "stdin"))
        inp.write_bytes(json.dumps(job).encode())
        os.chmod(tmp, 0o711)  # the jail's user (nobody, under root) binds the harness from here
        harness = Path(tmp) / "harness.py"
        shutil.copyfile(HARNESS, harness)
        harness.chmod(0o644)
        files = [inp.open("rb"), out.open("wb"), err.open("wb"), rec.open("wb")]
        fd = files[3].fileno()
        jail = bwrap_command(bwrap, python, harness, limits, fd)
        cmd = prlimit_command(prlimit, limits, uid) + jail
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=files[0].fileno(),
                stdout=files[1].fileno(),
                stderr=files[2].fileno(),
                pass_fds=(fd,),
                env={"LANG": "C.UTF-8"},
                start_new_session=True,
                user=uid if drop else None,
                group=uid if drop else None,
                extra_groups=[] if drop else None,
            )
        finally:
            for f in files:
                f.close()
        try:
            timed_out = not _exited(proc, limits.wall_seconds)
        finally:
            # The whole group; the jail's PID namespace dies with bwrap (--die-with-parent).
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        seconds = time.monotonic() - start
        cap = limits.file_bytes
        return Raw(
            returncode=None if timed_out else proc.returncode,
            timed_out=timed_out,
            record=_read_capped(rec, cap),
            stdout=_read_capped(out, cap),
            stderr=_read_capped(err, cap),
            seconds=seconds,
            nonce=nonce,
        )


def _exited(proc: subprocess.Popen[bytes], seconds: float) -> bool:
    """Whether `proc` ended within `seconds`, woken the moment it does: a pidfd becomes
    readable at exit. (`Popen.wait(timeout)` polls with sleeps that grow to 50 ms, which
    added ~15 ms to every ~15 ms run.)"""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except OSError:  # a kernel before 5.3: poll instead
        try:
            proc.wait(timeout=seconds)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        ready, _, _ = select.select([pidfd], [], [], seconds)
        return bool(ready)
    finally:
        os.close(pidfd)


@functools.cache
def probe_libraries(bwrap: str, libraries: tuple[str, ...]) -> None:
    """Import the libraries once in a jail; `SandboxUnavailable` in one line when they do not
    import there (a job would then fail on every answer, grading it wrong, not the sandbox)."""
    found, prlimit, python = probe(bwrap)
    library_binds(libraries)  # each name a readable top-level package, before it is imported
    imports = "".join(f"import {name}\n" for name in libraries)
    job = {"nonce": secrets.token_hex(16), "code": imports, "calls": ["0"], "path": [LIBRARIES]}
    raw = _jail(found, prlimit, python, job, Limits(wall_seconds=30.0, libraries=libraries))
    try:
        result = json.loads(raw.record.splitlines()[1])["results"][0]
    except (IndexError, KeyError, TypeError, ValueError):
        result = {}
    if not isinstance(result, dict) or result.get("ok") is not True:
        result = result if isinstance(result, dict) else {}
        error = result.get("error") or (raw.stderr.strip().splitlines() or ["no record"])[-1]
        raise SandboxUnavailable(
            f"cannot run code that needs {', '.join(libraries)}: they do not import in the "
            f"sandbox's Python {python} ({str(error)[:200]}); install pure-Python copies "
            "readable by every user"
        )


def run_jailed(
    code: str,
    calls: list[str],
    limits: Limits,
    bwrap: str = "bwrap",
    *,
    script: str = "",
    entry: str = "",
) -> Raw:
    """Run `code`, then evaluate each call expression, then run `script` (assert-style tests
    that may call `entry`, guarded), in the jail (blocking); `limits.libraries` are
    importable there."""
    found, prlimit, python = probe(bwrap)
    job: dict[str, Any] = {"nonce": secrets.token_hex(16), "code": code, "calls": calls}
    if limits.libraries:
        probe_libraries(bwrap, limits.libraries)
        job["path"] = [LIBRARIES]
    if script:
        job |= {"script": script, "entry": entry}
    return _jail(found, prlimit, python, job, limits)
