"""Benchmark: the batching engine against plain transformers `generate`, in one run.

Same model, same prompts (reasoning-gym basic_arithmetic), same sampled workload
(default 16 problems x best-of-8, 128 new tokens). Prints the engine's wall time and
tokens/s against one padded `generate` batch of all sequences and per-problem batches of n,
then the decode-step cost of sampling vs greedy at batch 16, and tokens/s at batch 32
against the CPU's ceiling (measured bf16 matmul FLOP/s / (2 x parameters)).

    python bench/engine.py                      # the full comparison (about 10 minutes)
    python bench/engine.py --quick              # 4 problems x 4 samples, 32 tokens
    python bench/engine.py --only steps --step-models smollm2-135m,gemma3-270m
    python bench/engine.py --only load          # cold (convert the GGUF) vs cached load

Threads wait passively by default (robust on a shared machine); on a dedicated one,
`OMP_WAIT_POLICY=ACTIVE python bench/engine.py` is faster for every contender alike.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from typing import Any

from testtime.generators.transformers import quiet_threads

quiet_threads()  # before torch is first imported

import reasoning_gym  # noqa: E402
import torch  # noqa: E402

from testtime.core.types import Message, Request  # noqa: E402
from testtime.generators.attention import stock_attention  # noqa: E402
from testtime.generators.models import load_generator  # noqa: E402
from testtime.generators.sampling import RowParams, Sampler  # noqa: E402
from testtime.generators.transformers import TransformersGenerator  # noqa: E402


def prompts(count: int, seed: int = 0) -> list[tuple[Message, ...]]:
    data = reasoning_gym.create_dataset("basic_arithmetic", size=count, seed=seed)
    suffix = "\nGive the final answer on the last line."
    return [(Message("user", e["question"] + suffix),) for e in data]


# -- 1. the engine against plain generate on one sampled workload -----------------------
def run_engine(gen: TransformersGenerator, chats: list[Any], a: argparse.Namespace) -> float:
    async def go() -> int:
        reqs = [
            Request(
                c, n=a.n, max_tokens=a.max_tokens, temperature=a.temperature, top_p=a.top_p, seed=i
            )
            for i, c in enumerate(chats)
        ]
        outs = await asyncio.gather(*(gen.generate(r) for r in reqs))
        return sum(o.cost.generated_tokens for o in outs)

    start = time.perf_counter()
    tokens = asyncio.run(go())
    return report("engine (continuous batching)", tokens, time.perf_counter() - start)


def run_generate(
    gen: TransformersGenerator, chats: list[Any], a: argparse.Namespace, per_problem: bool
) -> float:
    tok, model = gen.tokenizer, gen.model
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    eos = sorted(gen.engine.eos)
    cfg = dict(
        do_sample=True,
        temperature=a.temperature,
        top_p=a.top_p,
        top_k=0,
        max_new_tokens=a.max_tokens,
        num_return_sequences=a.n,
        eos_token_id=eos,
        pad_token_id=tok.pad_token_id,
    )
    groups = [[c] for c in chats] if per_problem else [chats]
    torch.manual_seed(0)
    tokens, start = 0, time.perf_counter()
    for group in groups:
        texts = [gen.prompt_text(c) for c in group]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=not gen.chat)
        with torch.inference_mode(), stock_attention(model):
            out = model.generate(**enc.to(gen.engine.runner.device), **cfg)
        tokens += useful_tokens(out[:, enc["input_ids"].shape[1] :], set(eos))
    name = (
        f"generate, per-problem batches of {a.n}"
        if per_problem
        else (f"generate, one padded batch of {len(chats) * a.n}")
    )
    return report(name, tokens, time.perf_counter() - start)


def run_transformers_cb(
    gen: TransformersGenerator, chats: list[Any], a: argparse.Namespace
) -> float:
    """transformers' own continuous batching (`generate_batch`, paged attention)."""
    from transformers import ContinuousBatchingConfig, GenerationConfig

    eos = sorted(gen.engine.eos)
    cfg = GenerationConfig(
        do_sample=True,
        temperature=a.temperature,
        top_p=a.top_p,
        top_k=0,
        max_new_tokens=a.max_tokens,
        num_return_sequences=a.n,
        eos_token_id=eos,
        pad_token_id=eos[0],
    )
    # small pages: the defaults size the cache for a GPU (measured slower here)
    cb = ContinuousBatchingConfig(
        page_size=32,
        num_blocks=4 * len(chats) * a.n,
        max_batch_tokens=256,
        use_async_batching=False,
    )
    inputs = [list(gen._encode(c, "")) for c in chats]
    start = time.perf_counter()
    with torch.inference_mode(), stock_attention(gen.model):
        out = gen.model.generate_batch(
            inputs, generation_config=cfg, continuous_batching_config=cb, warmup=False
        )
    tokens = sum(len(r.generated_tokens) for r in out.values())
    return report("transformers generate_batch (paged CB)", tokens, time.perf_counter() - start)


def useful_tokens(gen_ids: torch.Tensor, eos: set[int]) -> int:
    """Tokens up to and including each row's first EOS (what the engine also counts)."""
    total = 0
    for row in gen_ids.tolist():
        ends = [i for i, t in enumerate(row) if t in eos]
        total += ends[0] + 1 if ends else len(row)
    return total


def report(name: str, tokens: int, seconds: float) -> float:
    print(f"  {name:<40} {seconds:7.1f} s  {tokens:6d} tokens  {tokens / seconds:7.1f} tok/s")
    return tokens / seconds


# -- 2. decode-step cost: sampled vs greedy, and tokens/s at a batch size ------------------
def step_rate(gen: TransformersGenerator, batch: int, steps: int, sampled: bool) -> float:
    """Tokens/s of forward + sampling with `batch` live rows (EOS ignored, so all stay live)."""
    runner, sampler = gen.engine.runner, Sampler()
    chats = prompts(batch, seed=1)
    encoded = [list(gen._encode(c, "")) for c in chats]
    width = max(map(len, encoded))
    ids = torch.zeros((batch, width), dtype=torch.long)
    pos = torch.full((batch, width), -1, dtype=torch.long)
    for b, p in enumerate(encoded):
        ids[b, width - len(p) :] = torch.tensor(p)
        pos[b, width - len(p) :] = torch.arange(len(p))
    dev = runner.device
    rngs = [random.Random(b) for b in range(batch)]
    with torch.inference_mode():
        cache = runner.new_cache()
        logits = runner.forward(cache, ids.to(dev), pos.to(dev))
        lengths = torch.tensor([len(p) for p in encoded], device=dev)
        start = 0.0
        for step in range(steps + 2):
            if step == 2:  # two warm-up steps
                start = time.perf_counter()
            rows = [RowParams(0.8 if sampled else 0.0, 0.95, r.random()) for r in rngs]
            toks = torch.tensor(sampler(logits, rows), device=dev)[:, None]
            logits = runner.forward(cache, toks, lengths[:, None])
            lengths += 1
    return batch * steps / (time.perf_counter() - start)


def matmul_flops(dtype: torch.dtype, size: int = 2048, reps: int = 10) -> float:
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    torch.matmul(a, b)
    start = time.perf_counter()
    for _ in range(reps):
        torch.matmul(a, b)
    return 2 * size**3 * reps / (time.perf_counter() - start)


def load_times(names: list[str], opts: dict[str, Any]) -> None:
    """Seconds to a ready generator: first load (GGUF conversion) vs from the cache."""
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TESTTIME_CACHE"] = tmp
        for name in names:
            times = []
            for _ in range(2):
                start = time.perf_counter()
                gen = load_generator(name, **opts)
                times.append(time.perf_counter() - start)
                asyncio.run(gen.aclose())
            print(
                f"{name}: cold load {times[0]:.1f} s (converting the GGUF), cached {times[1]:.2f} s"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--problems", type=int, default=16)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--max-batch", type=int, default=None)
    p.add_argument("--only", choices=["workload", "engine", "steps", "load"], default=None)
    p.add_argument("--step-models", default="smollm2-135m,gemma3-270m")
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--cb", action="store_true", help="also run transformers' generate_batch")
    p.add_argument("--quick", action="store_true", help="4 problems x 4 samples, 32 tokens")
    a = p.parse_args()
    if a.quick:
        a.problems, a.n, a.max_tokens, a.steps = 4, 4, 32, 16
    opts: dict[str, Any] = {"threads": a.threads, "dtype": a.dtype}
    if a.max_batch:
        opts["max_batch"] = a.max_batch
    print(f"torch threads {a.threads or torch.get_num_threads()}, dtype {a.dtype}")

    if a.only == "load":
        load_times(a.step_models.split(","), opts)
        return
    if a.only == "engine":
        gen = load_generator(a.model, **opts)
        assert isinstance(gen, TransformersGenerator)
        run_engine(gen, prompts(a.problems), a)
        asyncio.run(gen.aclose())
        return
    if a.only != "steps":
        gen = load_generator(a.model, **opts)
        assert isinstance(gen, TransformersGenerator)
        chats = prompts(a.problems)
        print(
            f"\n{a.model}: {a.problems} problems x best-of-{a.n}, {a.max_tokens} new tokens, "
            f"T={a.temperature}, top_p={a.top_p}"
        )
        engine = run_engine(gen, chats, a)
        one = run_generate(gen, chats, a, per_problem=False)
        per = run_generate(gen, chats, a, per_problem=True)
        if a.cb:
            cb = run_transformers_cb(gen, chats, a)
            print(f"  engine / transformers generate_batch: {engine / cb:.2f}x tokens/s")
        best = max(one, per)
        print(
            f"  engine / better anchor: {engine / best:.2f}x tokens/s "
            f"(vs one batch {engine / one:.2f}x, vs per-problem {engine / per:.2f}x)"
        )
        asyncio.run(gen.aclose())

    if a.only != "workload":
        flops = matmul_flops(torch.bfloat16)
        print(f"\nbf16 matmul: {flops / 1e9:.0f} GFLOP/s measured")
        for name in a.step_models.split(","):
            gen = load_generator(name, **opts)
            assert isinstance(gen, TransformersGenerator)
            # interleaved, best of five: the machine is shared and timings wander
            greedy, sampled = 0.0, 0.0
            for _ in range(5):
                greedy = max(greedy, step_rate(gen, 16, a.steps, sampled=False))
                sampled = max(sampled, step_rate(gen, 16, a.steps, sampled=True))
            print(
                f"{name}: batch 16 greedy {greedy:.0f} tok/s, sampled (T=0.8, top_p=0.95) "
                f"{sampled:.0f} tok/s: sampling overhead {(greedy / sampled - 1) * 100:+.0f}%"
            )
            at32 = max(step_rate(gen, 32, a.steps, sampled=True) for _ in range(2))
            ceiling = flops / (2 * gen.n_params)
            print(
                f"{name}: batch 32 sampled {at32:.0f} tok/s = {at32 / ceiling * 100:.0f}% of the "
                f"ceiling {ceiling:.0f} tok/s ({gen.n_params / 1e6:.0f}M parameters)"
            )
            asyncio.run(gen.aclose())


if __name__ == "__main__":
    main()
