"""Running through the one front door: the settings object, the one way to build a task or a
verifier, the one candidate schema, and the `testtime` facade."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

import testtime
from testtime.core.errors import ConfigError
from testtime.core.types import (
    Candidate,
    Completion,
    Problem,
    Result,
    candidate_dict,
    candidate_from_dict,
)
from testtime.generators.fake import FakeGenerator, render
from testtime.strategies.base import STRATEGIES
from testtime.strategies.run import (
    RunOptions,
    RunSettings,
    build_task,
    build_verifier,
    solve,
    solve_many,
)
from testtime.tasks.base import TASKS
from testtime.verifiers.base import VERIFIERS

Q = "What is 3 + 4?"
P = Problem.from_prompt(Q, answer="7", id="q")


def gen() -> FakeGenerator:
    return FakeGenerator.from_answers({Q: {"7": 0.6, "8": 0.4}})


def timeless(r: Result) -> Result:
    """The result without its wall-clock seconds (which differ between two runs)."""
    return dataclasses.replace(r, cost=dataclasses.replace(r.cost, seconds=0.0))


# -- one settings object ----------------------------------------------------------------


async def test_settings_or_their_keywords_run_the_same() -> None:
    task = build_task("arithmetic", {"size": 4})
    spec = STRATEGIES.spec("self_consistency", {"n": 6})
    settings = RunSettings(task=task, max_tokens=64, seed=3)
    given = timeless(await solve(P, spec, gen(), settings))
    spelled = timeless(await solve(P, spec, gen(), task=task, max_tokens=64, seed=3))
    assert given == spelled and given.correct is not None  # the task graded it
    other = await solve(P, spec, gen(), settings, seed=4)  # a keyword overrides the settings
    again = await solve(P, spec, gen(), dataclasses.replace(settings, seed=4))
    assert timeless(other) == timeless(again)
    assert [c.answer for c in other.candidates] != [c.answer for c in given.candidates]


def test_the_keywords_are_the_settings_fields() -> None:
    fields = {f.name for f in dataclasses.fields(RunSettings)}
    assert set(RunOptions.__annotations__) == fields


async def test_no_concurrency_is_refused_rather_than_waiting_forever() -> None:
    spec = STRATEGIES.spec("single")
    with pytest.raises(ConfigError, match="concurrency must be at least 1"):
        await asyncio.wait_for(solve_many([P], spec, gen(), concurrency=0), 5)
    with pytest.raises(ConfigError, match="max_tokens must be in 1"):
        RunSettings(max_tokens=0)


async def test_solve_many_takes_any_iterable_of_problems() -> None:
    problems = (Problem.from_prompt(Q, "7", f"p{i}") for i in range(3))
    results = await solve_many(problems, STRATEGIES.spec("single"), gen())
    assert [r.problem_id for r in results] == ["p0", "p1", "p2"]


# -- one way to build -------------------------------------------------------------------


async def test_a_verifier_from_its_spec_is_wired_to_the_tasks_gold_check() -> None:
    task = build_task(TASKS.spec("arithmetic", {"size": 4}))
    by_spec = build_verifier(VERIFIERS.spec("oracle"), task=task)
    by_name = build_verifier("oracle", {}, task=task)
    cands = [Candidate(render("7"), "7"), Candidate(render("8"), "8")]
    for v in (by_spec, by_name):
        assert (await v.score(P, cands)).values == (1.0, 0.0)
    with pytest.raises(ConfigError, match="gold"):
        build_verifier(VERIFIERS.spec("oracle"))  # no task: nothing to check against


# -- one candidate schema ---------------------------------------------------------------


async def test_a_trace_candidate_loads_back_as_the_candidate() -> None:
    result = await solve(P, STRATEGIES.spec("self_consistency", {"n": 4}), gen())
    dumped = result.to_dict()["candidates"]
    assert [candidate_from_dict(d) for d in dumped] == list(result.candidates)
    assert set(dumped[0]) == set(candidate_dict(Candidate("x")))
    assert dumped[0]["correct"] is None  # a trace's candidates are not graded one by one


def test_a_candidates_tool_calls_survive_the_store_and_trace_schema() -> None:
    from testtime.core.types import ToolCall

    calls = (ToolCall("call_1", "get_weather", '{"city": "Paris"}'), ToolCall("c2", "f", "{}"))
    cand = Candidate("", "CALL", {"v": 0.5}, Completion("", 9, 4, "stop", tool_calls=calls))
    dumped = candidate_dict(cand)
    assert dumped["tool_calls"][0] == calls[0].wire()
    assert candidate_from_dict(dumped) == cand  # ids, names, argument texts and order kept
    assert candidate_dict(Candidate("x"))["tool_calls"] is None


def test_the_older_stored_and_traced_forms_still_load() -> None:
    stored = {"text": "t", "answer": "7", "correct": True, "scores": {"v": 1}, "parent": None,
              "steps": ["a"], "prompt_tokens": 5, "generated_tokens": 3,
              "finish": "stop"}  # fmt: skip
    got = candidate_from_dict(stored, position=2)
    assert got == Candidate("t", "7", {"v": 1.0}, Completion("t", 5, 3, "stop"), ("a",), None, 2)
    traced = {"id": 4, "answer": None, "scores": {}, "text": "u", "parent": 1, "steps": [],
              "generated_tokens": None, "finish_reason": None}  # fmt: skip
    assert candidate_from_dict(traced) == Candidate("u", parent=1, id=4)


# -- the facade -------------------------------------------------------------------------


def test_one_import_reaches_running_building_and_the_registries() -> None:
    assert testtime.solve is solve and testtime.solve_many is solve_many
    assert testtime.build_task is build_task and testtime.RunSettings is RunSettings
    assert testtime.STRATEGIES is STRATEGIES and "self_consistency" in testtime.STRATEGIES.names()
    assert "oracle" in testtime.VERIFIERS.names() and "arithmetic" in testtime.TASKS.names()
    assert callable(testtime.load_generator)
    assert set(testtime.__all__) <= set(dir(testtime))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = testtime.nothing  # type: ignore[attr-defined]


def test_importing_testtime_loads_neither_torch_nor_the_strategies() -> None:
    code = (
        "import sys, testtime; "
        "print(sorted(m for m in ('torch', 'numpy', 'testtime.strategies') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_readme_example_runs_with_one_import() -> None:
    """The Python example of the README (or a docs page) runs as written, on the fake model."""
    root = Path(__file__).resolve().parents[2]
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    blocks = [
        block.split("```", 1)[0]
        for page in pages
        for block in page.read_text().split("```python\n")[1:]
        if "import testtime as tt" in block.split("```", 1)[0]
    ]
    assert blocks, "no Python example with `import testtime as tt` in README.md or docs/"
    for code in blocks:
        imports = [line for line in code.splitlines() if line.startswith(("import", "from"))]
        assert imports == ["import asyncio", "import testtime as tt"]
        code = code.replace('"smollm2-135m"', '"fake"')
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr
        assert 0.0 <= float(out.stdout.split()[0]) <= 1.0
