"""reasoning-gym as a task: any of its procedural datasets by name, config, size and seed.

An answer counts as correct only when the dataset's own scorer gives exactly 1.0: several
scorers give partial credit to wrong answers ("15" for gold "5" scores 0.5). Problem ids are
stable (`{dataset}-{seed}-{index}`), so stored runs can be resumed and compared.

Datasets whose scorer runs the answer as Python are refused (`UNSAFE_SCORERS`): model text
never runs in this process until those scorers run inside the sandbox.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from testtime.core import arith
from testtime.core.answers import Extractor, as_number, format_number
from testtime.core.errors import ConfigError, unknown
from testtime.core.registry import Params
from testtime.core.types import Message, Problem
from testtime.tasks.base import TASKS, Task

PROMPTS: dict[str, str] = {
    "last_line": (
        "{question}\nThink step by step if it helps, "
        "then write only the final answer on the last line."
    ),
    "direct": "{question}\nReply with only the final answer.",
    "raw": "{question}",
    "few_shot": "",  # built from solved examples of the same dataset (for base models)
    "worked": "",  # step-by-step worked examples (arithmetic questions), one step per paragraph
}
WORKED_INTRO = (
    "Solve the problem one calculation at a time: write each calculation as `a op b = c` "
    "in its own paragraph, then the final answer alone on the last line.\n\n"
)
FEW_SHOT_EXAMPLES = 4
_FEW_SHOT_SEED_OFFSET = 1_000_003  # examples come from a seed no evaluation run uses by default

# Datasets whose reasoning-gym scorer (0.1.19, read and tested) runs the model's answer as
# Python: builtin eval(), or sympy's parse_expr, which eval()s its input (even
# "__import__('os').system(...)"). tests/unit/test_reasoning_gym_safety.py walks every
# scorer's source, so a release that adds one fails there until it is listed here.
UNSAFE_SCORERS: dict[str, str] = {
    "binary_matrix": "eval()",
    "n_queens": "eval()",
    "spiral_matrix": "eval()",
    "string_insertion": "eval()",
    "countdown": "sympy parse_expr",
    "intermediate_integration": "sympy parse_expr",
    "polynomial_multiplication": "sympy parse_expr",
    "puzzle24": "sympy parse_expr",
    "simple_integration": "sympy parse_expr",
}


def check_safe(dataset: str, config: Mapping[str, Any] | None = None) -> None:
    """Refuse a dataset whose scorer would run model text as code (a composite: any part)."""
    how = UNSAFE_SCORERS.get(dataset)
    if how is not None:
        raise ConfigError(
            f"reasoning-gym dataset {dataset!r} is refused: its scorer runs the model's answer "
            f"as Python ({how}), and testtime will not run model text outside a sandbox "
            "(issue 13: scorers in the sandbox); pick another dataset"
        )
    if dataset == "composite":
        parts = (config or {}).get("datasets") or ()
        for part in parts if isinstance(parts, list | tuple) else (parts,):
            name = part.get("name") if isinstance(part, Mapping) else None
            if not isinstance(name, str):
                raise ConfigError(
                    "composite config 'datasets' must list objects with a 'name', e.g. "
                    '{"datasets": [{"name": "chain_sum", "weight": 1, "config": {}}]}'
                )
            inner = part.get("config")
            check_safe(name, inner if isinstance(inner, Mapping) else None)


def dataset_names() -> list[str]:
    """Every reasoning-gym dataset name."""
    from reasoning_gym.factory import DATASETS

    return sorted(DATASETS)


def parse_config(text: str) -> dict[str, Any]:
    """Dataset settings from a JSON object (lists become tuples, as reasoning-gym expects)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"config {text!r} is not valid JSON ({e.msg}); write a JSON object, "
            'e.g. config=\'{"min_terms": 2, "max_terms": 3}\''
        ) from None
    if not isinstance(value, dict):
        raise ConfigError(f"config must be a JSON object of dataset settings, got {text!r}")
    clash = sorted({"size", "seed"} & set(value))
    if clash:
        raise ConfigError(
            f"config sets {' and '.join(clash)}; give them as task parameters instead "
            "(e.g. size=50 seed=1), so problem ids follow them"
        )
    return {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}


def check_prompt(prompt: str) -> None:
    if prompt not in PROMPTS and "{question}" not in prompt:
        raise ConfigError(
            f"prompt {prompt!r} is neither a template name ({', '.join(PROMPTS)}) "
            "nor a text containing {question}; use one of those"
        )


@dataclass(frozen=True)
class ReasoningGymParams(Params):
    dataset: str = "basic_arithmetic"
    config: str = "{}"  # JSON object of the dataset's settings
    size: int = 50
    seed: int = 0
    prompt: str = "last_line"  # a template name (see PROMPTS) or text containing {question}
    extractor: Extractor = "auto"

    def validate(self) -> None:
        self.positive("size")
        if self.dataset not in dataset_names():
            raise unknown("reasoning-gym dataset", self.dataset, dataset_names())
        check_safe(self.dataset, parse_config(self.config))
        check_prompt(self.prompt)


class ReasoningGymTask(Task):
    """Problems from one reasoning-gym dataset, checked by its scorer (1.0 only)."""

    def __init__(
        self,
        dataset: str,
        config: Mapping[str, Any],
        *,
        size: int,
        seed: int,
        prompt: str = "last_line",
        extractor: str = "auto",
    ) -> None:
        if dataset not in dataset_names():
            raise unknown("reasoning-gym dataset", dataset, dataset_names())
        check_safe(dataset, config)
        check_prompt(prompt)
        self.name = dataset
        self.dataset = dataset
        self.config = dict(config)
        self.size = size
        self.seed = seed
        self.prompt = prompt
        self.extractor = extractor
        self._data = self._create(size, seed)  # refuses a bad config now, not mid-run
        if prompt == "worked":
            _ = self._worked  # refuses a dataset without arithmetic questions now, too

    def _create(self, size: int, seed: int) -> Any:
        import reasoning_gym
        from reasoning_gym.factory import DATASETS

        try:
            return reasoning_gym.create_dataset(self.dataset, size=size, seed=seed, **self.config)
        except (TypeError, ValueError, AssertionError) as e:
            fields = [f.name for f in dataclasses.fields(DATASETS[self.dataset][1])]
            allowed = ", ".join(f for f in fields if f not in ("size", "seed"))
            raise ConfigError(
                f"reasoning-gym dataset {self.dataset!r} refused config {self.config}: {e}; "
                f"its settings are: {allowed}"
            ) from None

    @cached_property
    def _shots(self) -> str:
        """Worked examples from the same dataset under another seed (for few-shot prompts)."""
        shots = self._create(FEW_SHOT_EXAMPLES, self.seed + _FEW_SHOT_SEED_OFFSET)
        return "".join(f"Question: {e['question']}\nAnswer: {e['answer']}\n\n" for e in shots)

    @cached_property
    def _worked(self) -> str:
        """Worked solutions of examples under another seed, steps split by blank lines."""
        out = []
        for e in self._create(FEW_SHOT_EXAMPLES, self.seed + _FEW_SHOT_SEED_OFFSET):
            expression = arith.expression_in(e["question"])
            steps = arith.worked_steps(expression) if expression else None
            if not steps or not steps[-1].endswith(f"= {e['answer']}"):
                raise ConfigError(
                    f"prompt 'worked' writes step-by-step solutions of arithmetic questions, "
                    f"and {self.dataset!r} asked {e['question'][:60]!r}...; use prompt=few_shot or "
                    "last_line for this dataset"
                )
            solution = "\n\n".join(steps)
            out.append(f"Problem: {e['question']}\nSolution:\n{solution}\n\n{e['answer']}\n\n")
        return "".join(out)

    def problems(self) -> Sequence[Problem]:
        out = []
        for i in range(self.size):
            entry = self._data[i]
            out.append(
                Problem(
                    (Message("user", self.render(entry["question"])),),
                    answer=str(entry["answer"]),
                    id=f"{self.dataset}-{self.seed}-{i}",
                    metadata={"dataset": self.dataset, "index": i, "entry": entry},
                )
            )
        return out

    def render(self, question: str) -> str:
        """The user prompt for one question under this task's template."""
        if self.prompt == "few_shot":
            return f"{self._shots}Question: {question}\nAnswer:"
        if self.prompt == "worked":
            return f"{WORKED_INTRO}{self._worked}Problem: {question}\nSolution:"
        template = PROMPTS.get(self.prompt, self.prompt)
        return template.replace("{question}", question)

    def extract(self, text: str) -> str | None:
        if self.prompt == "few_shot":  # a base model goes on to write the next question
            text = text.split("\nQuestion:")[0]
        if self.prompt == "worked":
            text = text.split("\nProblem:")[0]
        return super().extract(text)

    def check(self, problem: Problem, answer: str | None) -> bool:
        """Correct only if the dataset's scorer gives exactly 1.0 (partial credit is wrong)."""
        entry = problem.metadata.get("entry")
        if answer is None or not isinstance(entry, Mapping):
            return super().check(problem, answer)
        tries = [answer.strip()]
        number = as_number(tries[0])
        if number is not None:  # "-4.0" means "-4"; the scorers compare strings
            tries.append(format_number(number))
        return any(self._score(a, entry) == 1.0 for a in tries)

    def _score(self, answer: str, entry: Mapping[str, Any]) -> float:
        check_safe(self.dataset, self.config)  # never an unsafe scorer, however this was built
        try:
            return float(self._data.score_answer(answer, dict(entry)))
        except Exception:  # some scorers raise on malformed answers: that answer is wrong
            return 0.0


@TASKS.register("reasoning_gym", ReasoningGymParams)
def reasoning_gym_task(p: ReasoningGymParams) -> Task:
    """Any reasoning-gym procedural dataset by name, checked by its own scorer."""
    return ReasoningGymTask(
        p.dataset,
        parse_config(p.config),
        size=p.size,
        seed=p.seed,
        prompt=p.prompt,
        extractor=p.extractor,
    )


# The default task, chosen by measuring SmolLM2-135M (docs/default-task.md):
# greedy 47.5% on 40 problems; at T=0.8, coverage@16 87.5% and majority@16 62.5%.
ARITHMETIC_DATASET = "chain_sum"
ARITHMETIC_CONFIG = '{"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}'


@dataclass(frozen=True)
class ArithmeticParams(Params):
    size: int = 50
    seed: int = 0
    prompt: str = "last_line"  # a template name (see PROMPTS) or text containing {question}
    extractor: Extractor = "auto"

    def validate(self) -> None:
        self.positive("size")
        check_prompt(self.prompt)


@TASKS.register("arithmetic", ArithmeticParams)
def arithmetic_task(p: ArithmeticParams) -> Task:
    """a + b or a - b of one-digit numbers (reasoning-gym chain_sum), where scaling pays."""
    fixed = ReasoningGymParams(ARITHMETIC_DATASET, ARITHMETIC_CONFIG, **dataclasses.asdict(p))
    task = reasoning_gym_task(fixed)
    task.name = "arithmetic"
    return task
