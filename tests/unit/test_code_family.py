"""The `pyfunc` code family: seeded, validated, harder with each level, prompts that show the
signature and the examples, expected values of exact types that the reference reproduces.
(The hidden tests through the real sandbox: tests/integration/test_code_family.py.)"""

from __future__ import annotations

import ast
import re
from typing import Any

import pytest

import testtime.tasks  # noqa: F401  (registers the tasks)
from testtime.core.errors import ConfigError
from testtime.core.types import Problem
from testtime.sandbox.problems import CodeSpec, doctest_cases, extract_code, spec_of
from testtime.tasks.base import TASKS
from testtime.tasks.code_family import MAX_LEVEL, PyfuncTask, generate

LEVELS = range(1, MAX_LEVEL + 1)


def problems(**params: Any) -> list[Problem]:
    return list(TASKS.build(TASKS.spec("pyfunc", {"size": 6} | params)).problems())


def spec(problem: Problem) -> CodeSpec:
    found = spec_of(problem)
    assert found is not None
    return found


def test_the_same_parameters_give_the_same_problems_and_others_differ() -> None:
    first = problems(level=2, seed=5)
    assert first == problems(level=2, seed=5)
    assert [p.id for p in first] == [f"pyfunc-L2-5-{i}" for i in range(6)]
    assert [p.prompt for p in first] != [p.prompt for p in problems(level=2, seed=6)]
    assert [p.prompt for p in first] != [p.prompt for p in problems(level=3, seed=5)]


def test_a_larger_size_adds_problems_and_changes_none() -> None:
    assert problems(level=3, size=10)[:4] == problems(level=3, size=4)


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"level": 0}, "'level' must be 1 to 6"),
        ({"level": MAX_LEVEL + 1}, "'level' must be 1 to 6"),
        ({"size": 0}, "'size' must be > 0"),
        ({"prompt": "chat"}, "'prompt' must be one of 'stub', 'steps', 'prose'"),
        ({"level": "two"}, "'level' must be an integer"),
        ({"depth": 2}, "no parameter 'depth'"),
    ],
)
def test_bad_parameters_are_refused_in_one_line(params: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)) as caught:
        TASKS.spec("pyfunc", params)
    assert "\n" not in str(caught.value)


def test_the_class_refuses_a_bad_level_too() -> None:
    with pytest.raises(ConfigError, match="number of operations"):
        PyfuncTask(level=9, size=1, seed=0)


@pytest.mark.parametrize("level", LEVELS)
def test_each_level_chains_that_many_operations(level: int) -> None:
    for index in range(20):
        chain, _ = generate(level, 0, index)
        assert len(chain.steps) == level
        assert chain.description.count(", then ") == level - 1
        assert chain.reference.count("\n    v = ") == level + 1  # v = x, then one per step
        assert all(a.op is not b.op for a, b in zip(chain.steps, chain.steps[1:], strict=False))
        assert all(
            a.op.gives == b.op.takes for a, b in zip(chain.steps, chain.steps[1:], strict=False)
        )


@pytest.mark.parametrize("prompt", ["stub", "steps", "prose"])
def test_the_prompt_shows_the_signature_the_task_and_the_examples(prompt: str) -> None:
    for problem in problems(level=2, prompt=prompt):
        code = spec(problem)
        chain, _ = generate(2, 0, int(problem.id.rsplit("-", 1)[1]))
        assert chain.signature[:-1] in problem.prompt
        assert all(s.phrase[1:] in problem.prompt for s in chain.steps)
        assert len(code.examples) == 2
        assert doctest_cases(problem.prompt, "f") == code.examples  # shown as doctests
        assert all(e in code.cases for e in code.examples)
        assert code.examples[0].expected != code.examples[1].expected
        if prompt != "prose":
            assert extract_code(problem.prompt, "f") is not None  # a stub in a code block


def test_cases_inputs_and_edges_are_distinct() -> None:
    for problem in problems(level=1, size=30):
        code = spec(problem)
        calls = [c.call for c in code.cases]
        assert len(calls) == len(set(calls)) == 10
        assert not set(code.inputs) & set(calls)
        assert len(code.inputs) == 8
        assert calls[0] in ("f(0)", "f([])", "f('')")  # an edge case first


def exact_type(value: Any, kind: str) -> bool:
    if kind == "int":
        return type(value) is int
    if kind == "list[int]":
        return type(value) is list and all(type(e) is int for e in value)
    return type(value) is str


@pytest.mark.parametrize("level", LEVELS)
def test_expected_values_have_the_signatures_exact_types(level: int) -> None:
    for index in range(30):
        chain, code = generate(level, 1, index)
        returns = chain.signature.rsplit("-> ", 1)[1].rstrip(":")
        assert all(exact_type(c.expected, returns) for c in code.cases), chain.description


@pytest.mark.parametrize("level", LEVELS)
def test_the_reference_source_computes_every_expected_value(level: int) -> None:
    """The generator's own source (trusted, so run here) agrees with the values the parent
    computed from the operations' functions, types included."""
    for index in range(40):
        chain, code = generate(level, 2, index)
        space: dict[str, Any] = {}
        exec(chain.reference, space)  # generator-written text, never model text
        for case in code.cases:
            got = eval(case.call, space)
            assert got == case.expected and type(got) is type(case.expected), chain.reference


@pytest.mark.parametrize("level", LEVELS)
def test_every_operation_changes_some_test(level: int) -> None:
    """Skipping any step (of the same kind in and out) or returning a constant fails a test."""
    for index in range(30):
        chain, code = generate(level, 3, index)
        inputs = [ast.literal_eval(c.call[2:-1]) for c in code.cases]  # f(<literal>)
        assert len({repr(c.expected) for c in code.cases}) >= 2
        for i, step in enumerate(chain.steps):
            if step.op.takes == step.op.gives:
                skipped = [chain(x, skip=i) for x in inputs]
                assert skipped != [c.expected for c in code.cases], (chain.description, i)


def test_the_registry_builds_a_code_task_with_its_record() -> None:
    task = TASKS.build(TASKS.spec("pyfunc", {"level": 1, "size": 2}))
    assert isinstance(task, PyfuncTask) and task.name == "pyfunc"
    problem = task.problems()[0]
    assert task.graded(problem) and problem.metadata["level"] == 1
    assert problem.metadata["reference"].startswith("def f(")
    assert "pyfunc" in TASKS.names()
