"""Benchmark: the per-token cost of constrained decoding (response_format) against free
decoding on the embedded model, side by side in one run.

Both workloads decode the same shape: one request of `--n` sampled rows, every row running
to exactly `--max-tokens` new tokens (the free prompt asks for a long story, which a 135M
model never ends within 64 tokens; the schema asks for a string of at least `--min-length`
characters, so no constrained row can end early either). Runs alternate (free, constrained,
free, ...) so load on a shared machine falls on both alike; medians are compared. The
constrained time is split into the grammar's own work (filling the token bitmasks and
applying them, timed inside the engine) and the rest.

    python bench/constrained.py                 # 16 rows x 64 tokens, 3 runs each
    python bench/constrained.py --quick         # 4 rows x 16 tokens, 1 run each
    python bench/constrained.py --device cuda   # on a GPU

It also reports the one-time cost per format: compiling the schema for the tokenizer.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from testtime.generators.transformers import quiet_threads

quiet_threads()  # before torch is first imported

from testtime.core.structured import response_format  # noqa: E402
from testtime.core.types import Message, Request  # noqa: E402
from testtime.generators.grammar import Masks  # noqa: E402
from testtime.generators.models import load_generator  # noqa: E402
from testtime.generators.transformers import TransformersGenerator  # noqa: E402

FREE = "Write a long story about a dragon who learns to cook."
ASK = "Write a long story about a dragon who learns to cook, as JSON."


def story_format(min_length: int) -> Any:
    schema = {
        "type": "object",
        "properties": {
            "title": {"type": "string", "maxLength": 40},
            "story": {"type": "string", "minLength": min_length},
        },
        "required": ["title", "story"],
    }
    return response_format(
        {"type": "json_schema", "json_schema": {"name": "story", "schema": schema}}
    )


class Timed(Masks):
    """The engine's masks, with the seconds spent in them counted."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds = 0.0

    def apply(self, logits: Any, rows: list[tuple[int, Any]]) -> list[tuple[int, BaseException]]:
        start = time.perf_counter()
        try:
            return super().apply(logits, rows)
        finally:
            if logits.device.type == "cuda":
                import torch

                torch.cuda.synchronize()
            self.seconds += time.perf_counter() - start


def one_run(gen: TransformersGenerator, request: Request) -> tuple[float, int, int]:
    """Wall seconds, tokens generated, and how many rows ran to max_tokens."""
    start = time.perf_counter()
    out = asyncio.run(gen.generate(request))
    wall = time.perf_counter() - start
    full = sum(c.finish_reason == "length" for c in out.completions)
    return wall, out.cost.generated_tokens, full


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--device", default="auto")
    p.add_argument("--n", type=int, default=16, help="rows decoding together")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--min-length", type=int, default=600, help="the story's least characters")
    p.add_argument("--runs", type=int, default=3, help="runs of each workload, alternated")
    p.add_argument("--quick", action="store_true", help="4 rows x 16 tokens, 1 run each")
    a = p.parse_args()
    if a.quick:
        a.n, a.max_tokens, a.runs = 4, 16, 1
    gen: Any = load_generator(a.model, device=a.device)
    masks = gen.engine.masks = Timed()
    fmt = story_format(a.min_length)
    start = time.perf_counter()
    gen.grammars.compile(fmt)
    compile_s = time.perf_counter() - start  # the first also builds the tokenizer's info
    start = time.perf_counter()
    gen.grammars.compile(story_format(a.min_length + 1))
    compile2_s = time.perf_counter() - start
    free = Request((Message("user", FREE),), n=a.n, max_tokens=a.max_tokens, seed=0)
    constrained = Request(
        (Message("user", ASK),), n=a.n, max_tokens=a.max_tokens, seed=0, response_format=fmt
    )
    one_run(gen, Request(free.messages, n=2, max_tokens=4))  # warm up (threads, allocator)
    one_run(gen, Request(constrained.messages, n=2, max_tokens=4, response_format=fmt))
    walls: dict[str, list[float]] = {"free": [], "constrained": []}
    mask_s: list[float] = []
    for _ in range(a.runs):
        for name, request in (("free", free), ("constrained", constrained)):
            masks.seconds = 0.0
            wall, tokens, full = one_run(gen, request)
            if full != a.n or tokens != a.n * a.max_tokens:
                raise SystemExit(
                    f"{name}: {a.n - full} row(s) ended before max_tokens; the per-token "
                    "comparison needs every row to run the same length (raise --min-length)"
                )
            walls[name].append(wall)
            if name == "constrained":
                mask_s.append(masks.seconds)
    tokens = a.n * a.max_tokens
    per = {k: statistics.median(v) / tokens * 1e3 for k, v in walls.items()}
    grammar_ms = statistics.median(mask_s) / tokens * 1e3
    print(
        f"{a.model} on {gen.engine.runner.device}, {a.n} rows x {a.max_tokens} tokens, "
        f"median of {a.runs} run(s) each"
    )
    print(f"  free         {per['free']:.3f} ms/token")
    print(f"  constrained  {per['constrained']:.3f} ms/token  (grammar masks {grammar_ms:.3f})")
    print(f"  ratio constrained / free: {per['constrained'] / per['free']:.2f}x")
    first = f"first format {compile_s * 1e3:.0f} ms (xgrammar's import, tokenizer info)"
    print(f"  compile: {first}, another {compile2_s * 1e3:.0f} ms; cached after that")
    asyncio.run(gen.aclose())


if __name__ == "__main__":
    main()
