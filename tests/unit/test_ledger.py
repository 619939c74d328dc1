"""One ledger for both kinds of search: LLM and diffusion contexts grant by the one rule on
`Budget`, hold work in flight, charge, seed and build results through `core.ledger`; the
seeds are the very values stored pools were drawn with; strategies only ask their context."""

from __future__ import annotations

import ast
import asyncio
import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import testtime.strategies  # noqa: F401  (registers the strategies)
from testtime.core.budget import Budget
from testtime.core.cost import Cost, UnitCost
from testtime.core.ledger import Ledger, call_seed, stream_seed
from testtime.core.registry import Params, Spec
from testtime.core.types import Candidate, Problem
from testtime.generators.fake import FakeGenerator
from testtime.strategies.base import STRATEGIES, Context
from testtime.strategies.policy import Choice, Pilot, Policy
from testtime.strategies.run import solve
from testtime.verifiers.fake import FakeVerifier

P = Problem.from_prompt("What is 3 + 4?", answer="7", id="q")
STRATEGY_DIR = Path(__file__).parents[2] / "src" / "testtime" / "strategies"


def _old_call_seed(seed: int, problem_id: str, call: int) -> int:
    """strategies/base.py's call_seed before the ledger (the lab's pools depend on it)."""
    key = f"{seed}:{problem_id}:{call}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=4).digest(), "little")


def _old_stream_seed(seed: int, problem_id: str, stream: str) -> int:
    """diffusion/base.py's stream_seed before the ledger."""
    key = f"{seed}:{problem_id}:{stream}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


@given(seed=st.integers(0, 2**40), problem=st.text(max_size=30), call=st.integers(0, 10**9))
def test_seeds_are_the_values_stored_pools_were_drawn_with(
    seed: int, problem: str, call: int
) -> None:
    assert call_seed(seed, problem, call) == _old_call_seed(seed, problem, call)
    for stream in ("noise", "resample"):
        assert stream_seed(seed, problem, stream, 63) == _old_stream_seed(seed, problem, stream)


def test_seeds_keep_their_recorded_values() -> None:
    assert call_seed(0, "q", 1) == 1695028976
    assert call_seed(3, "digit-7/0", 2) == 386365034
    ledger = Ledger(problem_id="gmm")
    assert ledger.stream_seed("noise") == 3840472389557349798
    assert Ledger(problem_id="digit-3/1", seed=5).stream_seed("resample") == 5735061983273597554
    assert [ledger.next_call_seed() for _ in range(2)] == [call_seed(0, "gmm", 1),
                                                          call_seed(0, "gmm", 2)]  # fmt: skip


def test_one_rule_counts_shared_once_costs_and_exact_units() -> None:
    nfe = UnitCost(Cost(nfe=10, flops=100.0, samples=2))  # a diffusion pass: exact
    assert Budget(nfe=35).fits(Cost(nfe=5), nfe, 9) == 3
    assert Budget(samples=5).fits(Cost(), nfe, 9) == 2  # two finished images per unit
    assert Budget(flops=1000.0).fits(Cost(flops=1.0), nfe, 9) == 9
    shared = UnitCost(Cost(flops=10.0), once=Cost(flops=50.0))
    assert Budget(flops=100.0).fits(Cost(), shared, 9) == 5
    assert Budget(flops=40.0).fits(Cost(), shared, 9) == 0  # the shared part does not fit
    assert shared.of(0) == Cost() and shared.of(3).flops == 80.0


def test_a_grant_marks_exhaustion_and_a_question_does_not() -> None:
    ledger = Ledger(Budget(samples=3))
    one = UnitCost(Cost(samples=1))
    assert ledger.fits(5, one) == 3 and not ledger.exhausted
    assert ledger.grant(3, one) == 3 and not ledger.exhausted
    assert ledger.grant(4, one) == 3 and ledger.exhausted


def test_work_in_flight_holds_its_worst_case_until_it_ends() -> None:
    ledger = Ledger(Budget(tokens=100))
    unit = UnitCost(Cost(generated_tokens=30))
    with ledger.hold(unit.of(2)):
        assert ledger.fits(3, unit) == 1
    assert ledger.fits(3, unit) == 3
    with pytest.raises(RuntimeError), ledger.hold(unit.of(3)):
        raise RuntimeError("the generator failed")
    assert ledger.fits(3, unit) == 3  # released however the work ended


def test_exact_costs_never_pass_a_ceiling_and_worst_cases_are_settled() -> None:
    exact = Ledger(Budget(nfe=10), exact=True)
    exact.charge(Cost(nfe=10, seconds=99.0))  # seconds may run past a ceiling
    with pytest.raises(AssertionError, match="past the budget"):
        exact.charge(Cost(nfe=1))
    worst = Ledger(Budget(flops=10.0))
    worst.charge(Cost(flops=12.0))  # a verifier's estimate was low: counted, not fatal
    assert worst.spent.flops == 12.0


def test_the_ledger_builds_the_result_of_both_contexts() -> None:
    ledger = Ledger(Budget(samples=1), problem_id="q")
    a = ledger.add(Candidate("x", "7"))
    b = ledger.add(Candidate("y", "8"))
    ledger.update(b.with_score("v", 0.5))
    ledger.grant(2, UnitCost(Cost(samples=1)))
    spec = Spec("strategy", "t", Params())
    r = ledger.result(spec, a, trace={"k": 1}, correct=True)
    assert (r.answer, r.chosen, r.correct, r.budget_exhausted) == ("7", 0, True, True)
    assert [c.id for c in r.candidates] == [0, 1] and r.candidates[1].scores == {"v": 0.5}
    assert r.strategy == spec.to_dict() and r.problem_id == "q"


def test_llm_and_diffusion_contexts_grant_by_the_same_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    from testtime.diffusion.gmm import LinearReward, MixtureDenoiser
    from testtime.diffusion.run import solve as diffuse
    from testtime.diffusion.run import strategy_spec

    asked: list[UnitCost] = []
    rule = Budget.fits

    def spy(self: Budget, spent: Cost, unit: UnitCost, n: int) -> int:
        asked.append(unit)
        return rule(self, spent, unit, n)

    monkeypatch.setattr(Budget, "fits", spy)
    sc = STRATEGIES.spec("self_consistency", {"n": 4})
    r = asyncio.run(solve(P, sc, FakeGenerator(), budget=Budget(samples=2)))
    assert r.cost.samples == 2 and r.budget_exhausted
    assert asked and all(u.each.samples == 1 for u in asked)  # one LLM sample per unit
    asked.clear()
    spec = strategy_spec("best_of_n", {"n": 4, "steps": 5})
    out = diffuse(P, spec, MixtureDenoiser(), LinearReward(), budget=Budget(nfe=10))
    assert out.result.cost.nfe == 10 and out.result.budget_exhausted
    assert asked and {u.each.nfe for u in asked} == {5}  # one denoising pass per unit


def test_contexts_derived_for_another_verifier_share_one_account() -> None:
    gen = FakeGenerator()
    spec = Spec("strategy", "t", Params())
    ctx = Context(P, gen, spec=spec, budget=Budget(samples=3), seed=4)
    scout = ctx.using(FakeVerifier({"7": 1.0}))
    got = asyncio.run(scout.sample(2))
    asyncio.run(scout.score(got))
    assert ctx.verifier is None and scout.verifier is not None
    assert ctx.cost.samples == 2 and len(ctx.candidates) == 2 and "fake" in ctx.candidates[0].scores
    assert len(asyncio.run(ctx.sample(2))) == 1 and ctx.exhausted  # the budget is shared
    assert [q.seed for q in gen.requests] == [call_seed(4, "q", 1), call_seed(4, "q", 2)]
    with pytest.raises(AttributeError):
        ctx.verifier = None  # type: ignore[misc]  # a strategy asks; it never assigns


def test_no_strategy_assigns_to_its_context() -> None:
    def rooted_at_ctx(node: ast.expr) -> bool:
        while isinstance(node, ast.Attribute | ast.Subscript):
            node = node.value
            if isinstance(node, ast.Name) and node.id.endswith("ctx"):
                return True
        return False

    found = []
    for path in sorted(STRATEGY_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            targets = (
                node.targets if isinstance(node, ast.Assign)
                else [node.target] if isinstance(node, ast.AugAssign | ast.AnnAssign) else []
            )  # fmt: skip
            found += [f"{path.name}:{t.lineno}" for t in targets if rooted_at_ctx(t)]
    assert found == []


def _policy(*costs: float) -> Policy:
    def choice(i: int, cost: float) -> Choice:
        return Choice(f"c{i}", {"name": "self_consistency", "params": {}}, None, 1, cost, i / 10)

    frontier = tuple(choice(i, c) for i, c in enumerate(costs))
    return Policy("fake", "", 1, {}, "run", (), 64, "samples", Pilot(2, 0.8, 1.0, "vote"),
                  (), (frontier,))  # fmt: skip


def test_the_one_chooser_credits_what_a_choice_gets_back() -> None:
    policy = _policy(1.0, 4.0, 8.0)
    assert policy.choose(0, 5.0).label == "c1"  # type: ignore[union-attr]
    reused = policy.choose(0, 5.0, refund=lambda c: 3.0 if c.cost > 4 else 0.0)
    assert reused is not None and reused.label == "c2"  # 8 - 3 of pilot reused <= 5
    assert policy.choose(0, 0.5) is None
