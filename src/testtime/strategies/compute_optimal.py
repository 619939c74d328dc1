"""Compute-optimal scaling (Snell et al. 2024): predict a problem's difficulty from a few
pilot samples, then run what a policy learned to be best for that difficulty at the budget
that is left. The pilot is charged to the budget; no gold answer is used. The pilot is the
problem's first request, drawn as the lab drew its pools, and a chosen strategy that samples
alike gets the pilot's samples as its first ones (`Context.reuse`), so they are paid once.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from testtime.core.budget import Budget, used
from testtime.core.errors import BudgetError, ConfigError
from testtime.core.registry import Params, Spec
from testtime.core.types import Request, Result
from testtime.core.voting import group, leader
from testtime.generators.base import Generator
from testtime.strategies.base import STRATEGIES, Context, Traits, call_seed, strategy, traits_of
from testtime.strategies.policy import Choice, Policy, difficulty, load_policy
from testtime.strategies.run import build_verifier
from testtime.verifiers.base import VERIFIERS, Verifier


@dataclass(frozen=True)
class ComputeOptimalParams(Params):
    policy: str = ""  # the policy file written by `testtime lab allocate RUN_ID --out FILE`
    budget: float = 0.0  # per problem, on the policy's axis (the pilot is always drawn, then
    # the best choice that fits what is left); 0: the context's budget in that unit
    _paths: ClassVar[frozenset[str]] = frozenset({"policy"})  # a server allows some dirs only

    def validate(self) -> None:
        if not self.policy:
            raise ConfigError(
                "compute_optimal needs policy=FILE; write one with "
                "`testtime lab allocate RUN_ID --out policy.json`"
            )
        policy = load_policy(self.policy)  # a missing or damaged file fails before any run
        if policy.pilot.feature == "oracle":
            raise ConfigError(
                f"{self.policy} bins problems by their pass rate (oracle difficulty), which "
                "needs gold answers; use it for analysis, or allocate with --difficulty pilot"
            )
        if self.budget < 0:
            raise ConfigError(f"parameter 'budget' must be >= 0, got {self.budget}")


@strategy(
    "compute_optimal",
    ComputeOptimalParams,
    Traits("budget", budget_is_size=True, examples=({"budget": 8},)),
)
async def compute_optimal(ctx: Context, p: ComputeOptimalParams) -> Result:
    """Compute-optimal scaling (Snell et al. 2024): bin the problem by difficulty predicted
    from pilot samples, then run the policy's best strategy for that bin and what is left."""
    policy = await asyncio.to_thread(load_policy, p.policy)  # file reads: off the event loop
    _check(ctx, policy)
    budget = p.budget or _context_budget(ctx, policy)
    pilot = policy.pilot
    scout = ctx.using(await _verifier(ctx, pilot.verifier))  # the pilot's verifier
    on_axis: dict[str, Any] = {policy.axis: budget}
    if scout.fits(1, under=Budget(**on_axis)) == 0:
        raise BudgetError(
            f"compute_optimal: a budget of {budget:g} {policy.axis} is smaller than one pilot "
            "sample; raise the budget"
        )
    drawn = await scout.sample(
        pilot.samples, temperature=pilot.temperature, top_p=pilot.top_p, logprobs=True
    )
    scores: list[float] = []
    if scout.verifier is not None:
        scores = [scout.verifier_score(c) for c in await scout.score(drawn)]
    hard = difficulty(drawn, pilot.feature, scores)
    bin_ = policy.bin(hard)
    spent = used(ctx.cost, policy.axis)
    left = budget - spent

    def refund(c: Choice) -> float:  # a choice that reuses the pilot gets its cost back
        return spent if _reuses(c, policy) else 0.0

    choice = policy.choose(bin_, left, refund=refund)
    trace = {"difficulty": hard, "bin": bin_, "left": left, "pilot": [c.id for c in drawn]}
    if choice is None:  # nothing the policy knows fits: the pilot's own vote answers
        top = leader(group(drawn, same=ctx.same))
        chosen = drawn[top.members[0]] if top else None
        return ctx.finish(chosen, trace={**trace, "choice": None})
    chosen_ctx = ctx.using(await _verifier(ctx, choice.verifier))
    if drawn:  # none when the context's own budget refused the pilot: nothing to reuse
        first = Request(ctx.problem.messages, n=len(drawn), max_tokens=ctx.max_tokens,
                        temperature=pilot.temperature, top_p=pilot.top_p,
                        seed=call_seed(ctx.seed, ctx.problem.id, 1))  # fmt: skip
        chosen_ctx.reuse(drawn, first)
    spec = STRATEGIES.spec(choice.strategy["name"], choice.strategy["params"])
    inner = await STRATEGIES.build(spec, chosen_ctx)
    made = {"label": choice.label, "budget": choice.budget, "expected": choice.accuracy}
    return replace(inner, trace={**trace, "choice": made, "inner": inner.trace})


def _reuses(choice: Choice, policy: Policy) -> bool:
    """Whether the choice reuses the pilot: a one-request sampling strategy at least as
    wide as the pilot, sampling alike."""
    params = choice.strategy["params"]
    return (
        traits_of(choice.strategy["name"]).one_request
        and int(params.get("n", 0)) >= policy.pilot.samples
        and (params.get("temperature"), params.get("top_p"))
        == (policy.pilot.temperature, policy.pilot.top_p)
    )


def _check(ctx: Context, policy: Policy) -> None:
    gen = ctx.generator
    if gen.name != policy.model or gen.n_params != policy.n_params:
        raise ConfigError(
            f"the policy was made for model {policy.model!r} ({policy.n_params} parameters), "
            f"not {gen.name!r} ({gen.n_params}); allocate a policy from a run of this model"
        )
    if ctx.problem.id in policy.trained_on:
        raise ConfigError(
            f"problem {ctx.problem.id!r} is in the policy's training split (run "
            f"{policy.run}); evaluate on held-out problems (e.g. another task seed)"
        )


def _context_budget(ctx: Context, policy: Policy) -> float:
    value = getattr(ctx.budget, policy.axis)
    if value is None:
        raise ConfigError(
            f"compute_optimal needs a budget in {policy.axis} (its policy's axis): set "
            f"budget=... or give a '{policy.axis}' budget"
        )
    return float(value)


async def _verifier(ctx: Context, named: dict[str, Any] | None) -> Verifier | None:
    """The policy's verifier ({"name", "params"}), shared by every problem run with this
    generator (see `_shared`), got off the event loop (a PRM or probe loads files)."""
    if named is None:
        return None
    params = named.get("params")
    spec = VERIFIERS.spec(str(named["name"]), params if isinstance(params, dict) else {})
    return await asyncio.to_thread(_shared, spec, ctx.generator)


# The verifiers a policy names, built by `build_verifier` once per generator and spec: a
# PRM's or probe's files are read once per model, not once per problem. Weak on the
# generator, so they go with it; the lock makes problems run at once wait for one build.
_BUILT: weakref.WeakKeyDictionary[Generator, dict[Spec, Verifier]] = weakref.WeakKeyDictionary()
_BUILDING = threading.Lock()


def _shared(spec: Spec, generator: Generator) -> Verifier:
    """The verifier `spec` describes for `generator`, built the first time it is asked."""
    with _BUILDING:
        built = _BUILT.setdefault(generator, {})
        if spec not in built:
            built[spec] = build_verifier(spec, generator=generator)
        return built[spec]
