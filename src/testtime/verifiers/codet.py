"""CodeT: the model writes tests, and programs and tests vouch for each other.

Chen et al. 2022, "CodeT: Code Generation with Generated Tests" (arXiv 2207.10397). The
generator is asked, in one request of `samples` completions, for test cases of the entry
point written as `assert entry(...) == <literal>`. Each line is read with `parse_tests`
(`ast.literal_eval` only: nothing the model wrote is evaluated here) and kept when it is a
call of the entry point on literal arguments compared with a literal; duplicates go. Every
candidate runs all the tests in one jail (a program several candidates gave runs once).
Dual agreement: candidates that pass exactly the same set of tests form a consensus set,
scored (candidates in it) x (tests they pass).

Each candidate's score is its set's score divided by (candidates scored) x (tests), so it
lies in [0, 1] and is 1 only when every candidate passes every test; the division is the
same for all, so rankings and weighted votes are CodeT's. A candidate without code scores 0
and joins no set; one that times out or crashes passes nothing, so its set scores 0. When the
model wrote no usable test, every candidate with code scores 0.5 (nothing tells them apart:
a weighted vote is then a plain majority). `public_examples` adds the problem's own examples
to the pool. Tests are written afresh for each `score` call, and a score depends on the
other candidates scored with it (the `relative` trait). The generator's tokens and FLOPs and
the sandbox seconds are the verifier's cost.
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from testtime.core.cost import Cost
from testtime.core.errors import ConfigError
from testtime.core.ledger import stream_seed
from testtime.core.templates import fill
from testtime.core.types import Candidate, Problem, Request
from testtime.generators.base import Generator
from testtime.sandbox import Case, Execution
from testtime.sandbox.harness import NotPlain, encode
from testtime.sandbox.problems import TestsError, parse_tests, run_cases
from testtime.verifiers.base import Scores, Traits, Verifier, VerifierDeps, verifier
from testtime.verifiers.sandboxed import (
    NEUTRAL,
    SandboxParams,
    ask,
    check_sampling,
    check_template,
    code_spec,
    entry_call,
    plain_key,
    request,
    run_each,
    worst_flops,
)

TEMPLATE = (
    "{problem}\n\nDo not write the function. Write test cases for it instead, one per line, "
    "each an assert of the form `assert {entry}(arguments) == expected_value` with literal "
    "arguments and value, all in one ```python code block."
)


@dataclass(frozen=True)
class CodeTParams(SandboxParams):
    samples: int = 4  # completions asked of the model for tests (one request)
    temperature: float = 0.8  # CodeT samples its tests at 0.8
    max_tokens: int = 300  # each test completion's length (CodeT: 300)
    public_examples: bool = False  # add the problem's public examples to the test pool
    prompt: str = TEMPLATE  # must contain {problem} and {entry}
    seed: int = 0  # seeds the test request (with the problem's id)

    def validate(self) -> None:
        super().validate()
        self.positive("samples")
        check_sampling(self.temperature, self.max_tokens)
        check_template("prompt", self.prompt, {"problem": "", "entry": ""})


class CodeT(Verifier):
    """Dual agreement between candidate programs and model-written tests."""

    name = "codet"

    def __init__(self, generator: Generator, params: CodeTParams = CodeTParams()) -> None:
        self.generator = generator
        self.params = params
        self.limits = params.limits

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> Scores:
        spec = code_spec(problem, self.name)
        if not candidates:
            return Scores(())  # nothing to compare: the model is not asked
        texts, cost = await ask(self.generator, self._request(problem, spec.entry))
        tests = generated_tests(texts, spec.entry)
        if self.params.public_examples:
            tests = dedupe([*tests, *spec.examples])
        if not tests:
            neutral = tuple(0.0 if c.answer is None else NEUTRAL for c in candidates)
            return Scores(neutral, cost)
        runs, seconds = await run_each(
            [c.answer for c in candidates], lambda code: run_cases(spec, code, tests, self.limits)
        )
        scores = dual_agreement(
            [None if r is None else passes(r, len(tests)) for r in runs], len(tests)
        )
        return Scores(tuple(scores), cost + Cost(sandbox_seconds=seconds))

    def flops_per_candidate(self, problem: Problem) -> float:
        """Writing the tests, at most, for a candidate scored alone."""
        spec = code_spec(problem, self.name)
        return worst_flops(self.generator, self._request(problem, spec.entry))

    def _request(self, problem: Problem, entry: str) -> Request:
        p = self.params
        text = fill(p.prompt, {"problem": problem.prompt, "entry": entry}, "prompt")
        seed = stream_seed(p.seed, problem.id, "codet", 32)
        return request(text, p.samples, p.temperature, p.max_tokens, seed)


def passes(run: Execution, tests: int) -> frozenset[int]:
    """The indices of the tests a run passed."""
    return frozenset(i for i, ok in enumerate(run.outcomes[:tests]) if ok)


def generated_tests(texts: Iterable[str], entry: str) -> list[Case]:
    """The distinct `assert entry(literals) == literal` lines of the model's completions."""
    found: list[Case | None] = []
    for text in texts:
        for line in text.splitlines():
            line = line.strip()
            if not line.startswith("assert"):
                continue
            try:
                cases, _ = parse_tests([line], entry)
            except (TestsError, RecursionError, MemoryError):
                continue
            found.extend(_entry_case(c, entry) for c in cases)
    return dedupe(c for c in found if c is not None)


def _entry_case(case: Case, entry: str) -> Case | None:
    """The case with its call in normal form, when it calls `entry` on literals."""
    try:
        call = entry_call(ast.parse(case.call, mode="eval").body, entry)
        encode(case.expected)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        return None  # NotPlain is a TypeError: a value the jail could never return
    return Case(call, case.expected) if call is not None else None


def dedupe(cases: Iterable[Case]) -> list[Case]:
    """The cases without repeats (same call, same expected value of the same exact type);
    a case whose expected value no run could return (not plain data) is left out."""
    seen: dict[tuple[str, str], Case] = {}
    for case in cases:
        try:
            expected = plain_key(encode(case.expected))
        except NotPlain:
            continue
        seen.setdefault((_normal(case.call), expected), case)
    return list(seen.values())


def _normal(call: str) -> str:
    """A call expression with its layout normalised (as written when it does not parse)."""
    try:
        return ast.unparse(ast.parse(call, mode="eval"))
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return call


def dual_agreement(passed: Sequence[frozenset[int] | None], tests: int) -> list[float]:
    """CodeT's score of each candidate from the set of tests it passes (None: no code):
    the candidates passing exactly its set, times the tests in it, over candidates x tests."""
    if tests <= 0:
        raise ValueError("dual agreement needs at least one test")
    size = Counter(p for p in passed if p is not None)
    total = len(passed) * tests
    return [0.0 if p is None else size[p] * len(p) / total for p in passed]


@verifier("codet", CodeTParams, Traits(relative=True))
def codet(params: CodeTParams, deps: VerifierDeps) -> Verifier:
    """CodeT (Chen et al. 2022): model-written tests, dual agreement with the programs."""
    if deps.generator is None:
        raise ConfigError(
            "verifier 'codet' needs a model to write tests; give it a generator (the policy "
            "model serves by default)"
        )
    return CodeT(deps.generator, params)
