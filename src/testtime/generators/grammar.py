"""Constrained decoding for `response_format` on the embedded model, with xgrammar.

xgrammar is the grammar engine vLLM and SGLang constrain decoding with. A format is compiled
once per tokenizer (`Grammars`, a small LRU over xgrammar's compiler); each sample that
follows it gets its own `GrammarMatcher` (a pushdown automaton over the tokens so far). At
every step the engine asks each constrained row's matcher which tokens may come next, as a
bitmask, and sets the others' logits to -inf before sampling (`Masks`); the chosen token is
then fed back to the matcher (`sequence.Seq.accept`). Rows without a format are untouched.
The matcher's stop tokens are the model's end-of-sequence tokens: once the value is complete
only they are allowed, and a sample ends there with finish reason "stop".

The bitmask spans the model's output width (its lm_head rows), which may exceed the
tokenizer's vocabulary (padding): ids the tokenizer lacks are never allowed, as in vLLM.
Whitespace is fixed (`any_whitespace=False`): a small model left free to emit whitespace
between tokens can loop on it until max_tokens, which vLLM also offers to turn off.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from testtime.core.errors import ConfigError
from testtime.core.structured import ResponseFormat

if TYPE_CHECKING:
    import torch

CACHE_SIZE = 64  # compiled formats kept per tokenizer
_WHERE = re.compile(r"^\s*\[[^\]]*\]\s*\S+:\d+:\s*")  # xgrammar's "[time] file.cc:line: "


class Grammars:
    """The compiled form of each response format for one tokenizer, made once each."""

    def __init__(self, tokenizer: Any, vocab_size: int, eos: frozenset[int]) -> None:
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size  # the model's output width: the bitmask's
        self.eos = sorted(eos)
        self._compiler: Any = None
        self._cache: OrderedDict[tuple[str, str | None], Any] = OrderedDict()
        self._lock = threading.Lock()

    def cached(self, fmt: ResponseFormat) -> Any:
        """The compiled grammar of `fmt` if it was compiled before, else None."""
        with self._lock:
            found = self._cache.get(_key(fmt))
            if found is not None:
                self._cache.move_to_end(_key(fmt))
            return found

    def compile(self, fmt: ResponseFormat) -> Any:
        """The compiled grammar of a JSON format (xgrammar's CompiledGrammar); a ConfigError
        saying why when xgrammar cannot compile its schema."""
        found = self.cached(fmt)
        if found is not None:
            return found
        compiler = self._compiler_once()
        try:
            if fmt.kind == "json_schema":
                compiled = compiler.compile_json_schema(
                    fmt.schema, any_whitespace=False, strict_mode=True
                )
            else:  # json_object: any object (strict mode would allow only {})
                compiled = compiler.compile_json_schema(
                    '{"type": "object"}', any_whitespace=False, strict_mode=False
                )
        except Exception as exc:  # xgrammar raises RuntimeError with its C++ location
            why = _WHERE.sub("", str(exc).strip().splitlines()[0] if str(exc).strip() else "")
            raise ConfigError(
                f"response_format.json_schema.schema cannot be used for constrained decoding "
                f"({why or type(exc).__name__}); fix the schema or leave out the keyword"
            ) from None
        with self._lock:
            self._cache[_key(fmt)] = compiled
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return compiled

    def _compiler_once(self) -> Any:
        with self._lock:
            if self._compiler is None:
                import xgrammar

                info = tokenizer_info(self.tokenizer, self.vocab_size, self.eos)
                self._compiler = xgrammar.GrammarCompiler(info, max_threads=1)
            return self._compiler


def _key(fmt: ResponseFormat) -> tuple[str, str | None]:
    return fmt.kind, fmt.schema  # the schema's text as sent: its key order orders properties


def tokenizer_info(tokenizer: Any, vocab_size: int, eos: list[int]) -> Any:
    """xgrammar's view of the tokenizer: read from a Hugging Face tokenizer, or else built
    from each id's decoded text (a tokenizer of plain characters); end-of-sequence ids stop."""
    import xgrammar
    from transformers import PreTrainedTokenizerBase

    if isinstance(tokenizer, PreTrainedTokenizerBase):
        return xgrammar.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=vocab_size, stop_token_ids=eos
        )
    vocab = ["" if i in eos else tokenizer.decode([i]) for i in range(vocab_size)]
    return xgrammar.TokenizerInfo(vocab, vocab_size=vocab_size, stop_token_ids=eos)


def matcher(compiled: Any, eos: frozenset[int], prefix: str = "") -> Any:
    """A matcher for one sample, ending at the model's end-of-sequence tokens, that has
    read `prefix` (the partial answer the sample continues: the value is prefix + sample)."""
    import xgrammar

    made = xgrammar.GrammarMatcher(compiled, override_stop_tokens=sorted(eos))
    if prefix and not made.accept_string(prefix):
        raise ConfigError(
            f"the text to continue ({prefix[:40]!r}...) does not follow the response format, "
            "so no continuation can; continue a prefix of a valid value, or send none"
        )
    return made


class Masks:
    """Applies constrained rows' token masks to a batch's logits; owns the bitmask buffer
    (one int32 bit per token and row, reused across steps), so one per engine thread."""

    def __init__(self) -> None:
        self._bitmask: torch.Tensor | None = None

    def apply(
        self, logits: torch.Tensor, rows: list[tuple[int, Any]]
    ) -> list[tuple[int, BaseException]]:
        """Mask `logits[i]` by `matcher`'s next allowed tokens for each (i, matcher); return
        the rows whose matcher failed (their requests fail; the others are masked)."""
        import xgrammar

        bitmask = self._buffer(logits.shape[0], logits.shape[-1])
        failed: list[tuple[int, BaseException]] = []
        masked: list[int] = []
        for i, m in rows:
            try:
                if m.is_terminated():
                    raise ConfigError("the grammar had ended, yet the sample went on")
                if m.fill_next_token_bitmask(bitmask, i):
                    masked.append(i)
            except Exception as exc:
                failed.append((i, exc))
        if masked:
            mask = bitmask if logits.device.type == "cpu" else bitmask.to(logits.device)
            xgrammar.apply_token_bitmask_inplace(
                logits, mask, vocab_size=logits.shape[-1], indices=masked
            )
        return failed

    def _buffer(self, rows: int, vocab: int) -> torch.Tensor:
        import xgrammar

        words = -(-vocab // 32)
        buf = self._bitmask
        if buf is None or buf.shape[0] < rows or buf.shape[1] != words:
            buf = self._bitmask = xgrammar.allocate_token_bitmask(max(rows, 8), vocab)
        return buf[:rows]
