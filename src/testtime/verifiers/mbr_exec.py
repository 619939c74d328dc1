"""MBR-exec: programs that behave alike vouch for each other, the self-consistency of code.

Shi et al. 2022, "Natural Language to Code Translation with Execution" (MBR-exec), and the
clustering of AlphaCode (Li et al. 2022, "Competition-Level Code Generation with
AlphaCode", section 4.6). Every candidate runs, one jail each (a program several candidates
gave runs once), on the same inputs: the problem's calls (`CodeSpec.calls`: its public
examples' calls, then its other inputs) and, with `generated_inputs` > 0, calls of the entry
point on literal arguments that the model writes (one request of that many completions; off
by default). Candidates whose tuples of output values are equal form a cluster (a call that
raised counts as one "error" value); a candidate's score is its cluster's size over the
number of candidates scored. Best-of-N then keeps a member of the largest cluster, as
AlphaCode submits from its largest clusters, and a weighted vote gives each program the
cluster shares of its copies; no expected value is read.

A candidate joins no cluster (score 0) when it has no code, or its run returned no value at
all: it timed out, the jail failed to start, or every call raised (a program that fails on
every input says nothing about what the function does, and a crowd of crashes must not
outvote one working program). A problem with no inputs (no example stated, and none written
by the model, or `generated_inputs=0`) puts every candidate with code in one cluster: the
scores then tell only code from no code, and a run goes on (HumanEval states examples for
137 of its 164 problems; `generated_inputs=4` covers the rest). A score depends on the
other candidates scored with it (the `relative` trait). The sandbox seconds, and the
model's tokens and FLOPs when it is asked for inputs, are the verifier's cost.
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

from testtime.core.cost import Cost
from testtime.core.errors import ConfigError
from testtime.core.ledger import stream_seed
from testtime.core.templates import fill
from testtime.core.types import Candidate, Problem, Request
from testtime.generators.base import Generator
from testtime.sandbox import Execution, Verdict, aobserve
from testtime.sandbox.problems import program
from testtime.verifiers.base import Scores, Traits, Verifier, VerifierDeps, verifier
from testtime.verifiers.sandboxed import (
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
    "{problem}\n\nDo not write the function. Write inputs to try it on instead, one call per "
    "line, each of the form `{entry}(arguments)` with literal arguments, all in one "
    "```python code block."
)
RAISED = "error"  # the value of a call that raised (plain values are keyed as JSON lists)

Behaviour = tuple[str, ...]


@dataclass(frozen=True)
class MbrExecParams(SandboxParams):
    generated_inputs: int = 0  # completions asked of the model for more inputs (0: none)
    temperature: float = 0.8
    max_tokens: int = 200  # each input completion's length
    prompt: str = TEMPLATE  # must contain {problem} and {entry}
    seed: int = 0  # seeds the input request (with the problem's id)

    def validate(self) -> None:
        super().validate()
        if self.generated_inputs < 0:
            raise ConfigError(
                f"parameter 'generated_inputs' must be >= 0 (0: only the problem's inputs), "
                f"got {self.generated_inputs}"
            )
        check_sampling(self.temperature, self.max_tokens)
        check_template("prompt", self.prompt, {"problem": "", "entry": ""})


class MbrExec(Verifier):
    """Each candidate's share of the candidates that behave exactly as it does."""

    name = "mbr_exec"

    def __init__(
        self, generator: Generator | None, params: MbrExecParams = MbrExecParams()
    ) -> None:
        self.generator = generator
        self.params = params
        self.limits = params.limits

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> Scores:
        spec = code_spec(problem, self.name)
        if not candidates:
            return Scores(())  # nothing to compare: the model is not asked
        calls, cost = list(spec.calls), Cost()
        if self.generator is not None and self.params.generated_inputs:
            texts, cost = await ask(self.generator, self._request(problem, spec.entry))
            calls = list(dict.fromkeys([*calls, *generated_inputs(texts, spec.entry)]))
        if not calls:  # no input stated or written: nothing tells the programs apart
            alike = [() if c.answer is not None else None for c in candidates]
            return Scores(tuple(cluster_shares(alike)), cost)
        runs, seconds = await run_each(
            [c.answer for c in candidates],
            lambda code: aobserve(program(spec, code), calls, self.limits),
        )
        behaviours = [None if r is None else behaviour(r) for r in runs]
        return Scores(tuple(cluster_shares(behaviours)), cost + Cost(sandbox_seconds=seconds))

    def flops_per_candidate(self, problem: Problem) -> float:
        """Writing the inputs, at most, for a candidate scored alone (0 when not asked)."""
        if self.generator is None or not self.params.generated_inputs:
            return 0.0
        spec = code_spec(problem, self.name)
        return worst_flops(self.generator, self._request(problem, spec.entry))

    def _request(self, problem: Problem, entry: str) -> Request:
        p = self.params
        text = fill(p.prompt, {"problem": problem.prompt, "entry": entry}, "prompt")
        seed = stream_seed(p.seed, problem.id, "mbr_exec", 32)
        return request(text, p.generated_inputs, p.temperature, p.max_tokens, seed)


def behaviour(run: Execution) -> Behaviour | None:
    """The run's output values as a hashable key (a raised call: `RAISED`); None when it
    returned no value at all (timed out, failed to start, or every call raised)."""
    if run.verdict in (Verdict.TIMEOUT, Verdict.ERROR) or all(v is None for v in run.values):
        return None
    return tuple(RAISED if v is None else plain_key(v) for v in run.values)


def cluster_shares(behaviours: Sequence[Hashable | None]) -> list[float]:
    """Each candidate's cluster size over all candidates (None: in no cluster, 0)."""
    size = Counter(b for b in behaviours if b is not None)
    return [0.0 if b is None else size[b] / len(behaviours) for b in behaviours]


def generated_inputs(texts: Iterable[str], entry: str) -> list[str]:
    """The distinct calls of `entry` on literal arguments in the model's completions: a line
    that is such a call, a `>>>` example of one, or an assert or comparison starting with one."""
    found: list[str] = []
    for text in texts:
        for line in text.splitlines():
            line = line.strip().removeprefix(">>>").strip()
            try:
                node = ast.parse(line).body
            except (SyntaxError, ValueError, MemoryError, RecursionError):
                continue
            if len(node) != 1:
                continue
            expr = node[0].test if isinstance(node[0], ast.Assert) else node[0]
            expr = expr.value if isinstance(expr, ast.Expr) else expr
            expr = expr.left if isinstance(expr, ast.Compare) else expr
            call = entry_call(expr, entry)
            if call is not None:
                found.append(call)
    return list(dict.fromkeys(found))


@verifier("mbr_exec", MbrExecParams, Traits(relative=True))
def mbr_exec(params: MbrExecParams, deps: VerifierDeps) -> Verifier:
    """MBR-exec / AlphaCode clustering: candidates scored by the share that behave alike."""
    if params.generated_inputs and deps.generator is None:
        raise ConfigError(
            "verifier 'mbr_exec' with generated_inputs > 0 needs a model to write inputs; give "
            "it a generator, or set generated_inputs=0 to use the problem's own inputs"
        )
    return MbrExec(deps.generator, params)
