"""Per-row token sampling that stays cheap for large vocabularies, and the model's logprobs.

Every row has its own temperature, top-p and random stream (a `random.Random` per
sequence), so a seeded sequence draws the same tokens whatever else shares the batch.
Top-p is exact: we look at the `candidates` most likely tokens first (one `topk`, not a
full sort of a 262k vocabulary) and fall back to the whole distribution only for the rows
whose nucleus or draw lies beyond them. Sampling uses the inverse CDF with one uniform draw.
Logprobs, certainty and top logprobs describe the model's raw distribution (temperature 1,
no truncation), which is what likelihood, self-certainty and judge verifiers need.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True, slots=True)
class RowParams:
    """How one row picks its next token: temperature 0 is greedy."""

    temperature: float
    top_p: float
    u: float  # this step's uniform draw from the sequence's own stream (ignored when greedy)


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """The raw-distribution facts about one chosen token."""

    logprob: float
    certainty: float  # KL(uniform || p) = -log V - mean_j log p_j (Kang et al. 2025)
    top: dict[int, float]  # token id -> logprob of the k most likely tokens


def sample(logits: torch.Tensor, rows: list[RowParams], candidates: int = 256) -> list[int]:
    """One token per row of `logits` (`[B, V]`, float32)."""
    import torch

    tokens = logits.argmax(dim=-1).tolist()
    idx = [i for i, r in enumerate(rows) if r.temperature > 0]
    if not idx:
        return [int(t) for t in tokens]
    temps = torch.tensor([rows[i].temperature for i in idx], device=logits.device)
    scaled = logits[idx] / temps[:, None]
    lse = torch.logsumexp(scaled, dim=-1, keepdim=True)
    vals, ids = scaled.topk(min(candidates, scaled.shape[-1]), dim=-1)
    cums = (vals - lse).exp().cumsum(dim=-1).tolist()
    id_lists = ids.tolist()
    for j, i in enumerate(idx):
        r, cum = rows[i], cums[j]
        tokens[i] = _draw(cum, id_lists[j], r) if _covered(cum, r) else _exact(scaled[j], r)
    return [int(t) for t in tokens]


def _covered(cum: list[float], r: RowParams) -> bool:
    """Whether the nucleus (top-p < 1) or the draw (top-p = 1) lies within the candidates."""
    return cum[-1] >= r.top_p if r.top_p < 1.0 else r.u < cum[-1]


def _draw(cum: list[float], ids: list[int], r: RowParams) -> int:
    """Inverse-CDF draw among candidates sorted by probability, renormalised to the nucleus."""
    last = bisect_left(cum, r.top_p) if r.top_p < 1.0 else len(cum) - 1
    last = min(last, len(cum) - 1)
    mass = cum[last] if r.top_p < 1.0 else 1.0
    return ids[min(bisect_right(cum, r.u * mass), last)]


def _exact(scaled: torch.Tensor, r: RowParams) -> int:
    """The same draw over the whole vocabulary (the rare row whose mass lies past the top-k)."""
    import torch

    probs, order = scaled.softmax(dim=-1).sort(descending=True)
    cum = probs.cumsum(dim=-1)
    last = int(torch.searchsorted(cum, torch.tensor([r.top_p], device=cum.device))[0])
    last = min(last, cum.shape[0] - 1)
    mass = float(cum[last]) if r.top_p < 1.0 else float(cum[-1])
    target = torch.tensor([r.u * mass], device=cum.device)
    pick = min(int(torch.searchsorted(cum, target, right=True)[0]), last)
    return int(order[pick])


def token_infos(logits: torch.Tensor, chosen: list[int], top_k: list[int]) -> list[TokenInfo]:
    """Logprob of each chosen token, its row's certainty, and the row's top-k logprobs."""
    import torch

    lse = torch.logsumexp(logits, dim=-1)
    picked = logits.gather(-1, torch.tensor(chosen, device=logits.device)[:, None])[:, 0]
    logprob = (picked - lse).tolist()
    certainty = (lse - logits.mean(dim=-1) - math.log(logits.shape[-1])).tolist()
    k = max(top_k, default=0)
    tops: list[dict[int, float]] = [{} for _ in chosen]
    if k > 0:
        vals, ids = logits.topk(k, dim=-1)
        top_vals = (vals - lse[:, None]).tolist()
        top_ids = ids.tolist()
        tops = [
            dict(zip(top_ids[i][: top_k[i]], top_vals[i][: top_k[i]], strict=True))
            for i in range(len(chosen))
        ]
    return [TokenInfo(logprob[i], certainty[i], tops[i]) for i in range(len(chosen))]
