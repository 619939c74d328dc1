"""GPU check and benchmark of the batching engine: correctness and ratios, in one short run.

Builds random-weight Llamas from a config (SmolLM2-135M's shape, and a Llama-3.2-1B-like
shape: hidden 2048, 16 layers, 32 heads, 8 KV heads, MLP 8192) with SmolLM2's tokenizer,
saves each to a temporary directory and loads it through testtime's own loader
(`load_generator(dir, device=..., dtype=...)`), as a user would. Nothing is downloaded.
The LM head is untied and drawn so the logits are about as peaked as a trained model's
(std 6): with the default init every next-token distribution is nearly uniform, a top-p
nucleus holds most of the vocabulary, and sampling would take a path a real model almost
never takes (a tied, scaled embedding instead makes the model repeat its input token). The
input embedding is drawn at std 1, so a context is not washed out by 16-30 random layers.

It checks, on the device: the engine's greedy tokens against `model.generate`'s (bf16 and
fp32; at a bf16 divergence, the reference's top-2 logit gap), seeded sampling reproduced
alone and under load, n > 1, stop strings, logprobs against the reference's, and the memory
ceiling against the device's memory. It measures, side by side: the engine against one
padded `generate` batch on 16 problems x best-of-8 x 128 new tokens (EOS ignored by both,
so every row is 128 tokens; the prefix cache is cleared before each run), decode tokens/s
at batch 32/128/256 of the 1B shape against the bf16 matmul ceiling, and load times.
It profiles (torch.profiler, CPU + CUDA) 10 engine decode steps of the 1B shape at batch 128:
wall and GPU-busy ms per step, the step's phases, top host ops and kernels, and every
host<->device sync with the testtime function it comes from (`--only check` runs just this
and the small shape's memory ceiling).
Each section reports its own failure; a time guard skips what no longer fits.

    python bench/gpu.py                          # CUDA; stops itself at --budget (330 s)
    python bench/gpu.py --only small             # one shape (a shorter rerun)
    python bench/gpu.py --only check --budget 150  # memory ceiling + decode-step profile
    python bench/gpu.py --device cpu --tiny      # every code path on tiny shapes, CPU
    python bench/gpu.py --save-tokenizer         # copy SmolLM2's tokenizer into .gpu/ once

The report goes to stdout and, when $OUT is set, to $OUT/gpu.txt as it is written.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without installing

from testtime.generators.environment import quiet_threads  # noqa: E402

quiet_threads()  # before torch is first imported

TOKENIZER_DIR = ROOT / ".gpu" / "smollm2-tokenizer"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
SHAPES: dict[str, dict[str, Any]] = {
    "smollm2-135m-shape": dict(
        hidden_size=576,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        head_dim=64,
        intermediate_size=1536,
        rope_theta=100000.0,
    ),
    "llama-1b-shape": dict(
        hidden_size=2048,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=64,
        intermediate_size=8192,
        rope_theta=500000.0,
    ),
}
TINY: dict[str, dict[str, Any]] = {
    "tiny-a": dict(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        intermediate_size=128,
        rope_theta=100000.0,
    ),
    "tiny-b": dict(
        hidden_size=96,
        num_hidden_layers=3,
        num_attention_heads=6,
        num_key_value_heads=2,
        head_dim=16,
        intermediate_size=192,
        rope_theta=500000.0,
    ),
}
LOGIT_STD = 6.0  # the logits' std (peaked like a trained model's: top-1 p ~0.3 at T=0.8)
EMBED_STD = 1.0  # the input embedding's std


# -- the report -------------------------------------------------------------------------------
class Report:
    """Prints each line and appends it to $OUT/gpu.txt at once, so a killed run keeps it."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        if path is not None:
            path.write_text("")

        self.section = ""
        self.summary: list[str] = []

    def __call__(self, text: str = "", key: bool = False) -> None:
        """One line of the report; a key line is repeated in the summary at the end."""
        print(text, flush=True)
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(text + "\n")
        if key:
            self.summary.append(f"{self.section}: {text.strip()}")


class Guard:
    """The run's time budget: sections that no longer fit are skipped; SIGALRM at the end
    interrupts a section that overruns (it reports the interruption like any failure)."""

    def __init__(self, budget: float, scale: float = 1.0) -> None:
        self.start = time.perf_counter()
        self.budget = budget
        self.scale = scale  # sections' time estimates are for the full run; tiny ones scale
        if hasattr(signal, "SIGALRM"):
            signal.signal(signal.SIGALRM, self._alarm)
            signal.alarm(max(1, int(budget)))

    @staticmethod
    def _alarm(signum: int, frame: Any) -> None:
        raise TimeoutError("the time guard stopped this section (budget spent)")

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.budget - self.elapsed()


def section(
    say: Report, guard: Guard, name: str, need_s: float, fn: Callable[[], Any]
) -> Any | None:
    """Run one section; its exception is printed, never raised; skipped if it cannot fit."""
    if guard.left() < need_s * guard.scale:
        say(
            f"\n## {name}: SKIPPED by the time guard ({guard.left():.0f} s left, needs ~{need_s} s)"
        )
        return None
    say.section = name
    say(f"\n## {name}  (t={guard.elapsed():.0f} s)")
    try:
        return fn()
    except BaseException as exc:  # a failing section must not lose the others
        if isinstance(exc, KeyboardInterrupt):
            raise
        say(f"  FAILED: {type(exc).__name__}: {str(exc).strip()[:500]}", key=True)
        for line in traceback.format_exc().strip().splitlines()[-8:]:
            say(f"    | {line}")
        return None


# -- prompts and models -----------------------------------------------------------------------
def arithmetic_chats(count: int, seed: int = 0) -> list[tuple[Any, ...]]:
    """Chats asking arithmetic questions of varying length (reasoning-gym's basic_arithmetic
    style, generated here so the device needs no reasoning-gym)."""
    from testtime.core.types import Message

    rng = random.Random(seed)
    out = []
    for _ in range(count):
        terms = [str(rng.randint(1, 999)) for _ in range(rng.randint(2, 6))]
        expr = terms[0] + "".join(f" {rng.choice('+-*')} {t}" for t in terms[1:])
        q = f"Calculate {expr}. Give the final answer on the last line."
        out.append((Message("user", q),))
    return out


def save_tokenizer(target: Path) -> None:
    """Copy SmolLM2's tokenizer files (a few MB) out of the converted model in the cache."""
    from testtime.generators.models import resolve

    source = resolve("smollm2-135m")
    target.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy2(source / name, target / name)
    print(f"copied {', '.join(TOKENIZER_FILES)} from {source} to {target}")


def build_model(shape: dict[str, Any], tokenizer: Path, out: Path, device: str) -> float:
    """A random-weight Llama of `shape` saved (bf16) with the tokenizer; returns its
    parameter count. Initialised on `device` (fast on a GPU), logits scaled to LOGIT_STD."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    config = LlamaConfig(
        vocab_size=49152,
        max_position_embeddings=8192,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,  # a separate LM head, scaled: see LOGIT_STD
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        hidden_act="silu",
        **{k: v for k, v in shape.items() if k != "rope_theta"},
        rope_parameters={"rope_type": "default", "rope_theta": shape["rope_theta"]},
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    with torch.no_grad():
        # token identity survives the random layers (at std 0.02 every context collapses to
        # about the same last hidden state, and to one next-token distribution)
        model.get_input_embeddings().weight.normal_(0.0, EMBED_STD)
        # the final norm's output has RMS ~1, so this is the logits' std
        model.lm_head.weight.normal_(0.0, LOGIT_STD / math.sqrt(config.hidden_size))
    model = model.to(torch.bfloat16)
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    model.save_pretrained(str(out))
    for name in TOKENIZER_FILES:
        shutil.copy2(tokenizer / name, out / name)
    n = float(sum(p.numel() for p in model.parameters()))
    del model
    empty_cache()
    return n


def peakedness(gen: Any, chats: list[Any], steps: int = 16) -> str:
    """How peaked the next-token distributions are along greedy continuations (T=0.8): the
    mean top-1 probability, and how often the 0.95 nucleus lies within the sampler's first
    64 candidates (its fast path)."""
    import torch

    top1, inside, total = 0.0, 0, 0
    for chat in chats:
        _, logits = reference(gen, chat, steps)
        for lg in logits:
            vals = torch.softmax(lg / 0.8, -1).topk(64).values
            top1 += float(vals[0])
            inside += float(vals.sum()) >= 0.95
            total += 1
    return (
        f"next-token top-1 probability {top1 / total:.2f} on average (T=0.8) over {total} "
        f"greedy steps; the 0.95 nucleus within 64 candidates at {inside / total:.0%} of them"
    )


def empty_cache() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def sync() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def gather(gen: Any, requests: list[Any]) -> list[Any]:
    """Every request at once through the engine (as concurrent strategies would send them)."""

    async def go() -> list[Any]:
        return list(await asyncio.gather(*(gen.generate(r) for r in requests)))

    return asyncio.run(go())


def close(gen: Any) -> None:
    asyncio.run(gen.aclose())


# -- 1. correctness ---------------------------------------------------------------------------
def reference(gen: Any, chat: Any, max_tokens: int) -> tuple[list[int], list[Any]]:
    """`model.generate` greedy on the engine's own prompt ids, batch 1 (no padding): the
    generated ids (up to and including an EOS) and each step's logits."""
    import torch

    from testtime.generators.attention import stock_attention

    ids = list(gen._encode(chat, ""))
    x = torch.tensor([ids], device=gen.engine.runner.device)
    eos = sorted(gen.engine.eos)
    with torch.inference_mode(), stock_attention(gen.model):
        res = gen.model.generate(
            x,
            attention_mask=torch.ones_like(x),
            do_sample=False,
            max_new_tokens=max_tokens,
            eos_token_id=eos,
            pad_token_id=eos[0],
            output_logits=True,
            return_dict_in_generate=True,
        )
    out = res.sequences[0, len(ids) :].tolist()
    end = next((i + 1 for i, t in enumerate(out) if t in gen.engine.eos), len(out))
    return out[:end], [step[0].float() for step in res.logits[:end]]


def greedy_check(say: Report, gen: Any, chats: list[Any], max_tokens: int, label: str) -> bool:
    """Engine greedy == generate greedy, token for token; else where and how close a tie."""
    import torch

    from testtime.core.types import Request

    reqs = [Request(c, max_tokens=max_tokens, temperature=0.0, logprobs=True) for c in chats]
    outs = gather(gen, reqs)
    all_equal, worst_lp = True, 0.0
    for k, (chat, out) in enumerate(zip(chats, outs, strict=True)):
        comp = out.completions[0]
        hf, logits = reference(gen, chat, max_tokens)
        hf_text = gen.decode([t for t in hf if t not in gen.engine.eos])
        if comp.text == hf_text and comp.generated_tokens == len(hf):
            logp = [torch.log_softmax(lg, -1)[t].item() for lg, t in zip(logits, hf, strict=False)]
            diffs = [abs(a - b) for a, b in zip(comp.logprobs or (), logp, strict=False)]
            worst_lp = max([worst_lp, *diffs])
            continue
        all_equal = False
        # the first token whose decoded prefix leaves the engine's text
        at = len(hf)
        for i in range(len(hf)):
            if not comp.text.startswith(
                gen.decode([t for t in hf[: i + 1] if t not in gen.engine.eos])
            ):
                at = i
                break
        detail = ""
        if at < len(logits):
            top2 = torch.topk(logits[at], 2).values.tolist()
            gap = top2[0] - top2[1]
            ulp = 2.0 ** (math.floor(math.log2(max(abs(top2[0]), 1e-6))) - 7)  # bf16 spacing
            tie = "a near-tie" if gap <= 4 * ulp else "NOT a near-tie"
            detail = (
                f"; the reference's top-2 logits there differ by {gap:.4f} "
                f"(bf16 spacing at {top2[0]:.2f} is {ulp:.4f}: {tie})"
            )
        say(
            f"  [{label}] prompt {k}: DIVERGES at generated token {at} of {len(hf)} "
            f"(engine {comp.generated_tokens} tokens, finish {comp.finish_reason}){detail}",
            key=True,
        )
        say(f"    engine: {comp.text[:80]!r}")
        say(f"    generate: {hf_text[:80]!r}")
    if all_equal:
        say(
            f"  [{label}] engine greedy == model.generate greedy for {len(chats)} prompts x "
            f"{max_tokens} tokens; logprobs within {worst_lp:.2e} of generate's",
            key=True,
        )
    return all_equal


def feature_checks(say: Report, gen: Any, chats: list[Any], max_tokens: int) -> None:
    """Seeded sampling alone and under load, n > 1, stop strings, logprobs."""
    from testtime.core.types import Request

    chat = chats[0]
    seeded = Request(chat, n=4, max_tokens=max_tokens, temperature=0.8, top_p=0.95, seed=7)
    a = [c.text for c in gather(gen, [seeded])[0].completions]
    b = [c.text for c in gather(gen, [seeded])[0].completions]  # prompt now in the prefix cache
    gen.clear_cache()
    others = [
        Request(c, n=4, max_tokens=max_tokens, temperature=0.8, top_p=0.95, seed=100 + i)
        for i, c in enumerate(chats[1:])
    ]
    loaded = [c.text for c in gather(gen, [seeded, *others])[0].completions]
    say(
        f"  seeded n=4 (T=0.8, top_p=0.95): same seed twice alone -> "
        f"{'SAME' if a == b else 'DIFFERENT'}; beside {len(others)} other requests -> "
        f"{'SAME' if a == loaded else 'DIFFERENT'}; {len(set(a))} distinct texts of 4",
        key=True,
    )
    for name, other in (("twice alone", b), ("under load", loaded)):
        if other != a:
            i = next(i for i in range(4) if a[i] != other[i])
            pos = next(
                (j for j in range(min(len(a[i]), len(other[i]))) if a[i][j] != other[i][j]),
                min(len(a[i]), len(other[i])),
            )
            say(f"    {name}: sample {i} first differs at character {pos}")

    greedy = gather(gen, [Request(c, max_tokens=max_tokens, temperature=0.0) for c in chats])
    texts = [g.completions[0].text for g in greedy]
    k = next((i for i, t in enumerate(texts) if len(t.strip()) >= 8), None)
    if k is None:
        say(f"  stop strings: not checked (every greedy text is too short: {texts[0]!r})", key=True)
    else:
        chat, text = chats[k], texts[k]
        k = len(text) // 2
        stop = text[k : k + 3]
        expect = text[: text.find(stop)]
        got = gather(gen, [Request(chat, max_tokens=max_tokens, temperature=0.0, stop=(stop,))])
        comp = got[0].completions[0]
        ok = comp.finish_reason == "stop" and comp.text == expect
        say(
            f"  stop string {stop!r}: finish {comp.finish_reason}, text cut before it "
            f"{'OK' if ok else 'WRONG'} ({len(comp.text)} chars, expected {len(expect)})",
            key=True,
        )

    lp = gather(
        gen,
        [
            Request(
                chat,
                n=2,
                max_tokens=max_tokens,
                temperature=0.8,
                logprobs=True,
                top_logprobs=3,
                seed=1,
            )
        ],
    )[0]
    good = []
    for c in lp.completions:
        n_tok = c.generated_tokens - (c.finish_reason == "eos")
        lps = c.logprobs or ()
        tops = c.top_logprobs or ()
        good.append(
            len(lps) == n_tok
            and len(tops) == n_tok
            and all(math.isfinite(x) and x <= 1e-6 for x in lps)
            and all(1 <= len(t) <= 3 for t in tops)
        )
    say(
        f"  n=2 with logprobs + top_logprobs=3: {len(lp.completions)} completions, "
        f"logprobs present and consistent: {'OK' if all(good) else 'WRONG'} "
        f"(tokens {[c.generated_tokens for c in lp.completions]})",
        key=True,
    )


def memory_check(say: Report, gen: Any) -> None:
    """The engine's ceiling against the device's memory: on a GPU it is 80% of what the device
    held free after the weights (`memory.DEVICE_SHARE`), so a request whose KV takes 60% of
    the free memory must be admitted, and the ceiling must stay under what is free."""
    import torch

    from testtime.core.errors import TesttimeError
    from testtime.core.types import Message, Request
    from testtime.generators import memory
    from testtime.generators.sequence import Job

    eng = gen.engine
    on_gpu = eng.runner.device.type == "cuda"
    if os.environ.get(memory.ENV):
        source = f"from ${memory.ENV}={os.environ[memory.ENV]}"
    elif on_gpu:
        source = f"= {memory.DEVICE_SHARE:.0%} of the GPU's free memory at load"
    else:
        source = f"= {memory.SHARE:.0%} of host memory {memory.show(memory.machine_bytes())}"
    say(
        f"  engine ceiling {memory.show(eng.max_memory)} (batch {memory.show(eng.batch_memory)}) "
        f"{source}; KV {eng.runner.token_bytes} bytes per token"
    )
    if not on_gpu:
        return
    free, total = torch.cuda.mem_get_info(eng.runner.device)
    say(
        f"  GPU memory: {memory.show(free)} free of {memory.show(total)}; the ceiling is "
        f"{eng.max_memory / free:.0%} of the free memory now"
    )
    # a request whose KV takes 60% of the GPU's free memory: a GPU this size can hold it
    width = 4096
    per_row = (width + 1) * eng.runner.token_bytes
    n = max(2, int(0.6 * free // per_row))
    prompt = list(gen._encode((Message("user", "hi"),), ""))
    req = Request((Message("user", "hi"),), n=n, max_tokens=width - len(prompt))
    admitted = True
    try:
        eng._check_fits(Job(req, prompt, Future(), req.max_tokens))
        verdict = "admitted"
    except TesttimeError as exc:
        admitted, verdict = False, f"REFUSED ({str(exc)[:240]})"
    say(
        f"  a request of n={n} x {width} tokens ({memory.show(n * per_row)} of KV, 60% of the "
        f"free GPU memory): {verdict}",
        key=True,
    )
    if eng.max_memory > free:
        say(
            f"  FINDING: the ceiling ({memory.show(eng.max_memory)}) exceeds the GPU's free "
            "memory: admission would not stop a CUDA out-of-memory",
            key=True,
        )
    elif not admitted:
        say(
            "  FINDING: a request the GPU can hold was refused: the ceiling admits only "
            f"{eng.max_memory / free:.0%} of what the GPU holds free (expected "
            f"~{memory.DEVICE_SHARE:.0%})",
            key=True,
        )
    else:
        say(
            f"  OK: the ceiling follows the GPU: it admits {eng.max_memory / free:.0%} of the "
            "free memory and stays under it",
            key=True,
        )


# -- 2. where a decode step's time goes -------------------------------------------------------
SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
ITEM_OP = "aten::_local_scalar_dense"  # .item(), int(t), float(t): a device->host read


def labelled(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` inside a profiler range called `name` (phases show up in the profile)."""
    from torch.profiler import record_function

    def call(*args: Any, **kwargs: Any) -> Any:
        with record_function(name):
            return fn(*args, **kwargs)

    return call


PHASES = ("engine step", "runner.forward", "model forward", "engine._accept", "sampler")


def label_phases(eng: Any) -> Callable[[], None]:
    """Wrap the engine's step phases in profiler ranges (instance attributes shadow the
    methods); returns the function that takes the wrappers off again."""
    targets = [
        (eng.runner, "forward", "runner.forward"),
        (eng.runner.model, "forward", "model forward"),
        (eng, "_accept", "engine._accept"),
        (eng.sampler, "_sample_chunk", "sampler"),
    ]
    for obj, attr, name in targets:
        setattr(obj, attr, labelled(name, getattr(obj, attr)))

    def undo() -> None:
        for obj, attr, _ in targets:
            if attr in vars(obj):
                delattr(obj, attr)

    return undo


def on_host(event: Any) -> bool:
    """Whether a profiler event ran on the host (an op, a CUDA runtime call, a range)."""
    from torch.autograd import DeviceType  # type: ignore[attr-defined]

    return bool(event.device_type == DeviceType.CPU)


def kernel_intervals(events: Any) -> list[tuple[float, float, str]]:
    """(start us, end us, name) of every device-side event (kernels, memcpy, memset)."""
    return [
        (e.time_range.start, e.time_range.end, e.name)
        for e in events
        if not on_host(e) and e.name not in PHASES  # not the range markers
    ]


def busy_us(intervals: list[tuple[float, float, str]]) -> float:
    """The union of the intervals' lengths: how long the device was doing anything."""
    total, end = 0.0, -math.inf
    for a, b, _ in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def sync_sources(events: Any) -> dict[str, int]:
    """Where the host waits for the device: each CUDA sync call (every .tolist(), .item(),
    int(t) and blocking host<->device copy makes one), else each scalar read (`ITEM_OP`),
    keyed by the Python call that led to it and the innermost testtime function around it
    (from the Python tracer's frames, or an op's recorded stack in older torch)."""
    import re

    cpu = [e for e in events if on_host(e)]
    picked = [e for e in cpu if e.name.startswith(SYNC_CALLS)]
    picked = picked or [e for e in cpu if e.name == ITEM_OP]
    counts: dict[str, int] = {}
    for e in picked:
        call, where = "", "(no testtime frame recorded)"
        up = e.cpu_parent or enclosing(e, cpu)
        while up is not None:
            if not call and up.name.startswith("<built-in"):
                call = re.sub(r" of .*>$", ">", up.name) + " "
            frames = [up.name, *(up.stack or [])]
            mine = [f for f in frames if "testtime/" in f or "gpu.py" in f]
            if mine:
                where = mine[0].split("src/")[-1]
                break
            up = up.cpu_parent
        key = f"{e.name} <- {call}in {where}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def enclosing(e: Any, cpu: list[Any]) -> Any:
    """The innermost host event on `e`'s thread whose time range holds `e` (for events the
    profiler left out of its tree)."""
    best = None
    for o in cpu:
        if o is e or o.thread != e.thread or o.name.startswith(SYNC_CALLS):
            continue
        r = o.time_range
        inside = r.start <= e.time_range.start and e.time_range.end <= r.end
        if inside and (best is None or r.start >= best.time_range.start):
            best = o
    return best


def profile_decode(say: Report, gen: Any, rows: int, steps: int, on_cuda: bool) -> None:
    """torch.profiler over `steps` engine decode steps at `rows` live rows (problems of
    best-of-8, T=0.8, top_p=0.95, EOS ignored): wall and GPU-busy time per step, the step's
    phases, the top CPU ops and CUDA kernels, and the host<->device syncs with their source.
    The steps run in this thread through `Engine._step`, as the worker runs them. A profile
    with CUDA activity that fails is taken again with the CPU's alone."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from testtime.core.types import Request
    from testtime.generators.sequence import Job

    eng = gen.engine
    if eng.active or eng.prefilling or eng.waiting:
        raise RuntimeError("the engine is busy; the profile needs it idle")
    n, warm, stack_steps = min(8, rows), 3, 2
    max_tokens = warm + 3 * steps + stack_steps + 2  # room for a CPU-only retake
    jobs = []
    for i, chat in enumerate(arithmetic_chats(-(-rows // n), seed=11)):
        k = min(n, rows - i * n)
        req = Request(chat, n=k, max_tokens=max_tokens, temperature=0.8, top_p=0.95, seed=i)
        jobs.append(Job(req, list(gen._encode(chat, "")), Future(), max_tokens))
    acts = [ProfilerActivity.CPU]
    offered = torch.profiler.supported_activities()  # type: ignore[no-untyped-call]
    if on_cuda and ProfilerActivity.CUDA in offered:
        acts.append(ProfilerActivity.CUDA)
    elif on_cuda:
        say("  NOTE: torch.profiler offers no CUDA activity here: CPU side only")

    def profiled(activities: list[Any]) -> tuple[Any, float]:
        with profile(activities=activities) as prof:
            start = time.perf_counter()
            for _ in range(steps):
                labelled("engine step", eng._step)()
            sync()
            ms = (time.perf_counter() - start) * 1e3 / steps
        return prof, ms

    saved_eos = eng.eos
    eng.eos = frozenset()  # every row lives through the profile
    undo = label_phases(eng)
    gen.clear_cache()
    stacked = None
    try:
        with torch.inference_mode():
            eng.waiting.extend(jobs)
            for _ in range(50):  # admission, prefill and the first decode steps
                if not eng.waiting and not eng.prefilling and eng.steps and warm <= 0:
                    break
                eng._step()
                warm -= 1
            if len(eng.active) != rows:
                raise RuntimeError(f"{len(eng.active)} rows live after warm-up, wanted {rows}")
            sync()
            start = time.perf_counter()
            for _ in range(steps):
                eng._step()
            sync()
            plain_ms = (time.perf_counter() - start) * 1e3 / steps
            try:
                prof, prof_ms = profiled(acts)
            except Exception as exc:
                if len(acts) == 1:
                    raise
                say(f"  NOTE: the profile with CUDA activity failed ({exc!r}); CPU side only")
                acts = acts[:1]
                prof, prof_ms = profiled(acts)
            try:
                with profile(activities=acts, with_stack=True) as stacked:
                    for _ in range(stack_steps):
                        eng._step()
                    sync()
            except Exception as exc:
                say(f"  NOTE: the profile with stacks failed ({exc!r}): no sync sources")
                stacked = None
            while eng.active or eng.prefilling:  # the last tokens; the requests finish
                eng._step()
    finally:
        undo()
        eng.eos = saved_eos
        if eng.active or eng.prefilling or eng.waiting:
            eng._fail_all(RuntimeError("the profile stopped early"))
        gen.clear_cache()

    say(
        f"  {rows} live rows, {steps} engine decode steps: wall {plain_ms:.2f} ms/step "
        f"({rows / plain_ms * 1e3:.0f} tok/s) without the profiler, {prof_ms:.2f} ms/step under it"
        f" (activities: {', '.join(a.name for a in acts)})",
        key=True,
    )
    events = prof.events()
    parts: list[tuple[str, Callable[[], None]]] = [
        ("GPU busy", lambda: report_busy(say, events, steps, plain_ms, prof_ms)),
        ("phases", lambda: report_phases(say, events, steps)),
        ("syncs", lambda: report_syncs(say, events, steps)),
        ("sync sources", lambda: report_sources(say, stacked, stack_steps)),
        ("top ops", lambda: report_top(say, prof, events, steps, prof_ms)),
    ]
    for name, part in parts:
        try:
            part()
        except Exception as exc:  # one part's failure keeps the others
            say(f"  ({name}: could not be read from this profile: {exc!r})")


def report_busy(say: Report, events: Any, steps: int, plain_ms: float, prof_ms: float) -> None:
    device = kernel_intervals(events)
    if not device:
        say("  no device activity recorded (CPU device, or no CUDA activity): CPU side only")
        return
    busy = busy_us(device) / 1e3 / steps
    summed = sum(b - a for a, b, _ in device) / 1e3 / steps
    say(
        f"  GPU busy {busy:.2f} ms/step (union of kernel/memcpy intervals; sum {summed:.2f}) "
        f"= {busy / prof_ms:.0%} of the profiled wall, {busy / plain_ms:.0%} of the plain "
        "wall: the rest the GPU waits for the host",
        key=True,
    )


def report_phases(say: Report, events: Any, steps: int) -> None:
    """The step's phases: inclusive host time (the host thread's wall) per step."""
    incl: dict[str, float] = {}
    for e in events:
        if e.name in PHASES and on_host(e):
            incl[e.name] = incl.get(e.name, 0.0) + e.cpu_time_total / 1e3 / steps
    step, fwd, model, acc, smp = (incl.get(k, 0.0) for k in PHASES)
    say(
        f"  host time per step {step:.2f} ms = runner.forward {fwd:.2f} (HF model forward "
        f"{model:.2f}, runner's own {fwd - model:.2f}) + engine._accept {acc:.2f} (sampler "
        f"{smp:.2f}, tokens/stop strings/release {acc - smp:.2f}) + admission etc. "
        f"{step - fwd - acc:.2f}",
        key=True,
    )


def report_syncs(say: Report, events: Any, steps: int) -> None:
    cpu = [e for e in events if on_host(e)]
    per = {name: sum(e.name.startswith(name) for e in cpu) / steps for name in SYNC_CALLS}
    per[ITEM_OP] = sum(e.name == ITEM_OP for e in cpu) / steps
    device = kernel_intervals(events)
    dtoh = sum("DtoH" in name for _, _, name in device) / steps
    htod = sum("HtoD" in name for _, _, name in device) / steps
    wait = sum(e.cpu_time_total for e in cpu if e.name.startswith(SYNC_CALLS)) / 1e3 / steps
    say(
        f"  syncs per step: {per['cudaStreamSynchronize']:.1f} cudaStreamSynchronize "
        f"({wait:.2f} ms waiting in sync calls), {per['cudaDeviceSynchronize']:.1f} "
        f"cudaDeviceSynchronize, {per['cudaEventSynchronize']:.1f} cudaEventSynchronize; "
        f"memcpy DtoH {dtoh:.1f}, HtoD {htod:.1f}; scalar reads ({ITEM_OP}) {per[ITEM_OP]:.1f}",
        key=True,
    )
    calls: dict[str, int] = {}
    for e in cpu:
        if e.name.startswith("cu") and ("Sync" in e.name or "Memcpy" in e.name):
            calls[e.name] = calls.get(e.name, 0) + 1
    if calls:
        seen = ", ".join(f"{k} {v / steps:.1f}" for k, v in sorted(calls.items()))
        say(f"    runtime calls per step: {seen}")


def report_sources(say: Report, stacked: Any, stack_steps: int) -> None:
    if stacked is None:
        return
    say(f"  syncs by source (with_stack, {stack_steps} steps; count per step):")
    for where, count in sorted(sync_sources(stacked.events()).items(), key=lambda kv: -kv[1]):
        say(f"    {count / stack_steps:5.1f}  {where}")


def report_top(say: Report, prof: Any, events: Any, steps: int, prof_ms: float) -> None:
    """The top 12 host-side ops by self CPU time and the top 8 device kernels by time."""
    host = [a for a in prof.key_averages() if a.key not in PHASES]
    host = [a for a in host if on_host(a)]
    say(f"  top 12 host-side ops by self CPU time (ms/step, calls/step; step {prof_ms:.2f} ms):")
    for a in sorted(host, key=lambda a: -a.self_cpu_time_total)[:12]:
        ms = a.self_cpu_time_total / 1e3 / steps
        say(f"    {ms:7.3f} ms {a.count / steps:6.1f}x  {a.key[:80]}")
    by_name: dict[str, list[float]] = {}
    for a, b, name in kernel_intervals(events):
        by_name.setdefault(name, []).append(b - a)
    if by_name:
        say("  top 8 CUDA kernels by time (ms/step, calls/step):")
        for name, times in sorted(by_name.items(), key=lambda kv: -sum(kv[1]))[:8]:
            say(f"    {sum(times) / 1e3 / steps:7.3f} ms {len(times) / steps:6.1f}x  {name[:90]}")


# -- 3. benchmarks ----------------------------------------------------------------------------
def run_engine(gen: Any, chats: list[Any], n: int, max_tokens: int) -> tuple[int, float, int]:
    """Tokens, seconds and decode steps of the sampled workload through the engine."""
    from testtime.core.types import Request

    gen.clear_cache()  # every run prefills its prompts, as generate does
    reqs = [
        Request(c, n=n, max_tokens=max_tokens, temperature=0.8, top_p=0.95, seed=i)
        for i, c in enumerate(chats)
    ]
    steps = gen.engine.steps
    sync()
    start = time.perf_counter()
    outs = gather(gen, reqs)
    sync()
    seconds = time.perf_counter() - start
    return sum(o.cost.generated_tokens for o in outs), seconds, gen.engine.steps - steps


def run_generate(gen: Any, chats: list[Any], n: int, max_tokens: int) -> tuple[int, float]:
    """Tokens and seconds of the same workload as one left-padded `generate` batch."""
    import torch

    from testtime.generators.attention import stock_attention

    tok, model = gen.tokenizer, gen.model
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    eos = sorted(gen.engine.eos)
    texts = [gen.prompt_text(c) for c in chats]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=not gen.chat)
    enc = enc.to(gen.engine.runner.device)
    sync()
    start = time.perf_counter()
    with torch.inference_mode(), stock_attention(model):
        out = model.generate(
            **enc,
            do_sample=True,
            temperature=0.8,
            top_p=0.95,
            top_k=0,
            max_new_tokens=max_tokens,
            min_new_tokens=max_tokens,  # EOS suppressed: every row runs max_tokens, as ours
            num_return_sequences=n,
            eos_token_id=eos,
            pad_token_id=tok.pad_token_id,
        )
    sync()
    seconds = time.perf_counter() - start
    new = out[:, enc["input_ids"].shape[1] :]
    return int(new.numel()), seconds


def workload(say: Report, gen: Any, problems: int, n: int, max_tokens: int, reps: int) -> None:
    """The engine against one padded generate batch, interleaved, warm-up then best of reps."""
    chats = arithmetic_chats(problems)
    saved = gen.engine.eos
    gen.engine.eos = frozenset()  # EOS ignored by both: every row is max_tokens long
    try:
        best_e: tuple[int, float, int] | None = None
        best_g: tuple[int, float] | None = None
        for rep in range(reps + 1):
            e = run_engine(gen, chats, n, max_tokens)
            g = run_generate(gen, chats, n, max_tokens)
            if rep == 0:
                say(f"  warm-up: engine {e[1]:.2f} s, generate {g[1]:.2f} s")
                continue
            best_e = e if best_e is None or e[0] / e[1] > best_e[0] / best_e[1] else best_e
            best_g = g if best_g is None or g[0] / g[1] > best_g[0] / best_g[1] else best_g
    finally:
        gen.engine.eos = saved
    assert best_e is not None and best_g is not None
    rate_e, rate_g = best_e[0] / best_e[1], best_g[0] / best_g[1]
    say(
        f"  {problems} problems x best-of-{n} x {max_tokens} tokens, T=0.8 top_p=0.95, "
        f"best of {reps}:"
    )
    say(
        f"    engine              {best_e[1]:6.2f} s {best_e[0]:6d} tokens {rate_e:9.0f} tok/s "
        f"({best_e[2]} decode steps, {best_e[1] / max(1, best_e[2]) * 1e3:.1f} ms/step incl. "
        "prefill)"
    )
    say(
        f"    generate, 1 batch   {best_g[1]:6.2f} s {best_g[0]:6d} tokens {rate_g:9.0f} tok/s "
        f"({problems * n} rows)"
    )
    say(f"    engine / generate: {rate_e / rate_g:.2f}x tokens/s", key=True)
    if best_e[0] != best_g[0]:
        say(f"    NOTE: token counts differ ({best_e[0]} vs {best_g[0]})")


def step_rate(gen: Any, batch: int, steps: int) -> float:
    """Decode tokens/s with `batch` live rows: the runner's forward + the engine's sampler
    (T=0.8, top_p=0.95), without admission or bookkeeping (EOS ignored)."""
    import torch

    from testtime.generators.sampling import RowParams, Sampler

    runner, sampler = gen.engine.runner, Sampler()
    encoded = [list(gen._encode(c, "")) for c in arithmetic_chats(batch, seed=1)]
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
        logits = runner.forward(cache, ids.to(dev), pos.to(dev), prefill=True)
        lengths = torch.tensor([len(p) for p in encoded], device=dev)
        start = 0.0
        for step in range(steps + 2):
            if step == 2:  # two warm-up steps
                sync()
                start = time.perf_counter()
            rows = [RowParams(0.8, 0.95, r.random()) for r in rngs]
            toks = torch.tensor(sampler(logits, rows), device=dev)[:, None]
            logits = runner.forward(cache, toks, lengths[:, None])
            lengths += 1
        sync()
    return batch * steps / (time.perf_counter() - start)


def matmul_flops(device: str, size: int, reps: int = 10) -> float:
    import torch

    a = torch.randn(size, size, dtype=torch.bfloat16, device=device)
    b = torch.randn(size, size, dtype=torch.bfloat16, device=device)
    for _ in range(3):
        torch.matmul(a, b)
    sync()
    start = time.perf_counter()
    for _ in range(reps):
        torch.matmul(a, b)
    sync()
    return 2 * size**3 * reps / (time.perf_counter() - start)


# -- the run ----------------------------------------------------------------------------------
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="tiny shapes and workload (CPU test)")
    p.add_argument("--budget", type=float, default=330.0, help="seconds before the time guard")
    p.add_argument("--tokenizer", type=Path, default=TOKENIZER_DIR)
    p.add_argument("--save-tokenizer", action="store_true", help=f"fill {TOKENIZER_DIR}, exit")
    p.add_argument(
        "--only",
        choices=["small", "big", "check"],
        help="one model shape (a shorter rerun); check: the small shape's memory ceiling and "
        "the big shape's decode profile",
    )
    a = p.parse_args()
    if a.save_tokenizer:
        save_tokenizer(a.tokenizer)
        return
    out = os.environ.get("OUT")
    say = Report(Path(out) / "gpu.txt" if out else None)
    guard = Guard(a.budget, 0.1 if a.tiny else 1.0)
    shapes = TINY if a.tiny else SHAPES
    problems, n, max_tokens, reps = (4, 2, 16, 2) if a.tiny else (16, 8, 128, 3)
    greedy_tokens, batches, steps = (12, (4, 8, 16), 6) if a.tiny else (48, (32, 128, 256), 32)
    mm_size = 256 if a.tiny else 8192
    profile_rows, profile_steps = (16, 10) if a.tiny else (128, 10)
    check = a.only == "check"
    state: dict[str, Any] = {}

    def environment() -> None:
        start = time.perf_counter()
        import torch

        t_torch = time.perf_counter() - start
        import huggingface_hub
        import tokenizers
        import transformers

        t_tf = time.perf_counter() - start - t_torch
        say(
            f"  python {sys.version.split()[0]}, torch {torch.__version__}, transformers "
            f"{transformers.__version__}, tokenizers {tokenizers.__version__}, huggingface_hub "
            f"{huggingface_hub.__version__}"
        )
        say(f"  import torch {t_torch:.1f} s, transformers+tokenizers {t_tf:.1f} s")
        if a.device.startswith("cuda"):
            start = time.perf_counter()
            torch.cuda.init()
            torch.empty(1, device=a.device)
            name = torch.cuda.get_device_name(a.device)
            free, total = torch.cuda.mem_get_info(a.device)
            say(
                f"  {name}: {free / 2**30:.0f} GiB free of {total / 2**30:.0f} GiB; "
                f"CUDA init {time.perf_counter() - start:.1f} s"
            )
        if not a.tokenizer.is_dir():
            raise FileNotFoundError(
                f"no tokenizer at {a.tokenizer}; run `python bench/gpu.py --save-tokenizer` here"
            )

    def ceiling() -> None:
        state["flops"] = flops = matmul_flops(a.device, mm_size)
        say(f"  bf16 matmul {mm_size}^3: {flops / 1e12:.1f} TFLOP/s", key=True)

    def build(name: str) -> None:
        tmp = Path(tempfile.mkdtemp(prefix=f"gpu-{name}-"))
        state.setdefault("dirs", []).append(tmp)
        start = time.perf_counter()
        n_params = build_model(shapes[name], a.tokenizer, tmp, a.device)
        say(
            f"  {name}: {n_params / 1e6:.0f}M parameters built and saved in "
            f"{time.perf_counter() - start:.1f} s"
        )
        start = time.perf_counter()
        from testtime.generators.models import load_generator

        gen = load_generator(str(tmp), device=a.device, dtype="bf16", max_batch=256)
        loaded = time.perf_counter() - start
        from testtime.core.types import Request

        start = time.perf_counter()
        gather(gen, [Request(arithmetic_chats(1)[0], max_tokens=1, temperature=0.0)])
        first = time.perf_counter() - start
        say(
            f"  first load through load_generator({a.device}, bf16): {loaded:.1f} s; "
            f"first request (1 token) {first:.2f} s; runs on {gen.engine.runner.device}, "
            f"{gen.engine.runner.dtype}, attention {gen.model.config._attn_implementation}",
            key=True,
        )
        state[name] = (gen, tmp)
        say(f"  {peakedness(gen, arithmetic_chats(4, seed=9))}")

    def correctness(name: str) -> None:
        gen = state[name][0]
        chats = arithmetic_chats(5, seed=3)
        greedy_check(say, gen, chats, greedy_tokens, f"{name} bf16")

    def correctness_fp32(name: str) -> None:
        from testtime.generators.models import load_generator

        _, tmp = state[name]
        gen = load_generator(str(tmp), device=a.device, dtype="fp32")
        try:
            greedy_check(say, gen, arithmetic_chats(5, seed=3), greedy_tokens, f"{name} fp32")
        finally:
            close(gen)
            del gen
            empty_cache()

    def features(name: str) -> None:
        feature_checks(say, state[name][0], arithmetic_chats(8, seed=5), greedy_tokens)

    def mem(name: str) -> None:
        memory_check(say, state[name][0])

    def bench(name: str) -> None:
        workload(say, state[name][0], problems, n, max_tokens, reps)

    def decode_rates(name: str) -> None:
        gen = state[name][0]
        ceiling = state.get("flops", 0.0) / (2 * gen.n_params)
        for batch in batches:
            rate = max(step_rate(gen, batch, steps) for _ in range(reps))
            share = f" = {rate / ceiling:.1%} of the ceiling {ceiling:.0f} tok/s" if ceiling else ""
            say(f"  batch {batch:4d}: {rate:9.0f} tok/s decode (sampled){share}", key=True)

    def profile_steps_of(name: str) -> None:
        on_cuda = a.device.startswith("cuda")
        profile_decode(say, state[name][0], profile_rows, profile_steps, on_cuda)

    def release(name: str) -> None:
        if name in state:
            close(state.pop(name)[0])
        empty_cache()

    small, big = list(shapes)
    say(
        f"# bench/gpu.py on {a.device}{' (tiny shapes)' if a.tiny else ''}, budget {a.budget:.0f} s"
    )
    section(say, guard, "environment", 5, environment)
    if not check:
        section(say, guard, "bf16 matmul ceiling", 5, ceiling)
    if a.only != "big":
        section(say, guard, f"{small}: build and first load", 20, lambda: build(small))
    if small in state and check:
        section(say, guard, f"{small}: memory ceiling", 2, lambda: mem(small))
    elif small in state:
        section(
            say, guard, f"{small}: greedy vs model.generate (bf16)", 10, lambda: correctness(small)
        )
        section(
            say,
            guard,
            f"{small}: greedy vs model.generate (fp32)",
            15,
            lambda: correctness_fp32(small),
        )
        section(
            say,
            guard,
            f"{small}: seeded sampling, n>1, stop, logprobs",
            10,
            lambda: features(small),
        )
        section(say, guard, f"{small}: memory ceiling", 2, lambda: mem(small))
        section(say, guard, f"{small}: workload, engine vs generate", 30, lambda: bench(small))
    if small in state:
        section(say, guard, f"{small}: release", -1e9, lambda: release(small))
    if a.only != "small":
        section(say, guard, f"{big}: build and first load", 40, lambda: build(big))
    profile_name = f"{big}: profile of {profile_steps} decode steps at batch {profile_rows}"
    if big in state and check:
        section(say, guard, profile_name, 20, lambda: profile_steps_of(big))
    elif big in state:
        section(say, guard, f"{big}: greedy vs model.generate (bf16)", 10, lambda: correctness(big))
        section(say, guard, f"{big}: memory ceiling", 2, lambda: mem(big))
        section(say, guard, f"{big}: workload, engine vs generate", 40, lambda: bench(big))
        section(
            say,
            guard,
            f"{big}: decode tokens/s vs the matmul ceiling",
            20,
            lambda: decode_rates(big),
        )
        section(say, guard, profile_name, 20, lambda: profile_steps_of(big))
    if big in state:
        section(say, guard, f"{big}: release", -1e9, lambda: release(big))
    for tmp in state.get("dirs", []):
        shutil.rmtree(tmp, ignore_errors=True)
    if hasattr(signal, "SIGALRM"):
        signal.alarm(0)
    say("\n## summary")
    for line in say.summary:
        say(f"  {line}")
    say(f"\n# done in {guard.elapsed():.0f} s")


if __name__ == "__main__":
    main()
