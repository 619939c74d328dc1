"""Tasks: the reasoning-gym adapter (scorer must give 1.0), the default task, and JSONL files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import testtime.tasks  # noqa: F401  (registers the tasks)
from testtime.core.errors import ConfigError, DataError
from testtime.core.types import Problem
from testtime.tasks.base import TASKS, Task
from testtime.tasks.reasoning_gym import ARITHMETIC_CONFIG, ARITHMETIC_DATASET

SMALL = '{"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}'


def task(name: str, **params: Any) -> Task:
    spec = TASKS.spec(name, params)
    return TASKS.build(spec)


def gym(**params: Any) -> Task:
    return task("reasoning_gym", **{"dataset": "chain_sum", "config": SMALL, "size": 5} | params)


# -- reasoning-gym ----------------------------------------------------------------------


def test_problems_have_stable_ids_gold_answers_and_the_prompt_template() -> None:
    first, again = gym(seed=3).problems(), gym(seed=3).problems()
    assert [p.id for p in first] == [f"chain_sum-3-{i}" for i in range(5)]
    assert first == again
    assert all(p.answer is not None and p.answer.lstrip("-").isdigit() for p in first)
    assert all("final answer on the last line" in p.prompt for p in first)


def test_the_seed_and_the_config_change_the_problems() -> None:
    assert [p.prompt for p in gym(seed=1).problems()] != [p.prompt for p in gym(seed=2).problems()]
    three = gym(config='{"min_terms": 3, "max_terms": 3, "max_digits": 1}').problems()
    assert all(p.metadata["entry"]["metadata"]["num_terms"] == 3 for p in three)


def test_only_a_full_score_counts_as_correct() -> None:
    t = gym(dataset="basic_arithmetic", config="{}", size=20)
    p = next(p for p in t.problems() if p.answer and len(p.answer) == 1)
    wrong = "1" + p.answer  # the scorer gives partial credit: gold is contained in it
    partial = t._data.score_answer(wrong, dict(p.metadata["entry"]))  # type: ignore[attr-defined]
    assert 0 < partial < 1
    assert not t.check(p, wrong)
    assert t.check(p, p.answer)
    assert t.check(p, f" {p.answer}.0 ")  # the same number, written differently
    assert not t.check(p, None)


def test_answers_are_extracted_before_checking() -> None:
    t = gym()
    p = t.problems()[0]
    assert p.answer is not None
    restated = f"We need {p.prompt.splitlines()[0]}\nSo the sum is:\n{p.answer}"
    assert t.check(p, t.extract(restated))
    assert not t.check(p, t.extract(f"The answer is {p.answer}.\nOr maybe 1000"))


def test_a_custom_prompt_and_the_raw_question() -> None:
    custom = gym(prompt="Q: {question}\nA:").problems()[0]
    raw = gym(prompt="raw").problems()[0]
    assert custom.prompt == f"Q: {raw.prompt}\nA:"


def test_few_shot_prompts_show_worked_examples_and_cut_the_next_question() -> None:
    t = gym(prompt="few_shot")
    p = t.problems()[0]
    question = gym(prompt="raw").problems()[0].prompt
    assert p.prompt.count("Question:") == 5 and p.prompt.endswith(f"{question}\nAnswer:")
    assert p.prompt.count("\nAnswer: ") == 4  # four examples with their answers
    assert t.extract(" 7\n\nQuestion: 1 + 1 =\nAnswer: 2") == "7"


def test_worked_prompts_solve_examples_one_checked_calculation_per_paragraph() -> None:
    from testtime.core.arith import equations

    config = '{"min_terms": 3, "max_terms": 4, "min_digits": 1, "max_digits": 1}'
    t = gym(prompt="worked", config=config)
    p = t.problems()[0]
    examples = p.prompt.split("Problem: ")[1:-1]
    assert len(examples) == 4 and p.prompt.endswith("\nSolution:")
    for example in examples:
        steps = example.split("Solution:\n")[1].strip().split("\n\n")
        found = [equations(s) for s in steps[:-1]]
        assert len(steps) >= 3 and all(len(f) == 1 and f[0].holds for f in found)
        assert steps[-2].endswith(f"= {steps[-1]}")  # the last step gives the answer line
    assert t.extract("1 + 2 = 3\n\n3\n\nProblem: 1 + 1 =") == "3"


def test_worked_prompts_refuse_a_dataset_without_arithmetic_questions() -> None:
    with pytest.raises(ConfigError, match="few_shot"):
        gym(prompt="worked", dataset="leg_counting", config="{}")


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"dataset": "no_such_set"}, "chain_sum"),  # the error lists the datasets
        ({"config": "{min_terms: 2}"}, "not valid JSON"),
        ({"config": "[1, 2]"}, "JSON object"),
        ({"config": '{"colour": 1}'}, "min_terms"),  # lists the dataset's settings
        ({"config": '{"min_terms": 0}'}, "refused"),
        ({"config": '{"size": 9}'}, "task parameters"),
        ({"prompt": "no placeholder"}, "{question}"),
        ({"size": 0}, "size"),
        ({"extractor": "magic"}, "extractor"),
    ],
)
def test_bad_parameters_are_refused_with_what_is_allowed(
    params: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ConfigError) as err:
        gym(**params)
    assert fragment in str(err.value)


def test_the_default_arithmetic_task_is_the_measured_configuration() -> None:
    t = task("arithmetic", size=4, seed=7)
    same = gym(dataset=ARITHMETIC_DATASET, config=ARITHMETIC_CONFIG, size=4, seed=7)
    assert t.problems() == same.problems() and t.name == "arithmetic"
    assert TASKS.defaults("arithmetic")["prompt"] == "last_line"
    with pytest.raises(ConfigError, match="has no parameter 'dataset'"):
        task("arithmetic", dataset="gcd")


# -- JSONL ------------------------------------------------------------------------------


def write(tmp_path: Path, *lines: str) -> str:
    path = tmp_path / "qs.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_jsonl_reads_prompts_messages_answers_ids_and_metadata(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '{"prompt": "What is 2 + 3?", "answer": 5, "id": 17, "level": "easy"}',
        "",
        '{"messages": [{"role": "system", "content": "Be brief."}, {"content": "1/2 = ?"}], '
        '"answer": "\\\\frac{1}{2}"}',
        '{"prompt": "Name a colour.\u2028Any one."}',
    )
    t = task("jsonl", path=path)
    a, b, c = t.problems()
    assert (a.id, a.answer, a.prompt, dict(a.metadata)) == (
        "17",
        "5",
        "What is 2 + 3?",
        {"level": "easy"},
    )
    assert [m.role for m in b.messages] == ["system", "user"] and b.id == "qs-1"
    assert (c.answer, c.id, c.prompt) == (None, "qs-2", "Name a colour.\u2028Any one.")
    assert t.check(b, "0.5") and not t.check(b, "0.25") and not t.check(c, "red")


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ('["a list"]', "expected a JSON object"),
        ('{"answer": "5"}', "'prompt'"),
        ('{"prompt": "a", "messages": []}', "exactly one"),
        ('{"prompt": "   "}', "empty"),
        ('{"prompt": 12}', "must be a string"),
        ('{"messages": "hi"}', "non-empty list"),
        ('{"messages": [{"role": "robot", "content": "hi"}]}', "role"),
        ('{"messages": [{"role": "user"}]}', "content"),
        ('{"prompt": "a", "answer": [5]}', "'answer' must be a string or a number"),
        ('{"prompt": "a", "answer": true}', "'answer' must be a string or a number"),
        ('{"prompt": "a", "answer": NaN}', "'answer' must be a string or a number"),
        ('{"prompt": "a", "id": {"x": 1}}', "'id' must be"),
        ('{"prompt": "a", "id": "one"}', "already used on line 1"),
    ],
)
def test_a_bad_line_is_named_by_file_and_line(tmp_path: Path, line: str, fragment: str) -> None:
    path = write(tmp_path, '{"prompt": "fine", "id": "one"}', '{"prompt": "also fine"}', line)
    with pytest.raises(DataError) as err:
        task("jsonl", path=path)
    assert f"{path}:3:" in str(err.value)
    assert fragment in str(err.value)


def test_the_whole_file_is_validated_before_anything_is_returned(tmp_path: Path) -> None:
    good = [json.dumps({"prompt": f"q{i}"}) for i in range(50)]
    path = write(tmp_path, *good, "oops")
    with pytest.raises(DataError, match=":51:"):
        task("jsonl", path=path)


def test_missing_empty_and_unnamed_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        task("jsonl", path=str(tmp_path / "nope.jsonl"))
    with pytest.raises(DataError, match="no problems"):
        task("jsonl", path=write(tmp_path, "", "  "))
    with pytest.raises(DataError, match="directory"):
        task("jsonl", path=str(tmp_path))
    with pytest.raises(ConfigError, match="'path' is required"):
        task("jsonl")


def test_problems_are_plain_values() -> None:
    p = gym().problems()[0]
    assert isinstance(p, Problem) and p.metadata["dataset"] == "chain_sum"
