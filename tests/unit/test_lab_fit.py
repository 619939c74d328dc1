"""The coverage-law fit on synthetic data with known a and b, saturation, the verifier
ceiling and the Pareto frontier on hand-computed examples."""

from __future__ import annotations

import builtins
import itertools
import math

import numpy as np
import pytest

from testtime.core.errors import ConfigError
from testtime.lab.analysis import fit


def test_log_spaced() -> None:
    ks = fit.log_spaced(10_000, 40)
    assert ks[0] == 1 and ks[-1] == 10_000 and ks == sorted(set(ks))
    assert 30 <= len(ks) <= 40
    ratios = [b / a for a, b in itertools.pairwise(ks[10:])]
    assert max(ratios) / min(ratios) < 1.2  # evenly spaced in log k once k is large
    assert fit.log_spaced(1) == [1]
    assert fit.log_spaced(5, 40) == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError):
        fit.log_spaced(0)


@pytest.mark.parametrize(("a", "b", "noise"), [(-1.2, -0.35, 0.0), (-1.2, -0.35, 0.004),
                                                (-3.0, -0.6, 0.0), (-3.0, -0.6, 0.004),
                                                (-0.8, -0.2, 0.002)])  # fmt: skip
def test_coverage_law_recovers_a_and_b(a: float, b: float, noise: float) -> None:
    ks = fit.log_spaced(10_000, 40)
    rng = np.random.default_rng(1)
    cov = [min(1.0, max(0.0, math.exp(a * k**b) + rng.normal(0, noise))) for k in ks]
    got = fit.fit_coverage(ks, cov)
    assert got is not None
    assert got.a == pytest.approx(a, rel=0.05) and got.b == pytest.approx(b, rel=0.05)
    assert got.r2 > 0.99
    assert got.ks == tuple(ks)
    assert got.predict(100) == pytest.approx(math.exp(a * 100**b), abs=0.01)


def test_coverage_law_needs_three_points_inside_zero_and_one() -> None:
    assert fit.fit_coverage([1, 2, 4], [1.0, 1.0, 1.0]) is None
    assert fit.fit_coverage([1, 2, 4, 8], [0.0, 0.0, 0.0, 0.0]) is None
    assert fit.fit_coverage([1, 2, 4, 8], [0.0, 0.2, 0.4, 1.0]) is None
    assert fit.fit_coverage([1, 2], [0.2, 0.4]) is None
    with pytest.raises(ValueError):
        fit.fit_coverage([1, 2, 4], [0.2, 0.4])


def test_coverage_law_asks_for_scipy_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    real = builtins.__import__

    def no_scipy(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("scipy"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_scipy)
    with pytest.raises(ConfigError, match=r"testtime\[lab\]"):
        fit.fit_coverage([1, 2, 4, 8], [0.2, 0.3, 0.4, 0.5])


def test_saturation() -> None:
    ks = [1, 2, 4, 8, 16, 32]
    assert fit.saturation(ks, [0.2, 0.3, 0.40, 0.45, 0.452, 0.453]) == 8
    assert fit.saturation(ks, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]) is None  # still climbing
    assert fit.saturation(ks, [0.5] * 6) == 1
    # a noisy high point at 2 is flat on its own, but 4 still gains: the climb goes on
    assert fit.saturation(ks, [0.2, 0.5, 0.3, 0.45, 0.455, 0.458]) == 8
    # drops count as flat
    assert fit.saturation(ks, [0.2, 0.3, 0.5, 0.49, 0.48, 0.485]) == 4
    # the last judged k (16, against 32) decides whether the curve has saturated at all
    assert fit.saturation(ks, [0.2, 0.3, 0.5, 0.5, 0.5, 0.52]) is None
    assert fit.saturation([1], [0.3]) is None  # nothing to compare against
    assert fit.saturation([4, 1, 2], [0.5, 0.5, 0.5]) == 1  # order of input does not matter
    with pytest.raises(ValueError):
        fit.saturation([1, 1], [0.1, 0.2])


def test_verifier_ceiling() -> None:
    # problem 1: accepted are 0.9 (correct), 0.8 and 0.7 (wrong): 1 / 3
    # problem 2: nothing accepted: 0;  problem 3: 0.5 accepted and correct: 1
    ceiling = fit.verifier_ceiling(
        [[True, False, False, False], [False, False], [True, False]],
        [[0.9, 0.8, 0.2, 0.7], [0.1, 0.3], [0.5, 0.4]],
        "v",
    )
    assert ceiling.verifier == "v" and ceiling.threshold == 0.5
    assert ceiling.value == pytest.approx((1 / 3 + 0 + 1) / 3)
    assert ceiling.true_positive_rate == 1.0  # both correct samples accepted
    assert ceiling.false_positive_rate == pytest.approx(2 / 6)  # 2 of 6 wrong accepted
    strict = fit.verifier_ceiling([[True, False]], [[0.6, 0.95]], "v", threshold=0.9)
    assert (strict.value, strict.true_positive_rate, strict.false_positive_rate) == (0, 0, 1)
    none_wrong = fit.verifier_ceiling([[True]], [[0.1]], "v")
    assert none_wrong.false_positive_rate == 0.0 and none_wrong.value == 0.0
    with pytest.raises(ValueError):
        fit.verifier_ceiling([[True]], [[0.1, 0.2]], "v")


def test_pareto() -> None:
    points = [
        ("a", 1, 1.0, 0.5),
        ("a", 2, 2.0, 0.6),
        ("b", 1, 2.0, 0.55),  # same cost as a@2, less accurate: dominated
        ("b", 2, 3.0, 0.6),  # more cost, same accuracy as a@2: dominated
        ("c", 1, 1.0, 0.5),  # an exact duplicate of a@1: neither beats the other
        ("c", 2, 0.5, 0.1),  # cheapest: on the frontier
        ("d", 1, 4.0, 0.9),
        ("d", 2, 5.0, 0.8),
    ]
    assert fit.pareto(points) == [("c", 2), ("a", 1), ("c", 1), ("a", 2), ("d", 1)]
    assert fit.pareto([]) == []
