"""Budgets: parsing, exhaustion, and how many worst-case samples fit under each ceiling."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from testtime.core.budget import Budget
from testtime.core.cost import Cost, UnitCost
from testtime.core.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("16", Budget(samples=16)),
        ("16 samples", Budget(samples=16)),
        ("1 sample", Budget(samples=1)),
        ("tokens=4096", Budget(tokens=4096)),
        ("4096 tokens", Budget(tokens=4096)),
        ("2e12 flops", Budget(flops=2e12)),
        ("30s", Budget(seconds=30.0)),
        ("1.5 seconds", Budget(seconds=1.5)),
        ("8 samples, 1e9 FLOPS, 10 sec", Budget(samples=8, flops=1e9, seconds=10.0)),
    ],
)
def test_parse_good(text: str, expected: Budget) -> None:
    assert Budget.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty budget"),
        (" , ", "empty budget"),
        ("lots", "cannot read budget 'lots'"),
        ("16 apples", "cannot read budget"),
        ("1.2.3 tokens", "is not a number"),
        ("2.5 samples", "whole number"),
        ("0 tokens", "must be a positive number"),
        ("-4", "must be a positive number"),
        ("inf flops", "cannot read budget"),
    ],
)
def test_parse_bad(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Budget.parse(text)


def test_str_round_trips() -> None:
    b = Budget(samples=8, tokens=1000, flops=2e9)
    assert str(b) == "8 samples, 1000 tokens, 2e+09 flops"
    assert Budget.parse(str(b)) == b
    assert str(Budget()) == "unlimited"


def test_exhausted_at_any_ceiling() -> None:
    b = Budget(samples=4, tokens=100)
    assert not b.exhausted(Cost(samples=3, generated_tokens=99))
    assert b.exhausted(Cost(samples=4))
    assert b.exhausted(Cost(generated_tokens=100))
    assert not Budget().exhausted(Cost(samples=10**9, flops=1e30))


def sample(max_tokens: int, prompt: int, n_params: int, verifier: float = 0.0) -> UnitCost:
    return UnitCost.sample(n_params, prompt, max_tokens, verifier)


def test_samples_that_fit_each_unit() -> None:
    spent = Cost(samples=2, generated_tokens=50, flops=1000.0)
    fit = lambda b, n=10: b.fits(spent, sample(20, 5, 10), n)  # noqa: E731
    assert fit(Budget()) == 10
    assert fit(Budget(samples=5)) == 3
    assert fit(Budget(tokens=115)) == 3  # (115 - 50) // 20
    # flops: 2*10*5 prefill once, then 2*10*20 per sample: (9000 - 1000 - 100) // 400 = 19
    assert fit(Budget(flops=9000.0), n=30) == 19
    assert fit(Budget(samples=2)) == 0
    assert fit(Budget(seconds=1.0)) == 10
    assert Budget(seconds=1.0).fits(Cost(seconds=1.0), sample(20, 5, 10), 4) == 0


def test_verifier_flops_are_part_of_the_worst_case() -> None:
    b = Budget(flops=10_000.0)
    assert b.fits(Cost(), sample(10, 0, 100), 100) == 5  # 2000 per sample
    assert b.fits(Cost(), sample(10, 0, 100, verifier=3000), 100) == 2


@given(
    samples=st.none() | st.integers(1, 50),
    tokens=st.none() | st.integers(1, 5000),
    flops=st.none() | st.floats(1.0, 1e7),
    spent_samples=st.integers(0, 60),
    spent_tokens=st.integers(0, 6000),
    spent_flops=st.floats(0.0, 2e7),
    n=st.integers(1, 64),
    max_tokens=st.integers(1, 300),
    prompt=st.integers(0, 500),
)
def test_granted_samples_never_overspend(
    samples: int | None,
    tokens: int | None,
    flops: float | None,
    spent_samples: int,
    spent_tokens: int,
    spent_flops: float,
    n: int,
    max_tokens: int,
    prompt: int,
) -> None:
    budget = Budget(samples=samples, tokens=tokens, flops=flops)
    spent = Cost(samples=spent_samples, generated_tokens=spent_tokens, flops=spent_flops)
    k = budget.fits(spent, sample(max_tokens, prompt, 1000), n)
    assert 0 <= k <= n
    if k == 0:
        return
    worst = spent + Cost.of_generation(1000, prompt, 0, k * max_tokens, k)
    assert samples is None or worst.samples <= samples
    assert tokens is None or worst.generated_tokens <= tokens
    assert flops is None or worst.flops <= flops
