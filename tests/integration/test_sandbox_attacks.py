"""Each attack from issue 15, written as model output, runs in the real bubblewrap sandbox: it
must leave no trace on the host and its verdict must not be "passed".

Where bwrap cannot run, these tests FAIL with the install hint (never a silent skip); set
TESTTIME_NO_SANDBOX_TESTS=1 only on a machine that cannot have it.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from testtime.sandbox import Case, Execution, Limits, Verdict, execute

pytestmark = pytest.mark.sandbox  # the real jail must work (tests/conftest.py)

FAST = Limits(wall_seconds=3.0, cpu_seconds=3, memory_bytes=512 << 20, file_bytes=1 << 20)
# A correct solution: the attack runs first, so a pass would mean the attack went unnoticed.
SOLUTION = "def add(a, b):\n    return a + b\n"
CASES = [Case("add(1, 2)", 3), Case("add(-1, 1)", 0)]


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    """A host path an escape would create, in a host folder the jail cannot see (so a write
    that only reaches the jail's own /tmp fails too); it must not exist after the run."""
    path = tmp_path / f"testtime-escape-{uuid.uuid4().hex}"
    yield path
    assert not path.exists(), f"escape: {path} was created on the host"


def attack(code: str, solution: str = SOLUTION, limits: Limits = FAST) -> Execution:
    run = execute(code + "\n" + solution, CASES, limits)
    assert run.verdict is not Verdict.ERROR or "did not start" not in run.detail, run
    return run


def test_happy_path_passes() -> None:
    assert attack("").verdict is Verdict.PASSED


def test_os_system(marker: Path) -> None:
    run = attack(f"import os\nos.system('touch {marker}')\nraise SystemExit(0)")
    assert run.verdict is Verdict.FAILED


def test_posix_system(marker: Path) -> None:
    run = attack(f"import posix\nassert posix.system('touch {marker}') == 0\n")
    assert run.verdict is Verdict.FAILED


def test_reload_os_after_guard(marker: Path) -> None:
    code = (
        "import os, importlib\nos.system = None\nos = importlib.reload(os)\n"
        f"os.system('touch {marker}')\nassert os.path.exists('{marker}')"
    )
    assert attack(code).verdict is Verdict.FAILED


def test_posix_spawn(marker: Path) -> None:
    code = (
        f"import os\npid = os.posix_spawn('/usr/bin/touch', ['touch', '{marker}'], {{}})\n"
        f"os.waitpid(pid, 0)\nassert os.path.exists('{marker}')"
    )
    assert attack(code).verdict is Verdict.FAILED


def test_ctypes_libc(marker: Path) -> None:
    code = f"import ctypes\nctypes.CDLL(None).system(b'touch {marker}')\nraise SystemExit(0)"
    assert attack(code).verdict is Verdict.FAILED


def test_write_absolute_path(marker: Path) -> None:
    assert attack(f"open('{marker}', 'w').write('x')").verdict is Verdict.FAILED


def test_write_dotdot(marker: Path) -> None:
    relative = "../" * 12 + str(marker).lstrip("/")
    assert attack(f"open('{relative}', 'w').write('x')").verdict is Verdict.FAILED


def test_read_etc_passwd() -> None:
    assert Path("/etc/passwd").exists()
    assert attack("print(open('/etc/passwd').read())").verdict is Verdict.FAILED


@pytest.mark.parametrize("folder", [Path.home(), Path("/tmp")])
def test_read_a_secret_file(folder: Path) -> None:
    secret = folder / f"testtime-secret-{uuid.uuid4().hex}"
    secret.write_text("hunter2")
    try:
        run = attack(f"assert open('{secret}').read() == 'hunter2'")
    finally:
        secret.unlink()
    assert run.verdict is Verdict.FAILED and "hunter2" not in run.stdout + run.stderr


def test_tcp_to_host_loopback() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(5)
    port = server.getsockname()[1]
    got: list[bytes] = []

    def accept() -> None:
        try:
            conn, _ = server.accept()
            got.append(conn.recv(100))
            conn.close()
        except OSError:
            pass

    thread = threading.Thread(target=accept)
    thread.start()
    code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), 2).send(b'leak')"
    run = attack(code)
    server.close()
    thread.join()
    assert run.verdict is Verdict.FAILED and got == []


def test_dns_lookup() -> None:
    run = attack("import socket\nsocket.getaddrinfo('example.com', 80)")
    assert run.verdict is Verdict.FAILED


def test_environment_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTTIME_TEST_SECRET", "s3cr3t-value")
    run = attack("import os\nassert os.environ.get('TESTTIME_TEST_SECRET') == 's3cr3t-value'")
    assert run.verdict is Verdict.FAILED
    assert "s3cr3t" not in run.stdout + run.stderr


def _processes_with(tag: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if tag.encode() in (entry / "cmdline").read_bytes():
                found.append(entry.name)
        except OSError:
            continue
    return found


def test_grandchild_does_not_outlive_the_run() -> None:
    tag = f"testtime-orphan-{uuid.uuid4().hex}"
    code = (
        "import subprocess\n"
        f"subprocess.Popen(['/bin/sh', '-c', 'sleep 30 # {tag}'], start_new_session=True)\n"
        "import os\nos._exit(0)"
    )
    run = attack(code)
    assert run.verdict is Verdict.FAILED
    time.sleep(0.2)
    assert _processes_with(tag) == []


def test_fork_bomb() -> None:
    tag = f"testtime-bomb-{uuid.uuid4().hex}"
    code = (
        f"import os\nTAG = '{tag}'\n"
        "while True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    )
    run = attack(code, limits=Limits(wall_seconds=2.0, cpu_seconds=2, processes=32))
    assert run.verdict in (Verdict.TIMEOUT, Verdict.FAILED)
    time.sleep(0.2)
    assert _processes_with(tag) == []


def test_memory_bomb() -> None:
    run = attack("x = bytearray(4 << 30)\n")
    assert run.verdict is Verdict.FAILED and "MemoryError" in run.detail


def test_infinite_loop() -> None:
    started = time.monotonic()
    run = attack("while True:\n    pass")
    assert run.verdict is Verdict.TIMEOUT and time.monotonic() - started < 6


def test_one_gigabyte_print() -> None:
    run = attack(
        "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(chunk)"
    )
    assert run.verdict is not Verdict.PASSED
    assert len(run.stdout) <= FAST.file_bytes


def test_filling_the_disk() -> None:
    code = (
        "i = 0\nwhile True:\n    with open(f'/work/f{i}', 'wb') as f:\n"
        "        f.write(b'x' * (512 << 10))\n    i += 1"
    )
    assert (
        attack(code, limits=Limits(wall_seconds=5.0, disk_bytes=8 << 20)).verdict is Verdict.FAILED
    )


def test_exit_zero_before_the_tests() -> None:
    run = attack("import os\nos._exit(0)")
    assert run.verdict is Verdict.FAILED and run.passed == 0


def test_always_true_eq() -> None:
    wrong = (
        "class Liar(int):\n    __eq__ = lambda self, other: True\n"
        "def add(a, b):\n    return Liar(0)\n"
    )
    run = attack("", solution=wrong)
    assert run.verdict is Verdict.FAILED and run.passed == 0


def test_forged_record_on_stdout() -> None:
    forged = '{"nonce": "x", "results": [{"ok": true, "value": ["int", 3]}]}'
    run = attack(f"print({forged!r})\nimport os\nos._exit(0)")
    assert run.verdict is Verdict.FAILED


def test_runs_are_off_the_event_loop() -> None:
    import asyncio

    from testtime.sandbox import aexecute

    async def main() -> tuple[list[Execution], int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1

        ticker = asyncio.create_task(tick())
        slow = "import time\ntime.sleep(1)\n" + SOLUTION
        runs = await asyncio.gather(*(aexecute(slow, CASES, FAST) for _ in range(2)))
        ticker.cancel()
        return list(runs), ticks

    runs, ticks = asyncio.run(main())
    assert all(r.verdict is Verdict.PASSED and r.seconds >= 1 for r in runs)
    assert ticks >= 10  # the loop kept turning while the code ran


def test_many_jails_at_once_do_not_starve_each_other() -> None:
    """As root every jail ran as nobody, so one process cap counted all jails together:
    200 at once ended 140 in a sandbox error. Each jail now has a uid of its own."""
    import asyncio

    from testtime.sandbox import aexecute

    async def burst() -> list[Execution]:
        solution = "def add(a, b):\n    return a + b\n"
        return list(await asyncio.gather(*(aexecute(solution, CASES) for _ in range(160))))

    got = asyncio.run(burst())
    assert [e.verdict for e in got] == [Verdict.PASSED] * 160
