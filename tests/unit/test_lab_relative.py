"""A verifier whose score depends on the candidates scored with it (`relative`: mbr_exec's
cluster sizes, CodeT's agreement) cannot be replayed from a pool sample by sample: the lab
runs its best-of / weighted arms at each budget and scores no pool with it."""

from __future__ import annotations

from testtime.lab.data.spec import parse_spec
from testtime.verifiers.base import traits_of


def test_relative_verifiers_are_declared_so() -> None:
    assert traits_of("mbr_exec").relative and traits_of("codet").relative
    assert not traits_of("public_tests").relative and not traits_of("oracle").relative


def test_a_relative_verifier_arm_runs_per_budget_and_scores_no_pool() -> None:
    spec = parse_spec(
        {
            "model": "fake",
            "task": {"name": "pyfunc", "params": {"size": 2}},
            "budgets": [1, 4],
            "strategies": [
                {"name": "best_of_n", "verifier": "mbr_exec"},
                {"name": "weighted_majority", "verifier": "codet"},
                {"name": "best_of_n", "verifier": "public_tests"},
                "self_consistency",
            ],
        }
    )
    replay = {arm.label: arm.replay for arm in spec.arms}
    assert replay == {
        "best_of_n[mbr_exec]": None,
        "weighted_majority[codet]": None,
        "best_of_n[public_tests]": "best",
        "self_consistency": "majority",
    }
    pooled = {
        v.name
        for sampling in {a.sampling for a in spec.arms}
        for v in spec.pool_verifiers(sampling)
    }
    assert pooled == {"public_tests"}
