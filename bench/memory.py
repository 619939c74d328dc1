"""Benchmark: the engine's peak memory per concurrent sequence, and what its ceiling does.

Each size runs in a fresh process: load the model, warm up, reset the kernel's peak-RSS mark
(/proc/self/clear_refs), then decode C sequences of one prompt at once (EOS ignored, so every
sequence runs its full `max_tokens`) and read the peak (VmHWM). It prints, per C, the peak
growth over the warmed-up process, that growth per sequence, and the KV bytes the engine
accounts per sequence (layers x 2 x kv_heads x head_dim x dtype x columns), so the ceiling's
arithmetic can be checked against what the process really took. A last row runs the largest
C under a ceiling smaller than it needs: the work waits in turns, and the peak grows by the
ceiling plus what lies outside it (activations, logits, the allocator's retained heap).

Measured (SmolLM2-135M, 256 tokens, 2 cores): 1 / 8 / 32 / 128 sequences grew the process by
16 / 69 / 253 / 1250 MB (9.8 MB per sequence at 128, against 7.05 MB of KV accounted); 128
under a 311 MB ceiling grew it by 409 MB, in turns, at 375 tok/s instead of 532.

    python bench/memory.py                      # C = 1, 8, 32, 128; about 4 minutes on 2 cores
    python bench/memory.py --sizes 1,8 --max-tokens 128   # quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time

PROMPT = "Tell me about the history of arithmetic, from counting to algorithms."


def _status(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


async def child(a: argparse.Namespace) -> dict[str, float]:
    from testtime.core.types import Message, Request
    from testtime.generators.models import load_generator
    from testtime.generators.transformers import TransformersGenerator

    opts = {"max_memory": a.ceiling} if a.ceiling else {}
    gen = load_generator(a.model, **opts)
    assert isinstance(gen, TransformersGenerator)
    try:
        chat = (Message("user", PROMPT),)
        await gen.generate(Request(chat, max_tokens=8))  # warm up: kernels, buffers
        gen.clear_cache()
        gen.engine.eos = frozenset()  # every sequence runs to max_tokens
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        base = _status("VmRSS")
        started = time.perf_counter()
        # C requests of one sample each, so the ceiling can admit them in turns
        reqs = [Request(chat, max_tokens=a.max_tokens, seed=i) for i in range(a.child)]
        outs = await asyncio.gather(*(gen.generate(r) for r in reqs))
        wall = time.perf_counter() - started
        prompt = gen.count_prompt_tokens(reqs[0])
        columns = -(-(prompt + a.max_tokens) // 64) * 64 + 1  # the runner's shape step
        kv = gen.engine.runner.token_bytes * columns / 2**20
        tokens = sum(c.generated_tokens for o in outs for c in o.completions)
        return {
            "peak": _status("VmHWM") - base,
            "kv_per_seq": kv,
            "tokens": tokens,
            "wall": wall,
            "ceiling": gen.engine.max_memory / 2**20,
        }
    finally:
        await gen.aclose()


def run_child(a: argparse.Namespace, size: int, ceiling: str | None) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", str(size), "--model", a.model,
           "--max-tokens", str(a.max_tokens)]  # fmt: skip
    if ceiling:
        cmd += ["--ceiling", ceiling]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--sizes", default="1,8,32,128")
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--ceiling", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(asyncio.run(child(a))))
        return
    sizes = [int(s) for s in a.sizes.split(",")]
    print(f"{a.model}, one {len(PROMPT)}-character prompt, {a.max_tokens} tokens per sequence")
    print(f"{'sequences':>24} {'peak growth':>12} {'per sequence':>13} {'KV accounted':>13} "
          f"{'tok/s':>7}")  # fmt: skip
    rows = [(c, None) for c in sizes]
    biggest = max(sizes)
    r0 = run_child(a, 1, None)
    # room for about a quarter of them at once (the prefix cache takes a quarter of a ceiling)
    tight = f"{int(r0['kv_per_seq'] * (max(2, biggest // 4) + 1) * 4 / 3) + 1}MB"
    rows.append((biggest, tight))
    for c, ceiling in rows:
        r = r0 if (c, ceiling) == (1, None) else run_child(a, c, ceiling)
        label = f"{c}" + (f" (ceiling {ceiling})" if ceiling else "")
        per, kv, rate = r["peak"] / c, r["kv_per_seq"], r["tokens"] / r["wall"]
        print(f"{label:>24} {r['peak']:>9.0f} MB {per:>10.2f} MB {kv:>10.2f} MB {rate:>7.0f}")


if __name__ == "__main__":
    main()
