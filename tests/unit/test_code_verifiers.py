"""The code verifiers that read no gold (public_tests, codet, mbr_exec) in the real sandbox:
each one's ranking of hand-made programs (right, wrong, no code, a crash, an endless loop),
CodeT's dual-agreement arithmetic, mbr_exec's clusters, what scoring costs, the error paths,
and the parallel strategies run with each on a code problem, unchanged.

Where bwrap cannot run, these tests FAIL with the install hint (never a silent skip); set
TESTTIME_NO_SANDBOX_TESTS=1 only on a machine that cannot have it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import testtime.verifiers  # noqa: F401  (registers the verifiers)
from testtime.core.cost import Cost, flops
from testtime.core.errors import ConfigError
from testtime.core.types import Candidate, Problem
from testtime.generators.fake import FakeGenerator
from testtime.sandbox import Case, Execution, Verdict
from testtime.sandbox.problems import CodeSpec
from testtime.strategies.base import STRATEGIES
from testtime.strategies.run import build_verifier, solve
from testtime.tasks.code import CodeTask, code_problem
from testtime.verifiers.base import VERIFIERS, Verifier, VerifierDeps, traits_of
from testtime.verifiers.codet import dual_agreement, generated_tests
from testtime.verifiers.mbr_exec import behaviour, cluster_shares, generated_inputs
from testtime.verifiers.sandboxed import run_each

pytestmark = pytest.mark.sandbox  # the real jail must work (tests/conftest.py)


SPEC = CodeSpec(
    "add",
    cases=(Case("add(5, 5)", 10), Case("add(2, -7)", -5)),  # hidden: no verifier here reads them
    examples=(Case("add(1, 2)", 3), Case("add(0, 0)", 0)),
    inputs=("add(-1, 1)",),
)
P = code_problem(SPEC, "Return the sum of a and b.", "add")
RIGHT = "def add(a, b):\n    return a + b"
RIGHT2 = "def add(x, y):\n    total = y + x\n    return total"  # another text, same behaviour
WRONG = "def add(a, b):\n    return a - b"  # passes add(0, 0) == 0 only
CRASH = "def add(a, b):\n    raise ValueError('no')"
LOOP = "def add(a, b):\n    while True:\n        pass"
NEGATIVE = "def add(a, b):\n    assert a >= 0\n    return a + b"  # raises on add(-1, 1) only
CODES: tuple[str | None, ...] = (RIGHT, RIGHT2, WRONG, None, CRASH, LOOP)
QUICK = 1.0  # wall seconds: the endless loop is cut off after this


def candidates(*codes: str | None) -> list[Candidate]:
    return [
        Candidate(f"```python\n{c}\n```" if c else "no code", c, id=i) for i, c in enumerate(codes)
    ]


def verifier(name: str, generator: FakeGenerator | None = None, **params: Any) -> Verifier:
    return VERIFIERS.build(VERIFIERS.spec(name, params), VerifierDeps(generator=generator))


async def scored(v: Verifier, codes: Sequence[str | None], problem: Problem = P) -> list[float]:
    return list((await v.score(problem, candidates(*codes))).values)


TESTS = """Here are tests:
```python
assert add(1, 1) == 2
assert add(2, 3) == 5
assert add(2,3) == 5
assert add(3, 1) == 2
assert add(x, 1) == 2
assert len(add(1, 1)) == 2
assert sum([1]) == 1
```"""


def writer(texts: Sequence[str] = (TESTS,)) -> FakeGenerator:
    return FakeGenerator({"Write test cases": list(texts)})


# -- public_tests ----------------------------------------------------------------------------


async def test_public_tests_scores_the_share_of_examples_passed() -> None:
    got = await verifier("public_tests", wall_seconds=QUICK).score(P, candidates(*CODES))
    # right twice, wrong passes add(0, 0) only; no code, a crash and a timeout pass nothing
    assert list(got.values) == [1.0, 1.0, 0.5, 0.0, 0.0, 0.0]
    assert got.cost.sandbox_seconds >= QUICK  # the loop ran to its deadline
    assert got.cost.verifier_tokens == 0 and got.cost.flops == 0


async def test_public_tests_without_examples_is_neutral_and_runs_nothing() -> None:
    bare = code_problem(CodeSpec("add", cases=SPEC.cases), "Add.", "bare")
    got = await verifier("public_tests").score(bare, candidates(RIGHT, None, WRONG))
    assert got.values == (0.5, 0.0, 0.5) and got.cost == Cost()


async def test_each_distinct_program_runs_once_however_many_give_it() -> None:
    ran: list[str] = []

    async def run(code: str) -> Execution:
        ran.append(code)
        return Execution(Verdict.PASSED, 1, 1, 0.25, "", "", "")

    runs, seconds = await run_each([RIGHT, None, WRONG, RIGHT, RIGHT], run)
    assert ran == [RIGHT, WRONG] and seconds == 0.5
    assert runs[1] is None and runs[0] is runs[3] is runs[4] is not runs[2]


# -- codet -----------------------------------------------------------------------------------


def test_dual_agreement_on_a_known_example() -> None:
    """Three tests; sets {0,1} (two programs), {2}, {} and {0,1,2}; one without code.
    Scores: |programs| x |tests| over 6 candidates x 3 tests."""
    passed = [frozenset({0, 1}), frozenset({0, 1}), frozenset({2}), None, frozenset(),
              frozenset({0, 1, 2})]  # fmt: skip
    assert dual_agreement(passed, 3) == [4 / 18, 4 / 18, 1 / 18, 0.0, 0.0, 3 / 18]
    # a larger consensus on fewer tests beats a lone program passing more (CodeT's point)
    assert dual_agreement([frozenset({0})] * 3 + [frozenset({0, 1})], 2) == [3 / 8] * 3 + [2 / 8]
    with pytest.raises(ValueError):
        dual_agreement(passed, 0)


def test_generated_tests_keep_distinct_entry_calls_on_literals(tmp_path: Path) -> None:
    marker = tmp_path / "evaluated"
    hostile = [
        f"assert add(__import__('pathlib').Path('{marker}').touch(), 1) == 1",
        f"assert add(1, 1) == __import__('pathlib').Path('{marker}').touch()",
        "assert add(1, 1) == b'bytes'",  # a literal no run can return (not plain data)
        "assert add(1, 1 ==",
    ]
    got = generated_tests([TESTS, "\n".join(hostile)], "add")
    assert got == [Case("add(1, 1)", 2), Case("add(2, 3)", 5), Case("add(3, 1)", 2)]
    assert not marker.exists()  # model text was only parsed, never evaluated here


async def test_codet_ranks_by_dual_agreement_and_charges_the_writer() -> None:
    gen = writer()
    v = verifier("codet", gen, samples=3, temperature=0.5, max_tokens=120, wall_seconds=QUICK)
    got = await v.score(P, candidates(*CODES))
    # tests add(1,1)==2, add(2,3)==5, add(3,1)==2: right and right2 pass {0,1}; wrong
    # (a - b) passes {2}; the crash and the loop pass none; 6 candidates x 3 tests
    assert list(got.values) == [4 / 18, 4 / 18, 1 / 18, 0.0, 0.0, 0.0]
    (asked,) = gen.requests
    assert (asked.n, asked.temperature, asked.max_tokens) == (3, 0.5, 120)
    assert "Return the sum of a and b." in asked.messages[-1].content
    assert "assert add(" in asked.messages[-1].content
    assert got.cost.sandbox_seconds >= QUICK
    assert got.cost.verifier_calls == 1 and got.cost.verifier_tokens > 0
    assert got.cost.flops == flops(gen.n_params, got.cost.verifier_tokens)
    assert got.cost.flops <= v.flops_per_candidate(P)  # the budget's bound holds


async def test_codet_seeds_its_request_per_problem() -> None:
    a, b = writer(), writer()
    await verifier("codet", a, seed=3).score(P, candidates(RIGHT))
    await verifier("codet", b, seed=3).score(P, candidates(RIGHT))
    await verifier("codet", b, seed=4).score(P, candidates(RIGHT))
    assert a.requests[0].seed == b.requests[0].seed != b.requests[1].seed
    assert (await verifier("codet", a).score(P, [])).values == () and len(a.requests) == 1


async def test_codet_without_usable_tests_is_neutral_unless_examples_join() -> None:
    gen = writer(["I would rather not."])
    got = await verifier("codet", gen).score(P, candidates(RIGHT, WRONG, None))
    assert got.values == (0.5, 0.5, 0.0) and got.cost.sandbox_seconds == 0
    assert got.cost.verifier_tokens > 0
    with_examples = verifier("codet", writer(["nothing"]), public_examples=True)
    # the two examples: right passes both, wrong passes add(0, 0) only; 3 x 2
    assert await scored(with_examples, [RIGHT, WRONG, None]) == [2 / 6, 1 / 6, 0.0]


# -- mbr_exec --------------------------------------------------------------------------------


def test_cluster_shares_count_equal_behaviours() -> None:
    assert cluster_shares(["a", "b", "a", None, "a"]) == [0.6, 0.2, 0.6, 0.0, 0.6]
    assert cluster_shares([]) == []


def test_a_run_that_returned_no_value_has_no_behaviour() -> None:
    def run(verdict: Verdict, *values: Any) -> Execution:
        return Execution(verdict, 0, len(values), 0.1, "", "", "", values=values)

    three = ["int", 3]
    assert behaviour(run(Verdict.FAILED, three, None)) == (json.dumps(three), "error")
    assert behaviour(run(Verdict.ERROR, None, None)) is None  # the jail did not start
    assert behaviour(run(Verdict.TIMEOUT, None, None)) is None
    assert behaviour(run(Verdict.FAILED, None, None)) is None  # every call raised


async def test_mbr_exec_scores_cluster_sizes() -> None:
    codes = (*CODES, NEGATIVE, NEGATIVE + "  # the same program, another text")
    got = await verifier("mbr_exec", wall_seconds=QUICK).score(P, candidates(*codes))
    # on add(1, 2), add(0, 0), add(-1, 1): right and right2 give (3, 0, 0); wrong
    # (-1, 0, -2); the two NEGATIVEs (3, 0, error); no code, a crash on every input and
    # the timeout join no cluster; 8 candidates
    assert list(got.values) == [2 / 8, 2 / 8, 1 / 8, 0.0, 0.0, 0.0, 2 / 8, 2 / 8]
    assert got.cost.sandbox_seconds >= QUICK and got.cost.verifier_tokens == 0


async def test_mbr_exec_tells_return_types_apart() -> None:
    floats = "def add(a, b):\n    return float(a + b)"
    assert await scored(verifier("mbr_exec"), [RIGHT, floats, RIGHT2]) == [2 / 3, 1 / 3, 2 / 3]


async def test_mbr_exec_adds_model_written_inputs_and_charges_them() -> None:
    bare = code_problem(CodeSpec("add", cases=SPEC.cases), "Return the sum.", "bare")
    same_on_zero = "def add(a, b):\n    return a * b if a == 0 else a + b"
    v = verifier("mbr_exec", FakeGenerator({"Write inputs": ["add(0, 0)\n"]}), generated_inputs=1)
    assert await scored(v, [RIGHT, same_on_zero], bare) == [1.0, 1.0]  # alike on (0, 0)
    gen = FakeGenerator({"Write inputs": ["```python\nadd(0, 5)\n>>> add(2, 2)\nadd(x)\n```"]})
    v = verifier("mbr_exec", gen, generated_inputs=2, max_tokens=50)
    got = await v.score(bare, candidates(RIGHT, same_on_zero))
    assert got.values == (0.5, 0.5)  # add(0, 5) tells them apart
    assert (gen.requests[0].n, gen.requests[0].max_tokens) == (2, 50)
    assert got.cost.verifier_tokens > 0 and got.cost.sandbox_seconds > 0
    assert 0 < got.cost.flops <= v.flops_per_candidate(bare)


def test_generated_inputs_are_entry_calls_on_literals(tmp_path: Path) -> None:
    marker = tmp_path / "evaluated"
    text = (
        "add(1, 2)\n>>> add(1,2)\nassert add(3, 4) == 7\nadd(b=1, a=[1, 2]) == 3\n"
        f"add(__import__('pathlib').Path('{marker}').touch())\nprint(add(1, 2))\nadd(*xs)\n"
    )
    assert generated_inputs([text], "add") == ["add(1, 2)", "add(3, 4)", "add(b=1, a=[1, 2])"]
    assert not marker.exists()


async def test_mbr_exec_without_inputs_scores_code_alike_and_goes_on() -> None:
    bare = code_problem(CodeSpec("add", cases=SPEC.cases), "Add.", "bare")
    assert await scored(verifier("mbr_exec"), [RIGHT, WRONG, None], bare) == [2 / 3, 2 / 3, 0.0]
    # asked, the model wrote none: every program is alike on no input
    silent = verifier("mbr_exec", FakeGenerator({"Write inputs": ["no"]}), generated_inputs=1)
    assert await scored(silent, [RIGHT, WRONG, None], bare) == [2 / 3, 2 / 3, 0.0]


# -- what every code verifier shares ---------------------------------------------------------


@pytest.mark.parametrize("name", ["public_tests", "codet", "mbr_exec"])
async def test_a_problem_without_code_is_refused_in_one_line(name: str) -> None:
    text = Problem.from_prompt("What is 3 + 4?", answer="7", id="q")
    with pytest.raises(ConfigError, match=f"verifier '{name}' .* --task humaneval"):
        await verifier(name, writer()).score(text, candidates(RIGHT))


def test_traits_no_gold_and_relative_where_the_others_count() -> None:
    for name, relative in (("public_tests", False), ("codet", True), ("mbr_exec", True)):
        traits = traits_of(name)
        assert not traits.reads_gold and not traits.loads_file and not traits.needs_logprobs
        assert traits.relative is relative


@pytest.mark.parametrize(
    ("name", "params", "says"),
    [
        ("codet", {}, "needs a model to write tests"),
        ("mbr_exec", {"generated_inputs": 2}, "needs a model to write inputs"),
    ],
)
def test_a_verifier_that_asks_a_model_needs_one(
    name: str, params: dict[str, Any], says: str
) -> None:
    with pytest.raises(ConfigError, match=says):
        verifier(name, None, **params)
    verifier("mbr_exec")  # without generated inputs it asks nothing


@pytest.mark.parametrize(
    ("name", "params", "says"),
    [
        ("public_tests", {"wall_seconds": 0}, "'wall_seconds' must be in"),
        ("mbr_exec", {"wall_seconds": 600}, "'wall_seconds' must be in"),
        ("codet", {"samples": 0}, "'samples' must be > 0"),
        ("codet", {"temperature": -1}, "'temperature' must be >= 0"),
        ("codet", {"prompt": "Tests for {entry}, please."}, "lacks {problem}"),
        ("mbr_exec", {"prompt": "{problem} {nope}"}, "may use {problem}, {entry}"),
        ("mbr_exec", {"generated_inputs": -1}, "'generated_inputs' must be >= 0"),
    ],
)
def test_bad_parameters_say_what_is_allowed(name: str, params: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError, match=says.replace("{", r"\{").replace("}", r"\}")):
        VERIFIERS.spec(name, params)


# -- every parallel strategy works with them, unchanged ----------------------------------------


class AddTask(CodeTask):
    def problems(self) -> Sequence[Problem]:
        return [P]


def replies(*codes: str | None) -> list[str]:
    return [f"Here it is:\n```python\n{c}\n```" if c else "I cannot." for c in codes]


# the policy's samples, in turn: the right program is the most frequent; a wrong one first
SAMPLES = replies(WRONG, RIGHT, CRASH, RIGHT, None)


@pytest.mark.parametrize("name", ["public_tests", "codet", "mbr_exec"])
@pytest.mark.parametrize(
    "strategy", ["best_of_n", "weighted_majority", "best_of_majority", "self_consistency"]
)
async def test_parallel_strategies_pick_the_right_program(name: str, strategy: str) -> None:
    gen = FakeGenerator({"Write test cases": [TESTS], P.prompt: SAMPLES})
    task = AddTask()
    v = build_verifier(name, {}, task=task, generator=gen)
    r = await solve(P, STRATEGIES.spec(strategy, {"n": 5}), gen, task=task, verifier=v)
    assert r.answer == RIGHT and r.correct
    scores = {c.id: c.scores[name] for c in r.candidates if name in c.scores}
    if strategy == "self_consistency":
        assert scores == {}  # it never asks a verifier
        return
    assert r.cost.sandbox_seconds > 0
    assert (r.cost.verifier_tokens > 0) == (name == "codet")
    assert scores[1] == scores[3] > scores[0]  # the two copies count as two
    # best-of-majority scores only answers sampled often enough: never one without code
    assert scores.get(4) == (None if strategy == "best_of_majority" else 0.0)
