"""Process reward models from a local Hugging Face directory, with the two common heads.

- `token_classification`: a model with a classification head (e.g. Qwen2.5-Math-PRM); each
  step is followed by a separator and the step's score is P(label `good`) at that token.
- `good_token`: a causal LM trained to emit a verdict token after a step tag (Math-Shepherd
  style); the step's score is P(good) / (P(good) + P(bad)) of the next token at the tag.

`head=auto` reads the model's architecture. Nothing is downloaded: the directory must hold
the config, weights and tokenizer. Every token the PRM reads is charged as verifier cost.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from testtime.core.cost import Cost, flops
from testtime.core.errors import ConfigError, ModelNotFoundError
from testtime.core.registry import Params
from testtime.core.steps import Aggregate, SplitMode, StepSplitter
from testtime.core.types import Candidate, Problem
from testtime.verifiers.base import (
    ProcessVerifier,
    StepScores,
    Traits,
    Verifier,
    VerifierDeps,
    verifier,
)

Head = Literal["auto", "token_classification", "good_token"]


@dataclass(frozen=True)
class PrmParams(Params):
    path: str = ""  # a local model directory (config.json, weights, tokenizer)
    head: Head = "auto"
    separator: str = "\n\n"  # the text after each step where it is scored (e.g. "<extra_0>")
    good: str = "+"  # good_token head: the verdict tokens
    bad: str = "-"
    label: int = 1  # token_classification head: the class meaning "this step is good"
    max_tokens: int = 2048  # the longest input scored (longer ones keep their end)
    split: SplitMode = "blank_line"
    pattern: str = ""
    aggregate: Aggregate = "last"

    def validate(self) -> None:
        if not self.path:
            raise ConfigError("verifier 'prm' needs path=DIR, a local PRM model directory")
        self.positive("max_tokens")
        if not self.separator:
            raise ConfigError("parameter 'separator' must not be empty")
        StepSplitter(self.split, self.pattern)


def detect_head(path: Path) -> Head:
    """The head a model directory's config declares."""
    config = path / "config.json"
    if not config.is_file():
        raise ModelNotFoundError(f"{path} is not a model directory (no config.json)")
    arch = " ".join(json.loads(config.read_text()).get("architectures") or [])
    if "ForTokenClassification" in arch:
        return "token_classification"
    if "ForCausalLM" in arch:
        return "good_token"
    raise ConfigError(
        f"{path} holds a {arch or 'model of unknown architecture'}, not a PRM with a "
        "token-classification head or a causal LM head; set head= explicitly only if it is one"
    )


class HfPrm(ProcessVerifier):
    """Step scores from a local PRM: one forward pass per candidate, scored at separators."""

    name = "prm"

    def __init__(self, p: PrmParams) -> None:
        super().__init__(StepSplitter(p.split, p.pattern), p.aggregate)
        import torch
        from transformers import (
            AutoModelForCausalLM,
            AutoModelForTokenClassification,
            AutoTokenizer,
        )

        path = Path(p.path).expanduser()
        found = detect_head(path)
        head = found if p.head == "auto" else p.head
        if head != found:
            raise ConfigError(f"{path} has a {found} head, not the {head} head asked for")
        self.p, self.head, self.torch = p, head, torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        cls = (
            AutoModelForTokenClassification
            if head == "token_classification"
            else AutoModelForCausalLM
        )
        self.model: Any = cls.from_pretrained(str(path), local_files_only=True).eval()
        self.n_params = sum(t.numel() for t in self.model.parameters())
        if head == "good_token":
            self.verdicts = [self._single_token(p.good), self._single_token(p.bad)]
        elif not 0 <= p.label < self.model.config.num_labels:
            raise ConfigError(f"label {p.label} is not a class of this PRM "
                              f"(it has {self.model.config.num_labels})")  # fmt: skip

    def _single_token(self, text: str) -> int:
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if len(ids) != 1:
            raise ConfigError(f"verdict {text!r} is {len(ids)} tokens for this PRM's tokenizer; "
                              "set good= / bad= to single tokens")  # fmt: skip
        return int(ids[0])

    def flops_per_candidate(self, problem: Problem) -> float:
        return flops(self.n_params, self.p.max_tokens)

    async def score_steps(self, problem: Problem, candidates: Sequence[Candidate]) -> StepScores:
        done = await asyncio.to_thread(lambda: [self._one(problem, c) for c in candidates])
        tokens = sum(n for _, n in done)
        cost = Cost.of_verification(self.n_params, tokens, calls=len(candidates))
        return StepScores(tuple(s for s, _ in done), cost)

    def _one(self, problem: Problem, c: Candidate) -> tuple[tuple[float, ...], int]:
        """Token ids of prompt + each step + separator, scored at each step's last token."""
        ids = self.tokenizer.encode(problem.prompt + "\n", add_special_tokens=True)
        marks = []
        for step in self.steps(c):
            ids += self.tokenizer.encode(step + self.p.separator, add_special_tokens=False)
            marks.append(len(ids) - 1)
        if not marks:
            return (), 0
        cut = max(0, len(ids) - self.p.max_tokens)
        ids, marks = ids[cut:], [max(0, m - cut) for m in marks]
        with self.torch.no_grad():
            logits = self.model(self.torch.tensor([ids])).logits[0].float()
        if self.head == "token_classification":
            probs = logits[marks].softmax(-1)[:, self.p.label]
        else:
            probs = logits[marks][:, self.verdicts].softmax(-1)[:, 0]
        return tuple(float(x) for x in probs), len(ids)


@verifier("prm", PrmParams, Traits(loads_file=True))
def prm(params: PrmParams, deps: VerifierDeps) -> Verifier:
    """A process reward model from a local directory (classification or verdict-token head)."""
    return HfPrm(params)
