"""A scripted, seeded fake generator: deterministic completions with real token counts.

Per prompt it holds either a list of texts (returned in turn) or a weighted distribution
over texts (drawn with the request's seed). Tokens are regex words and punctuation, so
token counts, budgets and FLOPs are real counts of real text. It drives every strategy in
tests and examples, and the CLI's `--model fake` (which answers arithmetic prompts).
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import zlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from testtime.core.answers import format_number
from testtime.core.arith import evaluate
from testtime.core.cost import Cost
from testtime.core.errors import ConfigError
from testtime.core.kinetics import KVShape
from testtime.core.types import Completion, FinishReason, Request
from testtime.generators.backends import Backend, backend
from testtime.generators.base import Generation, Generator, with_tool_calls

Texts = Sequence[str] | Mapping[str, float]  # texts in turn, or texts with weights
Default = Texts | Callable[[str], Texts]

_TOKEN = re.compile(r"[^\S\n]*(?:\w+|[^\w\s])|\n")
VOCAB = 32_000  # the pretend vocabulary, for certainty (KL from uniform)
SMOOTH = 0.01  # the least mass the pretend model spreads over unscripted tokens
EOS = "<eos>"
FEATURES = 64  # size of the fake's pretend hidden state
FAKE_PARAMS = 1_000_000  # the pretend parameter count, for FLOPs
FAKE_SHAPE = KVShape(layers=4, kv_heads=2, head_dim=32)  # its pretend KV cache, for eFLOPs


def tokens(text: str) -> list[str]:
    """The fake tokenizer: words or single punctuation marks (with leading spaces), newlines."""
    return _TOKEN.findall(text)


def count_tokens(text: str) -> int:
    return len(tokens(text))


@dataclass(frozen=True, slots=True)
class _Script:
    texts: tuple[str, ...]
    weights: tuple[float, ...]
    in_turn: bool  # a list: texts come back in order; greedy gives the most common

    @classmethod
    def of(cls, texts: Texts, prompt: str) -> _Script:
        if isinstance(texts, str):
            raise ConfigError(f"the script for {prompt!r} is one string; give a list of texts")
        pairs = list(texts.items()) if isinstance(texts, Mapping) else [(t, 1.0) for t in texts]
        if not pairs or any(not isinstance(t, str) for t, _ in pairs):
            raise ConfigError(f"the script for {prompt!r} must hold at least one text")
        if any(not (w >= 0 and math.isfinite(w)) for _, w in pairs) or not sum(w for _, w in pairs):
            raise ConfigError(f"the script for {prompt!r} needs weights >= 0, not all 0")
        texts_, weights = zip(*pairs, strict=True)
        return cls(texts_, tuple(map(float, weights)), not isinstance(texts, Mapping))

    def options(self, prefix: str) -> list[tuple[str, float]]:
        """(continuation, weight) of the texts extending `prefix` (all texts if none does)."""
        pairs = [(t, w) for t, w in zip(self.texts, self.weights, strict=True) if w > 0]
        return [(t[len(prefix) :], w) for t, w in pairs if t.startswith(prefix)] or pairs


class FakeGenerator(Generator):
    """Scripted completions: `scripts` maps a prompt (the last user message, or tool result)
    to its texts; a scripted `<tool_call>` is read out as a call when the request has tools.

    A prompt matches its exact key, else the first key it contains (handy for templated
    judge prompts). Unmatched prompts get `default` (texts, or a function of the prompt);
    with no scripts at all the default is `arithmetic`. Every request is kept in `requests`.
    Example: FakeGenerator({"2+2?": {"Answer: 4": 0.7, "Answer: 5": 0.3}})
    """

    def __init__(
        self,
        scripts: Mapping[str, Texts] | None = None,
        *,
        default: Default | None = None,
        n_params: int = FAKE_PARAMS,
        latency: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.name = "fake"
        self.n_params = n_params
        self.scripts = {k: _Script.of(v, k) for k, v in (scripts or {}).items()}
        self.default = arithmetic if default is None and scripts is None else default
        self.latency = latency  # seconds each call waits, to simulate a slow model
        self.requests: list[Request] = []
        self.peak_in_flight = 0  # the most calls that were running at once
        self._in_flight = 0
        self._turn: Counter[str] = Counter()
        self._rng = random.Random(seed)  # seeds requests that come without one

    @classmethod
    def from_answers(
        cls,
        answers: Mapping[str, Mapping[str | None, float]],
        *,
        default: Mapping[str | None, float] | None = None,
        n_params: int = FAKE_PARAMS,
        latency: float = 0.0,
        seed: int = 0,
    ) -> FakeGenerator:
        """Per prompt, a distribution over final answers, each written out as a short worked
        solution ending in 'Answer: X'; None stands for a completion with no answer at all.
        Example: FakeGenerator.from_answers({"What is 3 + 4?": {"7": 0.6, "8": 0.3, None: 0.1}})
        """
        scripts = {p: written(p, dist) for p, dist in answers.items()}
        fallback = None if default is None else (lambda p: written(p, default))
        return cls(scripts, default=fallback, n_params=n_params, latency=latency, seed=seed)

    def count_prompt_tokens(self, request: Request) -> int:
        if isinstance(request.prompt, tuple):  # token ids, as they came
            return len(request.prompt) + count_tokens(request.prefix)
        if request.prompt is not None:  # raw text: no chat markers
            return count_tokens(request.prompt + request.prefix)
        chat = "".join(f"<|{m.role}|>\n{m.content}\n" for m in request.messages)
        return count_tokens(chat + "<|assistant|>\n" + request.prefix)

    async def generate(self, request: Request) -> Generation:
        if isinstance(request.prompt, tuple):
            raise ConfigError(
                "the fake generator has no vocabulary, so it cannot read a prompt of token "
                "ids; send the prompt as text, or serve a real model"
            )
        self.requests.append(request)
        self._in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
        try:
            await asyncio.sleep(self.latency)  # yields even at 0, so concurrent calls interleave
        finally:
            self._in_flight -= 1
        script = self._script(request)
        options = script.options(request.prefix)
        picks = self._pick(script, options, request)
        prompt = self.count_prompt_tokens(request)
        outs = [_complete(t, options, request, prompt) for t in picks]
        done = [c.generated_tokens for c in outs if c.finish_reason in ("stop", "eos")]
        if request.first_finish and done:  # the others stop when the shortest one ends
            outs = [_complete(t, options, request, prompt, cut=min(done)) for t in picks]
        cost = Cost.of_generation(
            self.n_params,
            prompt_tokens=prompt,  # one shared prefill for all n
            cached_prompt_tokens=0,
            generated_tokens=sum(c.generated_tokens for c in outs),
            samples=len(outs),
        )
        return with_tool_calls(Generation(tuple(outs), cost), request)  # scripted calls

    async def features(self, requests: Sequence[Request]) -> list[list[float]]:
        """A pretend hidden state: hashed counts of the prefix's tokens (64 dimensions)."""
        out = []
        for r in requests:
            vec = [0.0] * FEATURES
            for t in tokens(r.prefix):
                vec[zlib.crc32(t.strip().encode()) % FEATURES] += 1.0
            out.append(vec)
        return out

    def _script(self, request: Request) -> _Script:
        prompt = _last_user(request)
        if prompt in self.scripts:
            return self.scripts[prompt]
        for key, script in self.scripts.items():
            if key in prompt:
                return script
        if self.default is None:
            scripted = ", ".join(repr(k[:40]) for k in self.scripts) or "(none)"
            raise ConfigError(
                f"the fake generator has no script for the prompt {prompt[:80]!r}; scripted "
                f"prompts: {scripted}; script it, or pass default= for unscripted prompts"
            )
        return _Script.of(self.default(prompt) if callable(self.default) else self.default, prompt)

    def _pick(self, script: _Script, options: list[tuple[str, float]], req: Request) -> list[str]:
        """The n continuations: the most likely when greedy, in turn for lists, else drawn."""
        texts, weights = [t for t, _ in options], [w for _, w in options]
        if req.greedy:  # the text with the most mass (a list may repeat a text)
            mass: dict[str, float] = {}
            for t, w in options:
                mass[t] = mass.get(t, 0.0) + w
            return [max(mass, key=mass.__getitem__)] * req.n
        key = f"{_last_user(req)}\x00{req.prefix}"
        if script.in_turn:
            start = self._turn[key]
            self._turn[key] += req.n
            return [texts[(start + i) % len(texts)] for i in range(req.n)]
        seed = self._rng.getrandbits(32) if req.seed is None else req.seed
        rng = random.Random(f"{seed}\x00{key}")
        drawn = rng.choices(
            texts, _nucleus(weights, req.temperature, req.top_p), k=req.first_index + req.n
        )
        return drawn[req.first_index :]  # sample i of the stream, however it is requested


def _last_user(request: Request) -> str:
    """The prompt a script is looked up by: the last user message, or a tool's result when
    one came after it (the model then answers the result)."""
    users = [m.content for m in request.messages if m.role in ("user", "tool")]
    return users[-1] if users else request.messages[-1].content


def _nucleus(weights: Sequence[float], temperature: float, top_p: float) -> list[float]:
    """Weights sharpened by temperature (p^(1/T)), then cut to the top-p nucleus."""
    logits = [math.log(w) / temperature for w in weights]
    probs = [math.exp(x - max(logits)) for x in logits]
    probs = [p / sum(probs) for p in probs]
    keep, mass = [0.0] * len(probs), 0.0
    for i in sorted(range(len(probs)), key=lambda i: -probs[i]):
        if mass >= top_p:
            break
        keep[i], mass = probs[i], mass + probs[i]
    return keep


def _complete(
    text: str, options: list[tuple[str, float]], req: Request, prompt: int, cut: int | None = None
) -> Completion:
    """One scripted continuation after stop strings, max_tokens and a first-finish `cut`."""
    spans = [(m.start(), m.end()) for m in _TOKEN.finditer(text)]
    end, n, finish = len(text), len(spans), "eos"
    hits = [(i, s) for s in req.stop if s and (i := text.find(s)) >= 0]
    if hits:  # the stop string's tokens were generated (and paid for), then cut from the text
        i, s = min(hits)
        end, finish = i, "stop"
        n = sum(1 for start, _ in spans if start < i + len(s))
    for limit, reason in ((req.max_tokens, "length"), (cut, "cancelled")):
        if limit is not None and n > limit:
            n, finish = limit, reason
            end = spans[n - 1][1] if n else 0
    emitted = [text[a:b] for a, b in spans[:n]]
    want = req.logprobs or req.top_logprobs > 0
    lp, cert, top = _scores(emitted, options, req.top_logprobs) if want else (None, None, None)
    return Completion(
        text=text[:end],
        prompt_tokens=prompt,
        generated_tokens=n,
        finish_reason=_reason(finish),
        logprobs=lp,
        certainty=cert,
        top_logprobs=top,
        tokens=tuple(emitted) if want else None,
    )


def _reason(finish: str) -> FinishReason:
    reasons: dict[str, FinishReason] = {r: r for r in ("eos", "stop", "length", "cancelled")}
    return reasons[finish]


def _scores(
    emitted: list[str], options: list[tuple[str, float]], k: int
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[Mapping[str, float], ...] | None]:
    """Per emitted token: its log-probability, KL(uniform || p), and the top-k tokens.

    The pretend model splits its mass between the scripted next tokens (weighted by the
    scripted texts that agree with all emitted so far) and noise spread evenly over VOCAB
    tokens. The noise share grows as the path gets less likely (1 - (1 - SMOOTH) x its
    scripted probability), so rarer texts get lower logprobs and certainty, deterministically.
    The top k are the scripted tokens, then unscripted ones (`<unk0>`, ...) at the floor.
    """
    alive = [(tokens(t), w) for t, w in options]
    total = sum(w for _, w in options)
    logprobs: list[float] = []
    certainty: list[float] = []
    tops: list[Mapping[str, float]] = []
    for pos, token in enumerate(emitted):
        mass: dict[str, float] = {}
        for toks, w in alive:
            key = toks[pos] if pos < len(toks) else EOS
            mass[key] = mass.get(key, 0.0) + w
        here = sum(mass.values())
        noise = 1 - (1 - SMOOTH) * here / total
        p = {t: (1 - noise) * m / here + noise / VOCAB for t, m in mass.items()}
        floor = math.log(noise / VOCAB)  # any unscripted token
        logprobs.append(math.log(p[token]))
        log_sum = (VOCAB - len(p)) * floor + sum(math.log(v) for v in p.values())
        certainty.append(-math.log(VOCAB) - log_sum / VOCAB)
        top = {t: math.log(v) for t, v in sorted(p.items(), key=lambda kv: -kv[1])[:k]}
        for j in range(k - len(top)):  # as a real model's top-k: the rest are unscripted
            top[f"<unk{j}>"] = floor
        tops.append(top)
        alive = [(toks, w) for toks, w in alive if pos < len(toks) and toks[pos] == token]
    return tuple(logprobs), tuple(certainty), tuple(tops) if k else None


# -- answers written out as text, and the default arithmetic solver ------------------------

_RUN = re.compile(r"[\d \t.+\-*/()]+")  # a run of characters an arithmetic expression uses
_TIMES = re.compile(r"(?<=\d)\s*[x×]\s*(?=[\d(-])")


def written(prompt: str, answers: Mapping[str | None, float]) -> dict[str, float]:
    """Each answer written as a short worked solution (None: an empty completion, no answer)."""
    found = _arithmetic(prompt)
    return {render(a, found[0] if found else None): w for a, w in answers.items()}


def render(answer: str | None, expression: str | None = None) -> str:
    """A completion that ends in 'Answer: X'; None renders as an empty completion, the only
    text from which no extractor (not even the last-line fallback) reads an answer."""
    if answer is None:
        return ""
    work = f"{expression} = {answer}" if expression else f"Working it through gives {answer}"
    return f"Let me think step by step.\n\n{work}.\n\nAnswer: {answer}"


def arithmetic(prompt: str) -> dict[str, float]:
    """The default script: for a prompt with an arithmetic expression, the right answer
    most often (less often the more digits) and near-misses (+1, -1, +10) otherwise;
    an empty completion (no answer) for any other prompt."""
    found = _arithmetic(prompt)
    if found is None:
        return {"": 1.0}
    expression, value = found
    digits = sum(ch.isdigit() for ch in expression)
    right = max(0.4, 0.9 - 0.05 * max(0, digits - 2))
    weights = {_number(value): right}
    for miss, share in ((value + 1, 0.5), (value - 1, 0.3), (value + 10, 0.2)):
        weights[_number(miss)] = weights.get(_number(miss), 0.0) + (1 - right) * share
    return {render(a, expression): w for a, w in weights.items()}


def _number(x: Fraction) -> str:
    return str(x.numerator) if x.denominator == 1 else format_number(float(x))


def _arithmetic(prompt: str) -> tuple[str, Fraction] | None:
    """The longest arithmetic expression in the prompt (with an operator) and its exact value."""
    runs = (m.strip().rstrip(".").strip() for m in _RUN.findall(_TIMES.sub(" * ", prompt)))
    for expression in sorted(runs, key=len, reverse=True):
        value = evaluate(expression)
        if value is not None:
            return expression, value
    return None


@backend
class Fake(Backend):
    """`fake`: the scripted `FakeGenerator` with its default arithmetic script (no model)."""

    name = "fake"
    usage = "'fake' (the scripted fake, no model)"
    runs_on = "the scripted fake runs on this CPU"
    fine_devices = ("auto", "cpu")

    def claims(self, model: str) -> bool:
        return model == "fake"

    def open(self, model: str, **opts: Any) -> Generator:
        return FakeGenerator(**opts)

    def n_params(self, model: str) -> int:
        return FAKE_PARAMS

    def kv_shape(self, model: str) -> KVShape | None:
        return FAKE_SHAPE
