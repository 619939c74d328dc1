"""Diffusion strategies on the exact mixture model: budgets in NFE are never exceeded and
a stopped search returns its best so far, saying so; traces are plain data that load
back equal; the searches do what their papers say."""

from __future__ import annotations

import json
from functools import cache

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from testtime.core.budget import Budget
from testtime.core.errors import BudgetError, ConfigError
from testtime.core.types import Problem
from testtime.diffusion.base import DIFFUSION_STRATEGIES, DiffusionTraits, strategy, traits_of
from testtime.diffusion.gmm import LinearReward, MixtureDenoiser
from testtime.diffusion.run import fill, solve, strategy_spec
from testtime.diffusion.search import BestOfNParams, neighbours, path_plan

P = Problem.from_prompt("a point of the mixture", id="gmm")
STRATEGIES = {
    "best_of_n": {"n": 6},
    "zero_order": {"neighbours": 3, "iterations": 3},
    "path_search": {"n": 2, "branches": 3},
    "fk_steering": {"particles": 4, "interval": 2},
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def run(name: str, budget: Budget | None = None, seed: int = 0, **params):  # type: ignore[no-untyped-def]
    spec = strategy_spec(name, {"steps": 10, **STRATEGIES[name], **params})
    return solve(P, spec, MixtureDenoiser(), LinearReward(), budget=budget, seed=seed)


@pytest.mark.parametrize("name", STRATEGIES)
def test_traces_are_plain_data_that_load_back_equal(name: str) -> None:
    out = run(name)
    data = out.result.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert out.result.chosen is not None and len(out.images) == len(out.result.candidates)
    chosen = out.result.candidates[out.result.chosen]
    assert chosen.scores["linear"] == max(c.scores["linear"] for c in out.result.candidates)
    assert not out.result.budget_exhausted


@pytest.mark.parametrize("name", STRATEGIES)
def test_runs_repeat_exactly_under_one_seed(name: str) -> None:
    a, b, c = run(name, seed=3), run(name, seed=3), run(name, seed=4)
    assert torch.equal(a.images, b.images) and a.result.trace == b.result.trace
    assert not torch.equal(a.images, c.images)


@settings(max_examples=20, deadline=None)
@given(
    name=st.sampled_from(sorted(STRATEGIES)),
    budget=st.one_of(
        st.builds(Budget, nfe=st.integers(10, 400)),
        st.builds(Budget, samples=st.integers(1, 12)),
        st.builds(Budget, flops=st.floats(2e4, 4e5)),
    ),
)
def test_budgets_are_never_exceeded_and_the_best_so_far_returns(name: str, budget: Budget) -> None:
    try:
        out = run(name, budget=budget)
    except BudgetError as e:  # too small for one unit of this strategy: refused up front
        assert "smaller than one" in str(e)
        return
    cost = out.result.cost
    assert cost.nfe <= (budget.nfe or 10**9) and cost.samples <= (budget.samples or 10**9)
    assert cost.flops <= (budget.flops or float("inf")) * (1 + 1e-9)
    assert cost.samples == len(out.result.candidates) >= 1 and out.result.chosen is not None
    assert out.result.budget_exhausted == (cost.nfe < _full_nfe(name))


@cache
def _full_nfe(name: str) -> int:
    return run(name).result.cost.nfe


def test_a_budget_below_one_denoising_pass_is_refused_with_what_to_do() -> None:
    with pytest.raises(BudgetError, match=r"smaller than one denoising pass \(10 steps = 10 nfe"):
        run("best_of_n", budget=Budget.parse("9 nfe"))
    pass_flops = 10 * MixtureDenoiser().flops_per_eval() + LinearReward().flops_per_image()
    with pytest.raises(BudgetError, match="smaller than one particle"):  # 5 rewards, not 1
        run("fk_steering", budget=Budget(flops=pass_flops + 1), particles=2)
    with pytest.raises(ConfigError, match="'tokens' does not apply"):
        run("best_of_n", budget=Budget(tokens=100))


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("best_of_n", {"steps": 0}, "'steps' must be > 0"),
        ("best_of_n", {"n": 0}, "'n' must be > 0"),
        ("fk_steering", {"particles": -1}, "'particles' must be > 0"),
        ("fk_steering", {"sampler": "ddim"}, "deterministic sampler"),
        ("fk_steering", {"ess_threshold": 2.0}, "in \\[0, 1\\]"),
        ("zero_order", {"lam": 1.0}, "'lam' must be in \\(0, 1\\)"),
        ("path_search", {"back": 4, "forward": 4}, "must exceed 'back'"),
        ("best_of_n", {"sampler": "heun"}, "must be one of"),
        ("nope", {}, "unknown diffusion strategy 'nope'; available: best_of_n, fk_steering"),
    ],
)
def test_bad_parameters_are_refused_naming_what_is_allowed(name, params, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        strategy_spec(name, params)


def test_zero_order_neighbours_keep_the_norm_at_the_given_cosine() -> None:
    x = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    near = neighbours(x, 5, 0.9, torch.Generator().manual_seed(1))
    flat, xs = x.reshape(1, -1), near.reshape(5, -1)
    assert torch.allclose(xs.norm(dim=1), flat.norm(), rtol=1e-5)
    assert torch.allclose(
        torch.nn.functional.cosine_similarity(xs, flat), torch.tensor(0.9), atol=1e-5
    )


def test_zero_order_moves_its_pivot_only_to_a_better_neighbour() -> None:
    out = run("zero_order", neighbours=4, iterations=6)
    pivot_reward = out.result.candidates[0].scores["linear"]
    for it in out.result.trace["iterations"]:
        assert it["moved"] == (max(it["rewards"]) > pivot_reward)
        pivot_reward = max(pivot_reward, *it["rewards"])


def test_path_search_keeps_the_top_branches_and_reaches_the_end() -> None:
    out = run("path_search", n=2, branches=3, steps=12)
    first, rounds = path_plan(12, strategy_spec("path_search", {"steps": 12}).params)
    reached = [first] + [stop for _, stop in rounds[:-1]]
    assert [start for start, _ in rounds] == [r - 2 for r in reached]  # pushed back 2 steps
    assert all(stop == min(12, start + 4) for start, stop in rounds) and rounds[-1][1] == 12
    for rnd in out.result.trace["rounds"]:
        ranked = sorted(range(len(rnd["rewards"])), key=lambda i: -rnd["rewards"][i])
        assert rnd["kept"] == ranked[:2]
    assert len(out.result.candidates) == 6  # the last round's branches are finished images


def test_fk_steering_raises_the_reward_over_best_of_n_at_equal_nfe() -> None:
    fk = [run("fk_steering", seed=s, lam=5.0, particles=8) for s in range(10)]
    bon = [run("best_of_n", seed=s, n=8, sampler="ddpm") for s in range(10)]
    assert fk[0].result.cost.nfe == bon[0].result.cost.nfe == 80

    def mean_reward(outs) -> float:  # type: ignore[no-untyped-def]
        return sum(sum(c.scores["linear"] for c in o.result.candidates) / 8 for o in outs) / 10

    assert mean_reward(fk) > mean_reward(bon) + 0.5


def test_every_strategy_declares_the_width_an_nfe_budget_fills() -> None:
    assert sorted(STRATEGIES) == DIFFUSION_STRATEGIES.names()  # every one is tested here
    for name in DIFFUSION_STRATEGIES.names():
        spec = fill(strategy_spec(name, {"steps": 10, **STRATEGIES[name]}), 70, 1)
        assert getattr(spec.params, traits_of(name).width) == 7  # passes of 10 nfe in 70
    with pytest.raises(ValueError, match="'eta' is no int field"):
        strategy("eta_search", BestOfNParams, DiffusionTraits(width="eta"))
    assert "eta_search" not in DIFFUSION_STRATEGIES.names()
    assert run("best_of_n").result.strategy["kind"] == "diffusion strategy"  # not the LLM one
