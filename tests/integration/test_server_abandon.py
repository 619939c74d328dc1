"""`testtime serve` on the embedded model when clients give up: a long request that nobody
waits for stops computing, a burst of abandoned self-consistency requests leaves nothing
running, memory stays under the engine's ceiling, and a fresh request answers at once.

Found by trying it: after one abandoned ~6,000-word request the server kept computing for
30 s and more with no traffic, a fresh 5-token request timed out, and a server grew to 24 GB
and was killed by the kernel. About 60 s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from testtime.server.launch import Launched

pytestmark = pytest.mark.integration

CEILING_MB = 1024
WORDS = (
    "the history of arithmetic begins with counting and tallies and moves to written "
    "numerals, place value and the algorithms taught in schools today "
)
LONG = WORDS * 270  # about 5,900 tokens: most of SmolLM2's 8,192-token context


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Launched]:
    monkeypatch.setenv("TESTTIME_MAX_MEMORY", f"{CEILING_MB}MB")
    with Launched.cli("--max-concurrent", "32", "--log-level", "warning", ready_s=300) as s:
        yield s


def rss_mb(pid: int) -> float:
    """The process's resident memory now (VmRSS)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/PID/status")


async def watch_rss(pid: int, peak: list[float]) -> None:
    """Keep the highest resident memory seen in `peak[0]` (the model's load peaks before)."""
    while True:
        peak[0] = max(peak[0], rss_mb(pid))
        await asyncio.sleep(0.05)


async def give_up(client: httpx.AsyncClient, after_s: float, **body: object) -> None:
    """Send a chat request and leave after `after_s` seconds (the connection closes)."""
    payload = {"model": "smollm2-135m", **body}
    with pytest.raises(httpx.TimeoutException):
        await client.post("/v1/chat/completions", json=payload, timeout=after_s)


async def idle(client: httpx.AsyncClient, within_s: float) -> float:
    """Seconds until the server holds no request."""
    start = time.monotonic()
    while time.monotonic() - start < within_s:
        stats = (await client.get("/v1/testtime/stats")).json()
        if stats["tasks"] == 0 and stats["running"] == 0:
            return time.monotonic() - start
        await asyncio.sleep(0.2)
    raise AssertionError(f"the server still holds requests {within_s} s after the clients left")


async def test_abandoned_work_stops_and_memory_stays_under_the_ceiling(server: Launched) -> None:
    assert server.process is not None
    pid = server.process.pid
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        warm = await client.post(
            "/v1/chat/completions",
            json={
                "model": "smollm2-135m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "Say hi."}],
            },
        )
        assert warm.status_code == 200
        base_mb = rss_mb(pid)
        peak = [base_mb]
        watcher = asyncio.create_task(watch_rss(pid, peak))

        long_msg = [{"role": "user", "content": LONG}]
        await give_up(client, 8.0, messages=long_msg, max_tokens=4000)
        sc = {"testtime": {"strategy": "self_consistency", "params": {"n": 16}}}
        burst = [
            give_up(
                client,
                1.0,
                messages=[{"role": "user", "content": f"What is {i} + {i}? Explain."}],
                max_tokens=256,
                **sc,
            )
            for i in range(12)
        ]
        await asyncio.gather(*burst)
        waited = await idle(client, within_s=20)

        start = time.monotonic()
        fresh = await client.post(
            "/v1/chat/completions",
            json={
                "model": "smollm2-135m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "What is 2 + 2?"}],
            },
            timeout=30,
        )
        latency = time.monotonic() - start
        assert fresh.status_code == 200, fresh.text
        assert latency < 10, f"a fresh 5-token request took {latency:.1f} s"
        watcher.cancel()
        peak_mb = peak[0]
        # the ceiling bounds KV memory; activations of one prefill chunk come on top
        assert peak_mb - base_mb < CEILING_MB + 600, (base_mb, peak_mb)
        health = (await client.get("/health")).json()
        assert health["status"] == "ok"
    print(
        f"idle {waited:.1f} s after the last client left; fresh request {latency:.1f} s; "
        f"RSS {base_mb:.0f} -> peak {peak_mb:.0f} MB"
    )
