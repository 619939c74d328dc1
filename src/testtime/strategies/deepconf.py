"""DeepConf (Fu et al. 2025, "Deep Think with Confidence"): vote only with the traces the
model itself was confident in, weighted by that confidence, and stop sampling once the
weighted vote is settled.

Token confidence is C_i = -(1/k) sum_j log P_i(j) over the k likeliest tokens at position i
(the generator's top logprobs, k = `top_k`): high where the model's mass sits on one token.
A trace's confidence is, by `measure`: `lowest`, the lowest group confidence, a group being
the mean token confidence over a sliding window of `window` tokens (a trace shorter than the
window is one group); `bottom10`, the mean of its lowest 10% of groups; `tail`, the mean over
its last `tail` tokens; `mean`, the mean over all its tokens. Defaults are the paper's (k 20
as its vLLM runs, windows and tails of 2048 tokens, N_init 16, tau 0.95); a trace shorter
than 2048 tokens is one group, so then every measure but `tail` is its mean confidence.

offline: `n` traces; the threshold s is the (1 - eta) percentile of their confidences
(linear interpolation), traces below s are dropped, and the rest vote, each with its
confidence as the weight. eta 0.1 is the paper's DeepConf-low (the top 10%), 0.9 its
DeepConf-high (the default here: it drops little, so it does not hurt at small n).
online: `n_init` warm-up traces set s the same way; then `batch` traces a round until the
leading answer holds `tau` of the kept weight (the consensus) or `n` traces were drawn; as in
adaptive consistency, one kept trace proves nothing, so the consensus needs two.
The paper stops a trace mid-generation once a group's confidence falls below s; a context
cannot stop a sample on a callback, so here a trace is drawn whole and dropped after: the
saving is in samples (early stopping), not in the tokens of the dropped traces.

Every kept trace its own group (free text): the confidence-weighted vote then picks the most
confident trace (`selection`: "confidence"), or, with a verifier attached (a judge), the
verifier picks among the kept traces (`selection`: "verifier"), so filtering first cuts what
the judge reads. A trace with no tokens has no confidence and is always dropped; when no
sample came with top logprobs at all (a backend that returns none), a ConfigError says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from testtime.core.errors import ConfigError
from testtime.core.registry import Params
from testtime.core.types import Candidate, Result
from testtime.core.voting import all_singletons, group, leader, singletons
from testtime.strategies.base import Context, Traits, strategy
from testtime.strategies.parallel import check_sampling, votes
from testtime.strategies.select import score_once

Mode = Literal["online", "offline"]
Measure = Literal["lowest", "bottom10", "tail", "mean"]
MAX_TOP = 20  # the most top logprobs a request may ask for (core.types.Request)


@dataclass(frozen=True)
class DeepConfParams(Params):
    mode: Mode = "online"  # online: warm up, then stop at consensus; offline: n, then filter
    n: int = 32  # the most traces (the paper's budget B: 512)
    n_init: int = 16  # online: warm-up traces that set the threshold (the paper's N_init)
    eta: float = 0.9  # keep the top eta share by confidence (paper: 0.1 low, 0.9 high)
    tau: float = 0.95  # online: stop once the leader holds this share of the kept weight
    measure: Measure = "lowest"  # a trace's confidence (the paper's online choice)
    window: int = 2048  # tokens per group (the paper's sliding window)
    tail: int = 2048  # tokens the tail measure reads, from the end
    top_k: int = 20  # top logprobs per position, k in C_i
    batch: int = 1  # online: traces drawn between two consensus checks (the paper: one)
    temperature: float = 0.8
    top_p: float = 1.0

    def validate(self) -> None:
        self.positive("n", "n_init", "window", "tail", "top_k", "batch")
        if self.top_k > MAX_TOP:
            raise ConfigError(f"parameter 'top_k' must be in 1..{MAX_TOP}, got {self.top_k}")
        if not 0 < self.eta <= 1:
            raise ConfigError(
                f"parameter 'eta' must be in (0, 1] (the share of traces kept), got {self.eta}"
            )
        if not 0.5 < self.tau <= 1:
            raise ConfigError(
                f"parameter 'tau' must be in (0.5, 1] (at 0.5 or below a tie would stop the "
                f"vote), got {self.tau}; 1 means the whole budget unless all agree"
            )
        check_sampling(self.temperature, self.top_p)


@strategy(
    "deepconf",
    DeepConfParams,
    Traits(
        "n",
        examples=(
            {"n": 4, "n_init": 2, "window": 4},
            {"mode": "offline", "n": 4, "eta": 0.5, "measure": "bottom10", "window": 4},
        ),
    ),
)
async def deepconf(ctx: Context, p: DeepConfParams) -> Result:
    """DeepConf (Fu et al. 2025): confidence-filtered, confidence-weighted voting; online, a
    warm-up sets the filter and sampling stops once the weighted vote reaches consensus."""
    first = p.n if p.mode == "offline" else min(p.n_init, p.n)
    samples = await _draw(ctx, p, first)
    confidences = _confidences(samples, p)
    threshold = percentile([c for c in confidences if c is not None], 1 - p.eta)
    stopped = "budget" if len(samples) < first else "n" if p.mode == "offline" else ""
    consensus = _consensus(samples, confidences, threshold, ctx)
    while not stopped:
        if len(samples) >= p.n:
            stopped = "n"
            break
        if consensus >= p.tau and sum(_passes(c, threshold) for c in confidences) >= 2:
            stopped = "consensus"
            break
        k = min(p.batch, p.n - len(samples))
        got = await _draw(ctx, p, k)
        samples += got
        confidences += _confidences(got, p)
        consensus = _consensus(samples, confidences, threshold, ctx)
        if len(got) < k:
            stopped = "budget"
    kept = [i for i, c in enumerate(confidences) if _passes(c, threshold)]
    dropped = [samples[i].id for i, c in enumerate(confidences) if not _passes(c, threshold)]
    pool = [samples[i] for i in kept]
    weights = [_of(confidences[i]) for i in kept]
    groups = group(pool, weights, ctx.same)
    top = leader(groups)
    chosen = pool[max(top.members, key=weights.__getitem__)] if top else None  # ties: first
    selection = "confidence"
    if all_singletons(groups) and ctx.verifier is not None:
        scored = await score_once(ctx, [pool[i] for g in groups for i in g.members])
        chosen, selection = ctx.best(scored), "verifier"
    trace: dict[str, Any] = {
        "mode": p.mode,
        "samples": len(samples),
        "confidences": [_rounded(c) for c in confidences],
        "threshold": _rounded(threshold),
        "filtered": dropped,
        "consensus": round(consensus, 6),
        "stopped": stopped,
        "votes": votes(groups),
        **singletons(groups, selection),
    }
    return ctx.finish(chosen, trace=trace)


async def _draw(ctx: Context, p: DeepConfParams, k: int) -> list[Candidate]:
    return await ctx.sample(k, temperature=p.temperature, top_p=p.top_p, top_logprobs=p.top_k)


def _confidences(samples: Sequence[Candidate], p: DeepConfParams) -> list[float | None]:
    """Each sample's trace confidence (None: no tokens to be confident in); a ConfigError
    when no sample came with top logprobs, as nothing could then be filtered or weighed."""
    comps = [c.completion for c in samples]
    tops = [c.top_logprobs if c is not None else None for c in comps]
    spoke = [c.top_logprobs for c in comps if c is not None and c.generated_tokens]
    if spoke and all(t is None for t in spoke):
        raise ConfigError(
            "strategy 'deepconf' needs the generator's top logprobs (it asked for "
            f"top_logprobs={p.top_k}), but no sample has them; use a backend that returns "
            "logprobs (the local engine, vLLM, SGLang), or another strategy"
        )
    return [
        trace_confidence(token_confidences(t or (), p.top_k), p.measure, p.window, p.tail)
        for t in tops
    ]


def token_confidences(tops: Sequence[Mapping[str, float]], k: int) -> list[float]:
    """C_i = -mean of the k likeliest log-probabilities at each position (the paper's token
    confidence). A backend may list fewer than k (or the chosen token too): the k likeliest
    given are used. Non-finite entries carry no mass to average and are skipped, as is a
    position with none left."""
    out = []
    for top in tops:
        finite = sorted((v for v in top.values() if math.isfinite(v)), reverse=True)[:k]
        if finite:
            out.append(-sum(finite) / len(finite))
    return out


def group_confidences(tokens: Sequence[float], window: int) -> list[float]:
    """Mean token confidence over every sliding window of `window` tokens (the paper's
    groups, overlapping); a trace shorter than the window is one group; none: none."""
    if not tokens:
        return []
    if len(tokens) <= window:
        return [sum(tokens) / len(tokens)]
    prefix = [0.0]
    for c in tokens:
        prefix.append(prefix[-1] + c)
    return [(prefix[i + window] - prefix[i]) / window for i in range(len(tokens) - window + 1)]


def trace_confidence(tokens: Sequence[float], measure: str, window: int, tail: int) -> float | None:
    """A trace's confidence by `measure` (see the module), None for a trace with no tokens."""
    if not tokens:
        return None
    if measure == "mean":
        return sum(tokens) / len(tokens)
    if measure == "tail":
        last = tokens[-tail:]
        return sum(last) / len(last)
    groups = group_confidences(tokens, window)
    if measure == "lowest":
        return min(groups)
    if measure == "bottom10":
        lowest = sorted(groups)[: max(1, len(groups) // 10)]
        return sum(lowest) / len(lowest)
    raise ValueError(f"unknown measure {measure!r}")


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1) of `values` by linear interpolation (numpy's default): the
    threshold keeping the top 1 - q of them; None for no values."""
    if not values:
        return None
    ranked = sorted(values)
    at = q * (len(ranked) - 1)
    lo = math.floor(at)
    hi = min(lo + 1, len(ranked) - 1)
    return ranked[lo] + (ranked[hi] - ranked[lo]) * (at - lo)


def _passes(confidence: float | None, threshold: float | None) -> bool:
    """Whether a trace is kept: it has a confidence, at least the threshold (if one was set:
    with no confident warm-up trace there is none)."""
    return confidence is not None and (threshold is None or confidence >= threshold)


def _of(confidence: float | None) -> float:
    return 0.0 if confidence is None else confidence


def _consensus(
    samples: Sequence[Candidate],
    confidences: Sequence[float | None],
    threshold: float | None,
    ctx: Context,
) -> float:
    """The leading answer's share of the kept traces' confidence (0 with none kept)."""
    kept = [i for i, c in enumerate(confidences) if _passes(c, threshold)]
    weights = [_of(confidences[i]) for i in kept]
    groups = group([samples[i] for i in kept], weights, ctx.same)
    top, total = leader(groups), sum(g.weight for g in groups)
    return top.weight / total if top is not None and total > 0 else 0.0


def _rounded(x: float | None) -> float | None:
    return None if x is None else round(x, 6)
