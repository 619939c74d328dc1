"""`Context.ask`: a model call whose replies are not candidates (a judge, an aggregator),
charged as verifier cost and held to the budget like a sample."""

from __future__ import annotations

from testtime.core.budget import Budget
from testtime.core.registry import Params, Spec
from testtime.core.types import Message, Problem
from testtime.generators.fake import FakeGenerator
from testtime.strategies.base import Context

P = Problem.from_prompt("Write a haiku about rain.")
JUDGE = [Message("user", "Which is best? A or B")]


def context(gen: FakeGenerator, budget: Budget | None = None) -> Context:
    return Context(P, gen, spec=Spec("strategy", "usc", Params()), budget=budget)


async def test_replies_are_verifier_cost_not_samples() -> None:
    gen = FakeGenerator({"Which is best": ["A"]}, default=["rain falls"])
    ctx = context(gen)
    (reply,) = await ctx.ask(JUDGE, max_tokens=8)
    assert reply.text == "A" and list(ctx.candidates) == []
    spent = ctx.cost
    assert spent.samples == 0 and spent.generated_tokens == 0 and spent.prompt_tokens == 0
    assert spent.verifier_calls == 1 and spent.verifier_tokens > 0
    assert spent.flops == 2 * gen.n_params * spent.verifier_tokens
    assert gen.requests[-1].messages == tuple(JUDGE)


async def test_a_judge_model_of_its_own_is_charged_at_its_size() -> None:
    policy, judge = FakeGenerator(default=["x"]), FakeGenerator(default=["A"], n_params=10)
    ctx = context(policy)
    await ctx.ask(JUDGE, generator=judge, max_tokens=4)
    assert policy.requests == [] and len(judge.requests) == 1
    assert ctx.cost.flops == 2 * 10 * ctx.cost.verifier_tokens


async def test_the_budget_holds_a_judge_call_to_its_worst_case() -> None:
    gen = FakeGenerator(default=["A"], n_params=1000)
    ctx = context(gen, Budget(flops=2 * 1000 * 100))
    assert await ctx.ask(JUDGE, n=3, max_tokens=40) != []  # 2 of 3 fit at 40 tokens each
    assert len(gen.requests) == 1 and gen.requests[0].n == 2 and ctx.exhausted
    assert await ctx.ask(JUDGE, max_tokens=10_000) == []


async def test_a_samples_ceiling_does_not_count_judge_calls() -> None:
    ctx = context(FakeGenerator(default=["A"]), Budget(samples=1))
    for _ in range(3):
        assert len(await ctx.ask(JUDGE)) == 1
    assert not ctx.exhausted
