"""The sampler: exact top-p through its top-k shortcut, the right distribution, raw logprobs."""

from __future__ import annotations

import math
import random

import pytest

torch = pytest.importorskip("torch")

from testtime.generators.sampling import RowParams, Sampler  # noqa: E402


def logits(rows: int, vocab: int, seed: int, spread: float = 3.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, vocab, generator=g) * spread


def test_temperature_zero_is_argmax() -> None:
    x = logits(5, 300, 0)
    assert Sampler()(x, [RowParams(0.0, 1.0, 0.3)] * 5) == x.argmax(-1).tolist()


@pytest.mark.parametrize("top_p", [1.0, 0.9, 0.5])
@pytest.mark.parametrize("temperature", [0.7, 1.0, 1.6])
def test_the_topk_shortcut_draws_exactly_what_a_full_sort_draws(
    top_p: float, temperature: float
) -> None:
    x = logits(8, 500, 1, spread=1.0)  # flat enough that few candidates rarely suffice
    rng = random.Random(2)
    for _ in range(25):
        rows = [RowParams(temperature, top_p, rng.random()) for _ in range(8)]
        exhaustive = Sampler(candidates=500)(x, rows)
        for k in (1, 3, 64):
            assert Sampler(candidates=k)(x, rows) == exhaustive


def test_draws_follow_the_softmax() -> None:
    x = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, -3.0]])
    probs = torch.softmax(x / 0.8, -1)[0].tolist()
    rng = random.Random(0)
    sampler = Sampler(candidates=2)  # most draws go through the wider path
    counts = [0] * 6
    draws = 20000
    for _ in range(draws):
        counts[sampler(x, [RowParams(0.8, 1.0, rng.random())])[0]] += 1
    for c, p in zip(counts, probs, strict=True):
        assert c / draws == pytest.approx(p, abs=0.012)


def test_top_p_keeps_the_smallest_nucleus_and_renormalises() -> None:
    x = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    rng = random.Random(1)
    counts = [0] * 4
    for _ in range(8000):
        counts[Sampler(candidates=2)(x, [RowParams(1.0, 0.75, rng.random())])[0]] += 1
    assert counts[2] == counts[3] == 0  # 0.5 + 0.3 >= 0.75: the nucleus is the first two
    assert counts[0] / 8000 == pytest.approx(0.5 / 0.8, abs=0.02)


def test_rows_are_independent_of_chunking() -> None:
    x = logits(6, 400, 3)
    rng = random.Random(4)
    rows = [RowParams(1.0 if i % 2 else 0.0, 0.95, rng.random()) for i in range(6)]
    one_chunk = Sampler()(x, rows)
    row_by_row = Sampler(chunk_bytes=1)(x, rows)
    alone = [Sampler()(x[i : i + 1], [rows[i]])[0] for i in range(6)]
    assert one_chunk == row_by_row == alone


def test_infos_are_the_raw_distribution() -> None:
    x = logits(3, 50, 5)
    chosen = [4, 7, 9]
    out = Sampler(chunk_bytes=1).infos(x, chosen, [3, 0, 5])
    logp = torch.log_softmax(x, -1)
    for i, info in enumerate(out):
        assert info.logprob == pytest.approx(float(logp[i, chosen[i]]), abs=1e-5)
        expected = -math.log(50) - float(logp[i].mean())
        assert info.certainty == pytest.approx(expected, abs=1e-4) and info.certainty > 0
    vals, ids = logp[2].topk(5)
    assert out[2].top == pytest.approx(dict(zip(ids.tolist(), vals.tolist(), strict=True)))
    assert out[1].top == {} and len(out[0].top) == 3
