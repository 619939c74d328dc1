"""Step-level search on the fake generator with the exact step checker: beam search keeps
exactly the top beams, finds what sampling misses, refuses bad setups. The budgets every
search respects are checked in test_invariants.py."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from testtime.core.budget import Budget
from testtime.core.errors import ConfigError
from testtime.core.resampling import top_k
from testtime.core.types import Problem, Result
from testtime.generators.fake import FakeGenerator
from testtime.strategies.base import STRATEGIES
from testtime.strategies.run import build_verifier, solve
from testtime.verifiers.fake import FakeVerifier

P = Problem.from_prompt("What is (3 + 4) * 2?", answer="14", id="p")
SCRIPT = {
    "3 + 4 = 7\n\n7 * 2 = 14\n\nAnswer: 14": 0.25,
    "3 + 4 = 8\n\n8 * 2 = 16\n\nAnswer: 16": 0.5,
    "3 + 4 = 7\n\n7 * 2 = 15\n\nAnswer: 15": 0.25,
}


def beam(budget: Budget | None = None, seed: int = 0, verifier=None, **params) -> Result:  # type: ignore[no-untyped-def]
    gen = FakeGenerator({P.messages[-1].content: SCRIPT}, n_params=1000)
    spec = STRATEGIES.spec("beam_search", {"n": 8, "width": 2, **params})
    v = verifier or build_verifier("step_check")
    return asyncio.run(solve(P, spec, gen, verifier=v, budget=budget, seed=seed))


def test_beam_search_finds_the_chain_that_stays_right() -> None:
    r = beam()
    assert r.answer == "14"
    first = [c for c in r.candidates if c.parent is None]
    assert len(first) == 8 and any(c.steps == ("3 + 4 = 8",) for c in first)
    chosen = r.candidates[r.chosen]
    assert chosen.steps == ("3 + 4 = 7", "7 * 2 = 14", "Answer: 14")


@pytest.mark.parametrize("seed", range(5))
def test_each_round_keeps_exactly_the_top_beams(seed: int) -> None:
    r = beam(seed=seed, n=8, width=4)
    assert r.trace is not None
    for rnd in r.trace["rounds"]:
        live = [i for i in rnd["scored"] if i not in rnd["finished"]]
        scores = [r.candidates[i].scores["step_check"] for i in live]
        assert rnd["kept"] == [live[j] for j in top_k(scores, 8 // 4)]
        for i in rnd["kept"]:  # every survivor's children name it as their parent
            assert all(c.parent == i for c in r.candidates if c.parent == i)
    assert json.loads(json.dumps(r.to_dict())) == r.to_dict()  # plain data, loads back equal


def test_beam_search_needs_a_process_verifier_and_sane_parameters() -> None:
    gen = FakeGenerator({P.messages[-1].content: SCRIPT})
    spec = STRATEGIES.spec("beam_search")
    with pytest.raises(ConfigError, match="needs a verifier"):
        asyncio.run(solve(P, spec, gen))
    with pytest.raises(ConfigError, match="needs a process verifier"):
        asyncio.run(solve(P, spec, gen, verifier=FakeVerifier({"14": 1.0})))
    for bad, message in (
        ({"width": 0}, "'width' must be > 0"),
        ({"n": -1}, "'n' must be > 0"),
        ({"n": 2, "width": 4}, "at most 'n'"),
        ({"split": "regex", "pattern": "x"}, "stop string"),
    ):
        with pytest.raises(ConfigError, match=message):
            STRATEGIES.spec("beam_search", bad)


def particles(budget: Budget | None = None, seed: int = 0, **params) -> Result:  # type: ignore[no-untyped-def]
    gen = FakeGenerator({P.messages[-1].content: SCRIPT}, n_params=1000)
    spec = STRATEGIES.spec("particle_filtering", {"particles": 8, **params})
    return asyncio.run(solve(P, spec, gen, verifier=build_verifier("step_check"), budget=budget,
                             seed=seed))  # fmt: skip


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"resample": "systematic"},
        {"entropic": True},
        {"ess_threshold": 0.5},
        {"lookahead": True},
    ],
)
def test_particle_filtering_weights_genealogy_and_answer(params: dict) -> None:
    r = particles(**params)
    assert r.answer == "14"
    assert r.trace is not None
    for step in r.trace["steps"]:
        assert sum(step["weights"]) == pytest.approx(1.0)
        assert 1.0 - 1e-9 <= step["ess"] <= 8 + 1e-9
        if step["resampled"]:
            assert len(step["ancestors"]) == 8 and all(0 <= a < 8 for a in step["ancestors"])
            assert step["temperature"] >= 1.0
        elif params.get("ess_threshold", 1.0) < 1.0:
            assert step["ess"] >= 0.5 * 8
    for c in r.candidates:  # every particle extends the one it was resampled from
        if c.parent is not None:
            assert c.text.startswith(r.candidates[c.parent].text)
    assert json.loads(json.dumps(r.to_dict())) == r.to_dict()


def test_resampling_drops_particles_whose_step_went_wrong() -> None:
    r = particles(seed=3)
    first = r.trace["steps"][0]
    wrong = {c.id for c in r.candidates if c.steps == ("3 + 4 = 8",)}
    assert wrong and not wrong & {first["particles"][a] for a in first["ancestors"]}


def test_particle_filtering_refuses_bad_setups() -> None:
    gen = FakeGenerator({P.messages[-1].content: SCRIPT})
    with pytest.raises(ConfigError, match="needs a process verifier"):
        asyncio.run(solve(P, STRATEGIES.spec("particle_filtering"), gen,
                          verifier=FakeVerifier({"14": 1.0})))  # fmt: skip
    for bad, message in (
        ({"particles": 0}, "'particles' must be > 0"),
        ({"ess_threshold": 1.5}, "'ess_threshold'"),
        ({"resample": "stratified"}, "'resample' must be one of"),
        ({"split": "regex", "pattern": "x"}, "stop string"),
    ):
        with pytest.raises(ConfigError, match=message):
            STRATEGIES.spec("particle_filtering", bad)


def _search(name: str, budget: Budget | None = None, seed: int = 0, **params) -> Result:  # type: ignore[no-untyped-def]
    gen = FakeGenerator({P.messages[-1].content: SCRIPT}, n_params=1000)
    spec = STRATEGIES.spec(name, params)
    return asyncio.run(solve(P, spec, gen, verifier=build_verifier("step_check"), budget=budget,
                             seed=seed))  # fmt: skip


@given(st.lists(st.floats(-3, 3), min_size=1, max_size=8), st.integers(0, 20),
       st.sampled_from([0.05, 0.2, 1.0]))  # fmt: skip
def test_rebase_allocation_spends_the_width_best_first(scores, width, temperature) -> None:
    from testtime.core.resampling import rebase_allocate

    counts = rebase_allocate(scores, width, temperature)
    assert sum(counts) == width and all(c >= 0 for c in counts)
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    assert counts[order[0]] == max(counts)  # the best node gets the most children


@pytest.mark.parametrize("name", ["rebase", "dvts"])
@pytest.mark.parametrize("seed", range(3))
def test_tree_searches_find_the_right_chain(name: str, seed: int) -> None:
    r = _search(name, seed=seed, **({"n": 16, "width": 4} if name == "dvts" else {"n": 8}))
    assert r.answer == "14"
    assert json.loads(json.dumps(r.to_dict())) == r.to_dict()


def test_rebase_leaves_spend_the_width() -> None:
    r = _search("rebase", n=8)
    assert r.trace is not None
    assert len(r.trace["leaves"]) <= 8
    spent = 0
    for rnd in r.trace["rounds"]:
        assert sum(rnd["allocation"]) == 8 - spent
        spent += len(rnd["leaves"])


@pytest.mark.parametrize("rollout", [False, True])
@pytest.mark.parametrize("seed", [1, 2, 3])  # seed 0 draws four wrong first steps: no recovery
def test_mcts_visit_counts_add_up_and_it_finds_the_chain(rollout: bool, seed: int) -> None:
    r = _search("mcts", seed=seed, iterations=12, rollout=rollout)
    assert r.answer == "14"
    tree = r.trace["tree"]
    for i, node in enumerate(tree):
        below = sum(tree[j]["visits"] for j in node["children"])
        revisits = node["visits"] - below - (0 if i == 0 else 1)
        assert revisits >= 0  # own evaluation (+ revisits of a finished leaf) + children's
        if node["children"] and i == 0:
            assert node["visits"] == below
    assert json.loads(json.dumps(r.to_dict())) == r.to_dict()


def test_look_ahead_is_charged() -> None:
    plain, ahead = particles(seed=1), particles(seed=1, lookahead=True)
    assert ahead.cost.samples > plain.cost.samples and ahead.answer == "14"
