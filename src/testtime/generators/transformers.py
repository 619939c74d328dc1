"""The Hugging Face `transformers` backend: a local model served by the batching engine.

Loads a model directory (never the Hub), formats chats with the tokenizer's chat template
(or, for base models without one, as plain text: contents joined by blank lines, then the
prefix), and hands token ids to the `Engine`. Works on CPU or CUDA; dtype is a parameter
(bf16 by default where the hardware has it: about 2x fp32 on an AVX512-BF16 CPU).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from testtime.core.errors import ConfigError, ModelNotFoundError
from testtime.core.tools import Tools, call_text, forced_format, result_text, system_prompt
from testtime.core.types import Message, Request
from testtime.generators.base import Generation, Generator, with_tool_calls
from testtime.generators.engine import Engine
from testtime.generators.environment import quiet_threads
from testtime.generators.grammar import Grammars
from testtime.generators.models import check_device, check_model_dir
from testtime.generators.runner import Runner

END_OF_TURN = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|end|>", "<|endoftext|>")


class TransformersGenerator(Generator):
    """A local causal LM; concurrent `generate` calls are batched by one engine thread."""

    def __init__(self, model: Any, tokenizer: Any, *, name: str = "transformers", **engine: Any):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.n_params = int(sum(p.numel() for p in model.parameters()))
        self.chat = bool(getattr(tokenizer, "chat_template", None))
        # a template that reads `tools` renders them itself; others get them as a system message
        self.template_tools = "tools" in str(getattr(tokenizer, "chat_template", None) or "")
        self._decode_one = lru_cache(maxsize=65536)(self._decode_token)
        self.engine = Engine(
            Runner(model), eos=self._eos_ids(), decode=self.decode, n_params=self.n_params, **engine
        )
        self.context_window = self.engine.runner.max_positions
        self.grammars = Grammars(tokenizer, _output_width(model), self.engine.eos)
        self._encode = lru_cache(maxsize=4096)(self._encode_uncached)

    @classmethod
    def from_dir(
        cls,
        path: str | Path,
        *,
        device: str = "auto",
        dtype: str = "auto",
        threads: int | None = None,
        name: str | None = None,
        **engine: Any,
    ) -> TransformersGenerator:
        """Load a local model directory (config, weights, tokenizer) onto `device`."""
        quiet_threads()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # CLI has its own
        dev = pick_device(device)
        check_model_dir(Path(path))  # names a corrupt config.json or weights file
        threads = threads or (_cores() if dev.type == "cpu" else None)
        if threads:
            torch.set_num_threads(threads)
        try:
            tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except Exception as exc:  # transformers raises many kinds; the user needs one line
            raise ModelNotFoundError(
                f"cannot read the tokenizer in {path} ({_said(exc)}); a model directory needs "
                "its tokenizer files (tokenizer.json, tokenizer_config.json)"
            ) from exc
        try:
            model = AutoModelForCausalLM.from_pretrained(
                str(path),
                dtype=pick_dtype(dtype, dev),
                local_files_only=True,
                attn_implementation="sdpa",
            )
        except (ConfigError, ModelNotFoundError):
            raise
        except Exception as exc:
            raise ModelNotFoundError(
                f"cannot load the model in {path} ({_said(exc)}); check its config.json and "
                "weights files, or download or convert it again"
            ) from exc
        model.to(dev).eval()
        return cls(model, tok, name=name or Path(path).name, threads=threads, **engine)

    # -- Generator ---------------------------------------------------------------------
    async def generate(self, request: Request) -> Generation:
        prompt = self._prompt_ids(request)
        fut = self.engine.submit(request, prompt, await self._grammar(request))
        return with_tool_calls(await asyncio.wrap_future(fut), request)

    async def _grammar(self, request: Request) -> Any:
        """The request's response format compiled for this tokenizer (None for free text);
        compiling (the first time only) runs off the event loop."""
        fmt = request.response_format
        if fmt is None and request.tools is not None:  # tool_choice required / a function
            fmt = forced_format(request.tools)
        if fmt is None or not fmt.json:
            return None
        return self.grammars.cached(fmt) or await asyncio.to_thread(self.grammars.compile, fmt)

    def count_prompt_tokens(self, request: Request) -> int:
        return len(self._prompt_ids(request))

    def _prompt_ids(self, request: Request) -> list[int]:
        """The token ids the model reads: the chat templated, or a raw prompt as it is
        (text tokenized with the tokenizer's own special tokens, as vLLM's /v1/completions
        does; token ids taken without decoding, each checked against the vocabulary)."""
        raw = request.prompt
        if raw is None:
            return list(self._encode(request.messages, request.prefix, request.tools))
        if isinstance(raw, str):
            return self._encode_raw(raw + request.prefix)
        width = self.grammars.vocab_size  # the model's output width
        bad = next((t for t in raw if not 0 <= t < width), None)
        if bad is not None:
            raise ConfigError(
                f"token id {bad} is outside this model's vocabulary (ids 0..{width - 1}); "
                "send ids from its tokenizer, or the prompt as text"
            )
        extra = self.tokenizer(request.prefix, add_special_tokens=False)["input_ids"]
        return [*raw, *extra]

    def _encode_raw(self, text: str) -> list[int]:
        ids: list[int] = self.tokenizer(text, add_special_tokens=True)["input_ids"]
        return ids

    def clear_cache(self) -> None:
        self.engine.prefix.clear()

    async def features(self, requests: Sequence[Request]) -> list[list[float]]:
        """Last-layer hidden states averaged over each request's prefix tokens (the solution
        text), or the last prompt token's when the prefix is empty; one forward pass each."""
        return await asyncio.to_thread(lambda: [self._features(r) for r in requests])

    def _features(self, request: Request) -> list[float]:
        import torch

        ids = list(self._encode(request.messages, request.prefix))
        start = min(len(self._encode(request.messages, "")), len(ids) - 1)
        device = next(self.model.parameters()).device
        with torch.no_grad():
            out = self.model(torch.tensor([ids], device=device), output_hidden_states=True)
        states = out.hidden_states[-1][0, start:].float().mean(dim=0)
        return [float(x) for x in states.cpu()]

    async def aclose(self) -> None:
        await asyncio.to_thread(self.engine.close)

    # -- text <-> tokens ---------------------------------------------------------------
    def prompt_text(
        self, messages: tuple[Message, ...], prefix: str = "", tools: Tools | None = None
    ) -> str:
        """The exact text the model reads before its continuation. Offered `tools` (not
        tool_choice `none`) go to a chat template that reads them (transformers'
        `tools=`); a template that does not, or a model without one, gets them described
        in a system message in the Hermes format, earlier calls as `<tool_call>` tags and
        tool results as `<tool_response>` user turns (`core.tools`)."""
        offered = tools if tools is not None and tools.offered else None
        native = self.chat and self.template_tools
        if offered is not None and not native:
            messages = _with_system(messages, system_prompt(offered))
        if not self.chat:
            return "\n\n".join(_hermes(m)["content"] for m in messages) + prefix
        chat = [_native(m) if native else _hermes(m) for m in messages]
        extra: dict[str, Any] = {}
        if offered is not None and native:
            extra["tools"] = [{"type": "function", "function": f} for f in offered.functions]
        text: str = self.tokenizer.apply_chat_template(
            chat, tokenize=False, add_generation_prompt=True, **extra
        )
        return text + prefix

    def _encode_uncached(
        self, messages: tuple[Message, ...], prefix: str, tools: Tools | None = None
    ) -> tuple[int, ...]:
        # a chat template writes its own special tokens; plain text gets the tokenizer's BOS
        text = self.prompt_text(messages, prefix, tools)
        ids = self.tokenizer(text, add_special_tokens=not self.chat)
        return tuple(ids["input_ids"])

    def decode(self, tokens: list[int]) -> str:
        if len(tokens) == 1:
            return self._decode_one(tokens[0])
        text: str = self.tokenizer.decode(tokens)
        return text

    def _decode_token(self, token: int) -> str:
        text: str = self.tokenizer.decode([token])
        return text

    def _eos_ids(self) -> frozenset[int]:
        """End-of-sequence ids: the model's, the tokenizer's, and any chat end-of-turn token."""
        ids: set[int] = set()
        for source in (self.model.generation_config, self.model.config, self.tokenizer):
            eos = getattr(source, "eos_token_id", None)
            ids |= (
                set(eos) if isinstance(eos, (list, tuple)) else {eos} if eos is not None else set()
            )
        vocab = self.tokenizer.get_vocab()
        ids |= {vocab[t] for t in END_OF_TURN if t in vocab}
        if not ids:
            raise ConfigError("the model names no end-of-sequence token; give its config one")
        return frozenset(int(i) for i in ids)


def _with_system(messages: tuple[Message, ...], text: str) -> tuple[Message, ...]:
    """`text` added to the chat's system message (a new first one when it has none)."""
    if messages and messages[0].role == "system":
        return (Message("system", f"{messages[0].content}\n\n{text}"), *messages[1:])
    return (Message("system", text), *messages)


def _hermes(m: Message) -> dict[str, str]:
    """A message for a template that knows no tools: calls as tags, results as user turns."""
    if m.role == "tool":
        return {"role": "user", "content": result_text(m.content)}
    if m.tool_calls:
        return {
            "role": m.role,
            "content": "\n".join(filter(None, [m.content, call_text(m.tool_calls)])),
        }
    return {"role": m.role, "content": m.content}


def _native(m: Message) -> dict[str, Any]:
    """A message as transformers' tool-aware templates read it (arguments as objects)."""
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": _args(c)}}
            for c in m.tool_calls
        ]
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    return out


def _args(call: Any) -> Any:
    try:
        return json.loads(call.arguments)
    except ValueError:
        return call.arguments


def _output_width(model: Any) -> int:
    """Rows of the model's output layer: the logits' width (at least the tokenizer's)."""
    head = model.get_output_embeddings()
    weight = getattr(head, "weight", None)
    return int(weight.shape[0]) if weight is not None else int(model.config.vocab_size)


def pick_device(device: str) -> Any:
    """`auto` is CUDA when present, else CPU; a named device must exist on this machine."""
    import torch

    check_device(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cpu":
        return dev
    found = _devices(torch, dev.type)
    if not found:
        built = torch.version.cuda or getattr(torch.version, "hip", None)
        why = (
            f"this torch ({torch.__version__}) was built without CUDA"
            if dev.type == "cuda" and not built
            else f"no {dev.type} device is visible here"
        )
        raise ConfigError(f"device {device!r}: {why}; use cpu, or auto (a GPU when there is one)")
    if dev.index is not None and dev.index >= found:
        raise ConfigError(
            f"device {device!r} does not exist: this machine has {found} {dev.type} "
            f"device(s), {dev.type}:0 to {dev.type}:{found - 1}"
        )
    return dev


def _devices(torch: Any, kind: str) -> int:
    """How many devices of a kind torch can use here."""
    if kind == "mps":
        return int(torch.backends.mps.is_available())
    backend = getattr(torch, kind, None)
    if backend is None or not backend.is_available():
        return 0
    return int(backend.device_count())


def _said(exc: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__


def pick_dtype(dtype: str, device: Any) -> Any:
    """`auto` is bf16 on GPUs and CPUs with native bf16 (AVX512-BF16/AMX), else float32."""
    import torch

    names = {
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp16": torch.float16,
        "float16": torch.float16,
        "fp32": torch.float32,
        "float32": torch.float32,
    }
    if dtype != "auto":
        if dtype not in names:
            raise ConfigError(f"unknown dtype {dtype!r}; use auto, {', '.join(sorted(names))}")
        return names[dtype]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if _cpu_has_bf16() else torch.float32


def _cores() -> int:
    """The cores this process may run on (all of them where affinity is unknown)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
