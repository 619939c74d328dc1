"""`pyfunc`: small Python functions generated from seeded random operations, with a level.

A problem asks for one function `f`, described in plain English under its signature with
two doctest examples: a chain of `level` operations on an int, a list of ints or a string
("Take x, multiply it by 3, then add 2 to it, and return the result."). Each operation is
written three ways here: its English, its Python expression (the reference solution's
line, which the tests run in the sandbox) and the same as a Python function, which computes
every expected value in this process, so no model text ever runs outside the jail.

The hidden tests are `CASES` calls on seeded inputs, edge cases first (0, negatives, the
empty list, the empty string); two of the others are the prompt's examples; `INPUTS` more
calls without outputs let verifiers compare solutions by behaviour. A chain is redrawn until
every operation changes some test's value and the tests expect at least two different
values, so a solution that skips a step, or returns a constant, fails.

Problem i depends only on (level, seed, i): a larger `size` adds problems and changes none.
Why it exists: the embedded model solves no HumanEval problem, and this family has a level
where it solves some and sampling finds more (the screening is in docs/code.md).
"""

from __future__ import annotations

import random
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from testtime.core.errors import ConfigError
from testtime.core.registry import Params
from testtime.core.types import Problem
from testtime.sandbox import Case
from testtime.sandbox.problems import KEY, CodeSpec
from testtime.tasks.base import TASKS, Task
from testtime.tasks.code import CodeTask, code_problem

Kind = Literal["int", "list", "str"]
Prompt = Literal["stub", "steps", "prose"]
ENTRY = "f"
MAX_LEVEL = 6
CASES = 10  # hidden tests per problem (edge cases included)
EXAMPLES = 2  # of them shown in the prompt
INPUTS = 8  # further calls without outputs, for comparing behaviour
ARG: dict[Kind, str] = {"int": "x", "list": "xs", "str": "s"}
TYPE: dict[Kind, str] = {"int": "int", "list": "list[int]", "str": "str"}
_WORDS = ("apple", "banana", "cat", "data", "hello", "lemon", "moon", "pear", "tree", "world")
_DRAWS = 1000  # chains drawn per problem before giving up (a few suffice in practice)


@dataclass(frozen=True, slots=True)
class Op:
    """One operation on the value `v`: its English (an imperative on "it"), its Python
    expression, the same as a function, and the choices of its parameters ({0}, {1})."""

    takes: Kind
    gives: Kind
    phrase: str
    code: str
    fn: Callable[..., Any]
    choices: tuple[tuple[Any, ...], ...] = ()


_SMALL = (2, 3, 4, 5, 6, 7, 8, 9)
OPS: tuple[Op, ...] = (
    Op("int", "int", "add {0} to it", "v + {0}", lambda v, k: v + k, (_SMALL,)),
    Op("int", "int", "subtract {0} from it", "v - {0}", lambda v, k: v - k, (_SMALL,)),
    Op("int", "int", "multiply it by {0}", "v * {0}", lambda v, k: v * k, (_SMALL,)),
    Op("int", "int", "divide it by {0}, rounding down", "v // {0}", lambda v, k: v // k,
       ((2, 3, 4, 5),)),
    Op("int", "int", "replace it with its remainder when divided by {0}", "v % {0}",
       lambda v, k: v % k, ((3, 4, 5, 7, 10),)),
    Op("int", "int", "square it", "v * v", lambda v: v * v),
    Op("int", "int", "replace it with its absolute value", "abs(v)", abs),
    Op("int", "int", "replace it with 0 if it is negative", "max(v, 0)", lambda v: max(v, 0)),
    Op("int", "int", "halve it if it is even", "v // 2 if v % 2 == 0 else v",
       lambda v: v // 2 if v % 2 == 0 else v),
    Op("list", "list", "keep only its even elements", "[e for e in v if e % 2 == 0]",
       lambda v: [e for e in v if e % 2 == 0]),
    Op("list", "list", "keep only its odd elements", "[e for e in v if e % 2 == 1]",
       lambda v: [e for e in v if e % 2 == 1]),
    Op("list", "list", "keep only its elements greater than {0}", "[e for e in v if e > {0}]",
       lambda v, k: [e for e in v if e > k], ((-1, 0, 1, 2, 3),)),
    Op("list", "list", "multiply each of its elements by {0}", "[e * {0} for e in v]",
       lambda v, k: [e * k for e in v], (_SMALL,)),
    Op("list", "list", "add {0} to each of its elements", "[e + {0} for e in v]",
       lambda v, k: [e + k for e in v], (_SMALL,)),
    Op("list", "list", "square each of its elements", "[e * e for e in v]",
       lambda v: [e * e for e in v]),
    Op("list", "list", "sort it in increasing order", "sorted(v)", sorted),
    Op("list", "list", "sort it in decreasing order", "sorted(v, reverse=True)",
       lambda v: sorted(v, reverse=True)),
    Op("list", "list", "reverse it", "v[::-1]", lambda v: v[::-1]),
    Op("list", "list", "keep only its first {0} elements", "v[:{0}]", lambda v, k: v[:k],
       ((2, 3),)),
    Op("list", "list", "remove its first element", "v[1:]", lambda v: v[1:]),
    Op("list", "int", "replace it with the sum of its elements", "sum(v)", sum),
    Op("list", "int", "replace it with the number of its elements", "len(v)", len),
    Op("list", "int", "replace it with its largest element, or 0 if it is empty",
       "max(v, default=0)", lambda v: max(v, default=0)),
    Op("list", "int", "replace it with its smallest element, or 0 if it is empty",
       "min(v, default=0)", lambda v: min(v, default=0)),
    Op("list", "int", "replace it with the number of its even elements",
       "len([e for e in v if e % 2 == 0])", lambda v: len([e for e in v if e % 2 == 0])),
    Op("str", "str", "convert it to upper case", "v.upper()", str.upper),
    Op("str", "str", "convert it to lower case", "v.lower()", str.lower),
    Op("str", "str", "reverse it", "v[::-1]", lambda v: v[::-1]),
    Op("str", "str", "remove its spaces", "v.replace(' ', '')", lambda v: v.replace(" ", "")),
    Op("str", "str", "replace every {0!r} in it with {1!r}", "v.replace({0!r}, {1!r})",
       lambda v, a, b: v.replace(a, b), (("a", "e", "l", "o"), ("*", "-", "_"))),
    Op("str", "str", "keep only its first {0} characters", "v[:{0}]", lambda v, k: v[:k],
       ((2, 3, 4),)),
    Op("str", "str", "add {0!r} to its end", "v + {0!r}", lambda v, c: v + c,
       (("!", "?", "ab", "xyz"),)),
    Op("str", "str", "repeat it {0} times", "v * {0}", lambda v, k: v * k, ((2, 3),)),
    Op("str", "int", "replace it with its length", "len(v)", len),
    Op("str", "int", "replace it with the number of times {0!r} occurs in it", "v.count({0!r})",
       lambda v, c: v.count(c), (("a", "e", "l", "o"),)),
    Op("str", "int", "replace it with the number of its words", "len(v.split())",
       lambda v: len(v.split())),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Step:
    """An operation with its parameters drawn."""

    op: Op
    args: tuple[Any, ...]

    @property
    def phrase(self) -> str:
        return self.op.phrase.format(*self.args)

    @property
    def code(self) -> str:
        return self.op.code.format(*self.args)

    def __call__(self, value: Any) -> Any:
        return self.op.fn(value, *self.args)


@dataclass(frozen=True, slots=True)
class Chain:
    """A generated function: its input kind and steps, in English and as Python."""

    kind: Kind
    steps: tuple[Step, ...]

    @property
    def gives(self) -> Kind:
        return self.steps[-1].op.gives

    @property
    def signature(self) -> str:
        arg = ARG[self.kind]
        return f"def {ENTRY}({arg}: {TYPE[self.kind]}) -> {TYPE[self.gives]}:"

    @property
    def description(self) -> str:
        """One sentence: "Take x, multiply it by 3, then add 2 to it, and return the result."""
        steps = ", then ".join(s.phrase for s in self.steps)
        return f"Take {ARG[self.kind]}, {steps}, and return the result."

    @property
    def numbered(self) -> str:
        """The same, one numbered line per operation."""
        lines = [f"{i}. {s.phrase[0].upper()}{s.phrase[1:]}." for i, s in enumerate(self.steps, 1)]
        head = f"Take {ARG[self.kind]} and do these steps in order, then return the result:"
        return "\n".join([head, *lines])

    @property
    def reference(self) -> str:
        """The generator's own solution, one line per step."""
        lines = [self.signature, f"    v = {ARG[self.kind]}"]
        lines += [f"    v = {s.code}" for s in self.steps]
        return "\n".join([*lines, "    return v"]) + "\n"

    def __call__(self, value: Any, skip: int | None = None) -> Any:
        """The expected output (with step `skip` left out: does that step matter?)."""
        for i, step in enumerate(self.steps):
            if i != skip:
                value = step(value)
        return value


def draw_input(kind: Kind, rng: random.Random) -> Any:
    """A random input of `kind` (small, so outputs stay readable)."""
    if kind == "int":
        return rng.randint(-30, 30)
    if kind == "list":
        return [rng.randint(-9, 9) for _ in range(rng.randint(2, 7))]
    words = [rng.choice(_WORDS) for _ in range(rng.randint(1, 3))]
    return " ".join(w.capitalize() if rng.random() < 0.3 else w for w in words)


EDGES: dict[Kind, tuple[Any, ...]] = {
    "int": (0, 1, -1),
    "list": ([], [0], [-3, -3, 4]),
    "str": ("", "a", "Hi there"),
}


def draw_chain(kind: Kind, level: int, rng: random.Random) -> Chain:
    """`level` steps starting from `kind`, never the same operation twice in a row."""
    steps: list[Step] = []
    now = kind
    for _ in range(level):
        ops = [o for o in OPS if o.takes == now and (not steps or o is not steps[-1].op)]
        op = rng.choice(ops)
        steps.append(Step(op, tuple(rng.choice(c) for c in op.choices)))
        now = op.gives
    return Chain(kind, tuple(steps))


def call(arg: Any) -> str:
    return f"{ENTRY}({arg!r})"


def sound(chain: Chain, inputs: Sequence[Any]) -> bool:
    """Whether tests on `inputs` tell the chain apart from a constant and from the chain
    with any one same-kind step left out."""
    outputs = [chain(x) for x in inputs]
    if len({repr(o) for o in outputs}) < 2:
        return False
    for i, step in enumerate(chain.steps):
        if step.op.takes == step.op.gives and all(
            chain(x, skip=i) == o for x, o in zip(inputs, outputs, strict=True)
        ):
            return False
    return True


def shown(cases: Sequence[Case]) -> tuple[Case, ...]:
    """The examples for the prompt: the first cases with different outputs where they differ
    (two examples both giving 0 show little)."""
    picked: list[Case] = []
    for case in cases:
        if all(repr(case.expected) != repr(p.expected) for p in picked):
            picked.append(case)
    picked += [c for c in cases if c not in picked]
    return tuple(picked[:EXAMPLES])


def generate(level: int, seed: int, index: int) -> tuple[Chain, CodeSpec]:
    """Problem `index` of (level, seed): its chain and spec (cases, examples, inputs)."""
    rng = random.Random(f"pyfunc:{level}:{seed}:{index}")  # str seeds hash stably
    kind: Kind = rng.choice(("int", "list", "str"))
    for _ in range(_DRAWS):
        chain = draw_chain(kind, level, rng)
        fresh: list[Any] = []
        while len(fresh) < CASES - len(EDGES[kind]) + INPUTS:
            x = draw_input(kind, rng)
            if x not in fresh and x not in EDGES[kind]:
                fresh.append(x)
        tested = [*EDGES[kind], *fresh[: CASES - len(EDGES[kind])]]
        if not sound(chain, tested):
            continue
        cases = tuple(Case(call(x), chain(x)) for x in tested)
        examples = shown(cases[len(EDGES[kind]) :])
        inputs = tuple(call(x) for x in fresh[CASES - len(EDGES[kind]) :])
        return chain, CodeSpec(ENTRY, cases, examples=examples, inputs=inputs)
    raise RuntimeError(f"no sound chain in {_DRAWS} draws for pyfunc {level}/{seed}/{index}")


def render(chain: Chain, examples: Sequence[Case], prompt: Prompt) -> str:
    """The problem's description with its doctest examples: "stub", a docstring stub in a
    code block with the English as one sentence; "steps", the same stub with one numbered
    line per operation; "prose", plain text under the signature."""
    shown = "\n".join(f">>> {c.call}\n{c.expected!r}" for c in examples)
    if prompt == "prose":
        return f"{chain.signature[:-1]}\n\n{chain.description}\n\n{shown}"
    text = chain.description if prompt == "stub" else chain.numbered
    doc = textwrap.indent(f"{text}\n\n{shown}", "    ").lstrip()
    return f'```python\n{chain.signature}\n    """{doc}\n    """\n```'


class PyfuncTask(CodeTask):
    """Generated functions of one level, judged by their hidden tests in the sandbox."""

    name = "pyfunc"

    def __init__(self, level: int, size: int, seed: int, prompt: Prompt = "stub") -> None:
        super().__init__()
        check_level(level)
        self.level, self.seed, self.prompt = level, seed, prompt
        self._problems = tuple(self.problem(i) for i in range(size))

    def problem(self, index: int) -> Problem:
        chain, spec = generate(self.level, self.seed, index)
        base = code_problem(spec, render(chain, spec.examples, self.prompt), self.id(index))
        meta = {KEY: spec, "level": self.level, "reference": chain.reference}
        return Problem(base.messages, id=base.id, metadata=meta)

    def id(self, index: int) -> str:
        return f"pyfunc-L{self.level}-{self.seed}-{index}"

    def problems(self) -> Sequence[Problem]:
        return self._problems


def check_level(level: int) -> None:
    if not 1 <= level <= MAX_LEVEL:
        raise ConfigError(
            f"parameter 'level' must be 1 to {MAX_LEVEL} (the number of operations each "
            f"function chains), got {level}; e.g. level=1"
        )


# The defaults, chosen by measuring SmolLM2-135M on 30 problems (docs/code.md): level 1 at
# T=0.8 gives greedy 63%, pass@1 29%, coverage@16 80%; level 2 gives pass@1 4%, coverage@16 37%.
@dataclass(frozen=True)
class PyfuncParams(Params):
    level: int = 1  # operations chained per function
    size: int = 50
    seed: int = 0
    prompt: Prompt = "stub"  # the description as a docstring stub ("stub") or plain text

    def validate(self) -> None:
        self.positive("size")
        check_level(self.level)


@TASKS.register("pyfunc", PyfuncParams, PyfuncTask)
def pyfunc_task(p: PyfuncParams) -> Task:
    """Generated Python functions of graded difficulty (level = operations chained)."""
    return PyfuncTask(p.level, p.size, p.seed, p.prompt)
