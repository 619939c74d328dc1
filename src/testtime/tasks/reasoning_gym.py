"""reasoning-gym as a task: any of its procedural datasets by name, config, size and seed.

An answer counts as correct only when the dataset's own scorer gives exactly 1.0: several
scorers give partial credit to wrong answers ("15" for gold "5" scores 0.5). Problem ids are
stable (`{dataset}-{seed}-{index}`), so stored runs can be resumed and compared.

Nine scorers run the answer as Python (`JAILED_SCORERS`: builtin eval(), or sympy's
parse_expr, which eval()s its text). Their answers are evaluated only in the sandbox: the jail
does with the text what the scorer would (`eval(text)`, or `parse_expr(text, local_dict=...)`
with sympy and mpmath bound read-only there) and sends back the value as plain data (sympy
expressions as nodes: `sympy_plain`). This process rebuilds the value without evaluating any
text and runs the dataset's own `score_answer`, on a copy whose `eval` or `parse_expr` returns
that value for the answer; the dataset's own texts (an integrand, a gold polynomial) are
parsed here, as the scorer always did. So the grades are the scorer's, the gold never enters
the jail, and an answer can do no more than choose the value that comes back. `grade` runs
the jails concurrently, off the event loop, charged as sandbox seconds; without a working
sandbox these datasets fail with `SandboxUnavailable`. Not covered: the scorer's own sympy
work on the rebuilt value (diff, simplify) runs here without a time limit, as it always did;
an answer that reads the harness's nonce from memory can report a value its text does not
have, which matters where a scorer also reads the text (countdown's and puzzle24's numbers).
A composite with such a part is refused: its scorer would call the part's scorer unjailed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import types
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any

from testtime.core import arith
from testtime.core.answers import Extractor, as_number, format_number
from testtime.core.cost import Cost
from testtime.core.errors import ConfigError, unknown
from testtime.core.registry import Params
from testtime.core.types import Message, Problem
from testtime.sandbox import Case, Execution, Limits, aexecute, execute
from testtime.sandbox.verdict import decode
from testtime.tasks import sympy_plain
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

# Datasets whose reasoning-gym scorer (0.1.25, read and tested) runs the model's answer as
# Python: builtin eval(), or sympy's parse_expr, which eval()s its input (even
# "__import__('os').system(...)"). Their answers are evaluated only in the sandbox (module
# docstring). tests/unit/test_reasoning_gym_safety.py walks every scorer's source, so a
# release that adds one, or changes what one calls, fails there until it is reviewed here.
JAILED_SCORERS: dict[str, str] = {
    "binary_matrix": "eval",
    "n_queens": "eval",
    "spiral_matrix": "eval",
    "string_insertion": "eval",
    "countdown": "parse_expr",
    "intermediate_integration": "parse_expr",
    "polynomial_multiplication": "parse_expr",
    "puzzle24": "parse_expr",
    "simple_integration": "parse_expr",
}
SYMPY = ("sympy", "mpmath")  # bound read-only into the jails of the parse_expr scorers
# The scorers' own work on a rebuilt value (sympy's diff, simplify), off the event loop, one
# at a time (sympy's caches are shared between threads).
_SCORING = ThreadPoolExecutor(max_workers=1, thread_name_prefix="testtime-rg-score")


def check_safe(dataset: str, config: Mapping[str, Any] | None = None) -> None:
    """Refuse a composite with a part whose scorer runs the answer as Python: the composite
    calls that scorer itself, where the answer would run unjailed."""
    if dataset != "composite":
        return
    parts = (config or {}).get("datasets") or ()
    for part in parts if isinstance(parts, list | tuple) else (parts,):
        name = part.get("name") if isinstance(part, Mapping) else None
        if not isinstance(name, str):
            raise ConfigError(
                "composite config 'datasets' must list objects with a 'name', e.g. "
                '{"datasets": [{"name": "chain_sum", "weight": 1, "config": {}}]}'
            )
        how = JAILED_SCORERS.get(name)
        if how is not None:
            raise ConfigError(
                f"reasoning-gym composite part {name!r} is refused: its scorer runs the model's "
                f"answer as Python ({how}), which testtime does only in the sandbox, for "
                f"{name!r} on its own; use dataset={name}"
            )
        inner = part.get("config")
        check_safe(name, inner if isinstance(inner, Mapping) else None)


@cache
def _jailed_classes() -> frozenset[type]:
    from reasoning_gym.factory import DATASETS

    return frozenset(DATASETS[name][0] for name in JAILED_SCORERS)


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
        self.evaluator = JAILED_SCORERS.get(dataset)  # how its scorer runs an answer, if it does
        self.limits = Limits(libraries=SYMPY if self.evaluator == "parse_expr" else ())
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
        """Correct only if the dataset's scorer gives exactly 1.0 (partial credit is wrong).
        Blocking where the scorer runs the answer as Python (jailed): `grade` is the way
        inside a run."""
        entry = problem.metadata.get("entry")
        if answer is None or not isinstance(entry, Mapping):
            return super().check(problem, answer)
        if self.evaluator is not None:
            return any(
                self._jailed_score(a, entry, execute(*self._jail_job(a, entry), self.limits))
                for a in _tries(answer)
            )
        return any(self._score(a, entry) == 1.0 for a in _tries(answer))

    async def grade(
        self, problem: Problem, answers: Sequence[str | None]
    ) -> tuple[tuple[bool, ...], Cost]:
        """`check` on each answer; a jailed scorer's answers run concurrently in the sandbox,
        charged as sandbox seconds."""
        entry = problem.metadata.get("entry")
        if self.evaluator is None or not isinstance(entry, Mapping):
            return await super().grade(problem, answers)
        graded = await asyncio.gather(*(self._agrade(a, entry) for a in answers))
        return tuple(ok for ok, _ in graded), Cost(sandbox_seconds=sum(s for _, s in graded))

    async def _agrade(self, answer: str | None, entry: Mapping[str, Any]) -> tuple[bool, float]:
        if answer is None:
            return False, 0.0
        loop = asyncio.get_running_loop()
        seconds = 0.0
        for text in _tries(answer):
            run = await aexecute(*self._jail_job(text, entry), self.limits)
            seconds += run.seconds
            if await loop.run_in_executor(_SCORING, self._jailed_score, text, entry, run):
                return True, seconds
        return False, seconds

    def _score(self, answer: str, entry: Mapping[str, Any]) -> float:
        """The dataset's scorer, here: never one that runs the answer, however this was built."""
        if type(self._data) in _jailed_classes():
            raise ConfigError(
                f"reasoning-gym scorer {type(self._data).__name__} is refused here: it runs the "
                "model's answer as Python, which testtime does only in the sandbox; build the "
                "task with that dataset's name"
            )
        try:
            return float(self._data.score_answer(answer, dict(entry)))
        except Exception:  # some scorers raise on malformed answers: that answer is wrong
            return 0.0

    def _jail_job(self, text: str, entry: Mapping[str, Any]) -> tuple[str, list[Case]]:
        """Code and a call that do in the jail what the scorer does with `text`, the value
        coming back as plain data. The text enters only as a string literal."""
        if self.evaluator == "eval":
            return "", [Case(f"eval({text!r})", None)]
        local = ", ".join(
            f"{name!r}: _Symbol({name!r})" for name in _local_names(self.dataset, entry)
        )
        options = f", local_dict={{{local}}}" if local else ""
        return _sympy_code(), [Case(f"to_plain(_parse_expr({text!r}{options}))", None)]

    def _jailed_score(self, text: str, entry: Mapping[str, Any], run: Execution) -> bool:
        """The dataset's scorer on `text`, its eval / parse_expr answering what the jail made
        of the text; correct only at exactly 1.0."""
        value = _Value.of(run, self.evaluator == "parse_expr")
        score = _rebound(self._data, str(self.evaluator), self._evaluate(text, entry, value))
        try:
            return float(score(text, dict(entry))) == 1.0
        except Exception:  # some scorers raise on malformed answers: that answer is wrong
            return False

    def _evaluate(self, text: str, entry: Mapping[str, Any], value: _Value) -> Callable[..., Any]:
        """The stand-in for the scorer's eval or parse_expr: the jail's value for the answer,
        sympy's parse_expr for the dataset's own texts, and nothing else."""
        if self.evaluator == "eval":

            def jailed_eval(source: Any, *rest: Any) -> Any:
                if source != text or rest:
                    raise ValueError("only the answer is evaluated, and only in the sandbox")
                return value.get()

            return jailed_eval
        from sympy.parsing.sympy_parser import parse_expr  # type: ignore[import-untyped]

        names = set(_local_names(self.dataset, entry))
        own = {str(entry.get("answer"))} | {
            v for v in (entry.get("metadata") or {}).values() if isinstance(v, str)
        }

        def jailed_parse(source: Any, local_dict: Any = None, *rest: Any, **options: Any) -> Any:
            if source == text and not rest and not options and _symbols(local_dict) == names:
                return value.get()
            if isinstance(source, str) and source in own:  # the dataset's text, not the model's
                return parse_expr(source, local_dict, *rest, **options)
            raise ValueError("only the answer is parsed, and only in the sandbox")

        return jailed_parse


@dataclass(frozen=True, slots=True)
class _Value:
    """What the jail made of an answer: its value, or why there is none."""

    value: Any = None
    error: str = ""

    @classmethod
    def of(cls, run: Execution, sympy: bool) -> _Value:
        tagged = run.values[0] if run.values else None
        if tagged is None:
            return cls(error=run.detail or "no value")
        try:
            plain = decode(tagged)
            return cls(sympy_plain.from_plain(plain) if sympy else plain)
        except (ValueError, RecursionError) as exc:  # NotSympy is a ValueError
            return cls(error=str(exc))

    def get(self) -> Any:
        if self.error:
            raise ValueError(f"the answer has no value in the sandbox: {self.error}")
        return self.value


def _tries(answer: str) -> list[str]:
    """The answer, and its plain number spelling ("-4.0" -> "-4": the scorers compare text)."""
    tries = [answer.strip()]
    number = as_number(tries[0])
    if number is not None and format_number(number) != tries[0]:
        tries.append(format_number(number))
    return tries


def _local_names(dataset: str, entry: Mapping[str, Any]) -> tuple[str, ...]:
    """The names the scorer's parse_expr of the answer binds to plain symbols (local_dict)."""
    if dataset in ("simple_integration", "intermediate_integration"):
        return tuple(dict.fromkeys((str(entry["metadata"]["variable"]), "C")))
    return ()


def _symbols(local_dict: Any) -> set[str] | None:
    """The names of a local_dict that binds each only to the plain symbol of that name."""
    import sympy  # type: ignore[import-untyped]

    if local_dict is None:
        return set()
    if not isinstance(local_dict, Mapping):
        return None
    for name, symbol in local_dict.items():
        if not (type(symbol) is sympy.Symbol and symbol == sympy.Symbol(name)):
            return None
    return set(local_dict)


@cache
def _sympy_code() -> str:
    """The jail's code for the parse_expr scorers: `sympy_plain` and the names the call uses."""
    source = Path(sympy_plain.__file__).read_text(encoding="utf-8")
    return (
        f"{source}\nfrom sympy import Symbol as _Symbol\n"
        "from sympy.parsing.sympy_parser import parse_expr as _parse_expr\n"
    )


class _SympyWith:
    """The sympy module as a scorer sees it: its `parse_expr` is the jailed stand-in, and the
    names that turn text into code are missing (a scorer that used them grades wrong)."""

    def __init__(self, parse_expr: Callable[..., Any]) -> None:
        self.parse_expr = parse_expr

    def __getattr__(self, name: str) -> Any:
        import sympy

        if name in ("sympify", "S", "parsing", "lambdify"):
            raise AttributeError(f"sympy.{name} is not given to a jailed scorer")
        return getattr(sympy, name)


def _code_names(code: types.CodeType) -> set[str]:
    """Every global and attribute name a function's code (and its nested code) uses."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _rebound(data: Any, evaluator: str, evaluate: Callable[..., Any]) -> Callable[..., Any]:
    """The dataset's own `score_answer`, bound to `data`, on a copy of its globals where
    `eval` (a builtin) or `parse_expr` (by that name, or on the sympy module) is `evaluate`."""
    import sympy
    from sympy.parsing.sympy_parser import parse_expr

    function = inspect.getattr_static(type(data), "score_answer", None)
    names = _code_names(function.__code__) if isinstance(function, types.FunctionType) else set()
    if evaluator not in names:
        raise ConfigError(
            f"reasoning-gym's {type(data).__name__}.score_answer no longer calls {evaluator} "
            "itself, so testtime cannot jail it; review JAILED_SCORERS for this release"
        )
    assert isinstance(function, types.FunctionType)
    scope = dict(function.__globals__)
    if evaluator == "eval":
        scope["eval"] = evaluate
    for name in names & set(scope):
        if scope[name] is parse_expr:
            scope[name] = evaluate
        elif scope[name] is sympy:
            scope[name] = _SympyWith(evaluate)
    copy = types.FunctionType(
        function.__code__, scope, function.__name__, function.__defaults__, function.__closure__
    )
    copy.__kwdefaults__ = function.__kwdefaults__
    return types.MethodType(copy, data)


@TASKS.register("reasoning_gym", ReasoningGymParams, ReasoningGymTask)
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


@TASKS.register("arithmetic", ArithmeticParams, ReasoningGymTask)
def arithmetic_task(p: ArithmeticParams) -> Task:
    """a + b or a - b of one-digit numbers (reasoning-gym chain_sum), where scaling pays."""
    fixed = ReasoningGymParams(ARITHMETIC_DATASET, ARITHMETIC_CONFIG, **dataclasses.asdict(p))
    task = reasoning_gym_task(fixed)
    task.name = "arithmetic"
    return task
