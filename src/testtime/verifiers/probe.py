"""A learned probe: logistic regression on the policy's own hidden states, predicting
whether a (partial) solution is correct.

Trained from samples the lab stored with their correctness (`testtime verifiers
train-probe RUN_ID`), saved as one .npz file, and used as an outcome or a process verifier
(each step prefix scored). It needs the policy's hidden states, so it runs with the model
it was trained on; the file records which (name and weight hash) and refuses another.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from testtime.core.cost import Cost, flops
from testtime.core.errors import ConfigError, DataError
from testtime.core.files import write_atomic
from testtime.core.registry import Params
from testtime.core.steps import Aggregate, SplitMode, StepSplitter
from testtime.core.types import Candidate, Problem, Request
from testtime.generators.base import Generator
from testtime.verifiers.base import (
    ProcessVerifier,
    StepScores,
    Traits,
    Verifier,
    VerifierDeps,
    verifier,
)


@dataclass(frozen=True)
class Probe:
    """Standardised logistic regression: P(correct | x) = sigmoid(w . (x - mean) / std + b)."""

    w: np.ndarray
    b: float
    mean: np.ndarray
    std: np.ndarray
    meta: dict[str, Any]

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = ((np.asarray(x, dtype=float) - self.mean) / self.std) @ self.w + self.b
        return np.asarray(1.0 / (1.0 + np.exp(-z)))

    def save(self, path: Path) -> None:
        """Written to a temp file beside `path`, then renamed: never half a file."""
        buf = io.BytesIO()
        np.savez(buf, w=self.w, b=self.b, mean=self.mean, std=self.std,
                 meta=json.dumps(self.meta))  # fmt: skip
        write_atomic(path, buf.getvalue())

    @classmethod
    def load(cls, path: Path) -> Probe:
        try:
            with np.load(path) as f:
                return cls(f["w"], float(f["b"]), f["mean"], f["std"], json.loads(str(f["meta"])))
        except (OSError, KeyError, ValueError) as e:
            raise DataError(f"{path} is not a probe file ({e}); train one with "
                            "`testtime verifiers train-probe RUN_ID`") from None  # fmt: skip


def fit_probe(
    x: np.ndarray, y: np.ndarray, l2: float = 1.0, meta: dict[str, Any] | None = None
) -> Probe:
    """Logistic regression by Newton's method (IRLS) with an L2 penalty, on standardised x."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or len(set(y.tolist())) < 2:
        raise DataError("a probe needs examples of both correct and incorrect solutions")
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = np.hstack([(x - mean) / std, np.ones((len(x), 1))])
    theta = np.zeros(z.shape[1])
    penalty = l2 * np.eye(z.shape[1])
    penalty[-1, -1] = 0.0  # the bias is not shrunk
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(z @ theta)))
        grad = z.T @ (p - y) + penalty @ theta
        hess = (z * (p * (1 - p))[:, None]).T @ z + penalty
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.abs(step).max() < 1e-8:
            break
    return Probe(theta[:-1], float(theta[-1]), mean, std, dict(meta or {}))


@dataclass(frozen=True)
class ProbeParams(Params):
    path: str = ""  # the .npz file `testtime verifiers train-probe` wrote
    split: SplitMode = "blank_line"
    pattern: str = ""
    aggregate: Aggregate = "last"

    def validate(self) -> None:
        if not self.path:
            raise ConfigError("verifier 'probe' needs path=FILE, a probe trained by "
                              "`testtime verifiers train-probe RUN_ID`")  # fmt: skip
        StepSplitter(self.split, self.pattern)


class ProbeVerifier(ProcessVerifier):
    """Scores every step prefix by the probe's P(correct) on the policy's hidden states."""

    name = "probe"

    def __init__(self, probe: Probe, generator: Generator, p: ProbeParams) -> None:
        super().__init__(StepSplitter(p.split, p.pattern), p.aggregate)
        self.probe, self.generator = probe, generator

    def flops_per_candidate(self, problem: Problem) -> float:
        return flops(self.generator.n_params, 4096)  # a bound: one pass per prefix, short texts

    async def score_steps(self, problem: Problem, candidates: Sequence[Candidate]) -> StepScores:
        prefixes = [self.prefixes(c) for c in candidates]
        requests = [Request(problem.messages, prefix=t) for ps in prefixes for t in ps]
        feats = await self.generator.features(requests) if requests else []
        probs = iter(self.probe.predict(np.array(feats)).tolist() if feats else [])
        tokens = sum(self.generator.count_prompt_tokens(r) for r in requests)
        cost = Cost.of_verification(self.generator.n_params, tokens, calls=len(requests))
        return StepScores(tuple(tuple(next(probs) for _ in ps) for ps in prefixes), cost)


@verifier("probe", ProbeParams, Traits(loads_file=True))
def probe(params: ProbeParams, deps: VerifierDeps) -> Verifier:
    """Logistic regression on the policy's hidden states, trained from a lab run."""
    if deps.generator is None:
        raise ConfigError("verifier 'probe' reads the policy's hidden states; it needs the model")
    loaded = Probe.load(Path(params.path).expanduser())
    trained_on = loaded.meta.get("model")
    if trained_on and trained_on != deps.generator.name:
        raise ConfigError(f"probe {params.path} was trained on model {trained_on!r}, not "
                          f"{deps.generator.name!r}; train one for this model")  # fmt: skip
    return ProbeVerifier(loaded, deps.generator, params)
