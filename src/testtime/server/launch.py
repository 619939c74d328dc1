"""A server in a subprocess on a free loopback port, for tests, benchmarks and notebooks.

    with Launched.cli("--model", "fake") as server:
        OpenAI(base_url=server.base_url, api_key="none")

It waits for /health before handing the server over, and stops it with SIGTERM (then
SIGKILL), so every test talks to a real server process and leaves none behind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

from testtime.core.errors import TesttimeError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Launched:
    """A running server process; `url` is its root, `base_url` its /v1."""

    def __init__(self, command: list[str], port: int, *, ready_s: float = 180.0) -> None:
        self.command = command
        self.port = port
        self.ready_s = ready_s
        self.url = f"http://127.0.0.1:{port}"
        self.base_url = f"{self.url}/v1"
        self._log = Path(tempfile.mkstemp(prefix="testtime-serve-", suffix=".log")[1])
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def cli(cls, *args: str, ready_s: float = 180.0) -> Launched:
        """`testtime serve ARGS --port P`."""
        port = free_port()
        cmd = [sys.executable, "-m", "testtime", "serve", *args, "--port", str(port)]
        return cls(cmd, port, ready_s=ready_s)

    @classmethod
    def python(cls, code: str, *args: str, ready_s: float = 180.0) -> Launched:
        """`python -c CODE PORT ARGS`: a server built by hand (a custom generator)."""
        port = free_port()
        return cls([sys.executable, "-c", code, str(port), *args], port, ready_s=ready_s)

    def start(self) -> Launched:
        with self._log.open("wb") as log:
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        deadline = time.monotonic() + self.ready_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise TesttimeError(f"the server exited at start:\n{self.log()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise TesttimeError(f"the server was not ready in {self.ready_s} s:\n{self.log()[-3000:]}")

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM (graceful: drains in-flight requests), SIGKILL after `timeout` s."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def log(self) -> str:
        return self._log.read_text(errors="replace")

    def __enter__(self) -> Launched:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        self._log.unlink(missing_ok=True)
