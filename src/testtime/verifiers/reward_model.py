"""Outcome reward models from a local Hugging Face directory (a sequence-classification head).

The model reads the whole conversation, rendered by its tokenizer's chat template: the
problem's messages with the candidate as the assistant's turn, and its head's output at the
last token is the reward (Skywork-Reward, ArmoRM-style `*ForSequenceClassification`
models). The score is in the log domain, so a vote weighs exp(score):

- `score=logit` (default): the raw logit. With one label it is the reward r of a
  Bradley-Terry model, and exp(r) its strength; with several, the `label` class's logit.
- `score=logprob`: log P(label): log-sigmoid of a single logit, else log-softmax, so a
  vote weighs the probability.

Inputs longer than `max_length` tokens keep their end (the answer; the problem's start is
cut). Candidates are scored `batch_size` at a time, padded on the right with the model's
pad token (the head reads the last token that is not padding, as in transformers); a
model whose config names no pad token is scored one candidate per pass.

Nothing is downloaded (`local_files_only`). A directory without a trained classification
head is refused, never scored by a randomly initialised one: a config whose
`architectures` names no `*ForSequenceClassification` (a causal LM), or a checkpoint that
lacks (or mis-shapes) weights the head needs. Every token read is charged as verifier cost
(2 x parameters x tokens).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from testtime.core.cost import Cost, flops
from testtime.core.errors import ConfigError, ModelNotFoundError
from testtime.core.registry import Params
from testtime.core.types import Candidate, Problem
from testtime.generators.models import check_device, check_model_dir
from testtime.verifiers.base import Scores, Traits, Verifier, VerifierDeps, verifier

ScoreKind = Literal["logit", "logprob"]
HEAD = "ForSequenceClassification"


@dataclass(frozen=True)
class RewardModelParams(Params):
    path: str = ""  # a local model directory (config.json, weights, tokenizer)
    label: str = ""  # the class scored when the head has several (a name in config.id2label)
    score: ScoreKind = "logit"
    max_length: int = 4096  # tokens per input; longer ones keep their end
    batch_size: int = 8  # candidates per forward pass (bounds activation memory)
    device: str = "auto"  # auto: a GPU when there is one
    dtype: str = "auto"  # auto: bf16 where the hardware has it, else fp32

    def validate(self) -> None:
        if not self.path:
            raise ConfigError(
                "verifier 'reward_model' needs path=DIR, a local reward model directory "
                "(a *ForSequenceClassification checkpoint with its tokenizer)"
            )
        self.positive("max_length", "batch_size")
        check_device(self.device)


def check_head(path: Path) -> None:
    """A ConfigError for a path that is not a model directory, or one whose config declares
    a model without a sequence-classification head."""
    if not path.exists():
        raise ConfigError(f"reward model path {path} does not exist; give a local directory")
    config = path / "config.json"
    if not config.is_file():
        raise ConfigError(f"{path} is not a model directory (no config.json)")
    check_model_dir(path)  # names a config.json that is not JSON, or corrupt weights
    declared = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    if declared and not any(str(a).endswith(HEAD) for a in declared):
        raise ConfigError(
            f"{path} holds a {', '.join(map(str, declared))}, not a reward model with a "
            f"sequence-classification head (*{HEAD}); its head would be random weights. "
            "Point path= at a reward model, or ask a causal LM with verifier 'judge'"
        )


class RewardModel(Verifier):
    """A sequence-classification reward model scoring each candidate's whole conversation."""

    name = "reward_model"

    def __init__(self, p: RewardModelParams) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from testtime.generators.transformers import pick_device, pick_dtype

        path = Path(p.path).expanduser()
        check_head(path)
        dev = pick_device(p.device)
        self.p, self.torch, self.device = p, torch, dev
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except Exception as exc:  # transformers raises many kinds; the user needs one line
            raise ModelNotFoundError(
                f"cannot read the tokenizer in {path} ({_said(exc)}); a reward model directory "
                "needs its tokenizer files (tokenizer.json, tokenizer_config.json)"
            ) from exc
        if not getattr(self.tokenizer, "chat_template", None):
            raise ConfigError(
                f"the tokenizer in {path} has no chat template, so the conversation cannot be "
                "rendered as the reward model was trained; add its chat_template to "
                "tokenizer_config.json (or chat_template.jinja)"
            )
        try:
            model, info = AutoModelForSequenceClassification.from_pretrained(
                str(path), dtype=pick_dtype(p.dtype, dev), local_files_only=True,
                output_loading_info=True,
            )  # fmt: skip
        except (ConfigError, ModelNotFoundError):
            raise
        except Exception as exc:
            raise ModelNotFoundError(
                f"cannot load {path} as a sequence-classification model ({_said(exc)}); "
                "check its config.json and weights files"
            ) from exc
        fresh = sorted(info.get("missing_keys") or []) + [
            str(m[0]) for m in info.get("mismatched_keys") or []
        ]
        if fresh:
            raise ConfigError(
                f"{path} has no trained classification head: {', '.join(fresh[:4])} "
                f"{'is' if len(fresh) == 1 else 'are'} not in its weights and would be random; "
                "point path= at a reward model checkpoint (*ForSequenceClassification)"
            )
        self.model: Any = model.to(dev).eval()
        self.n_params = int(sum(t.numel() for t in self.model.parameters()))
        config = self.model.config
        self.index = _label_index(config.num_labels, dict(config.id2label), p.label, path)
        self.pad = config.get_text_config().pad_token_id  # None: one candidate per pass

    def flops_per_candidate(self, problem: Problem) -> float:
        """The bound holds because inputs are cut to `max_length` tokens."""
        return flops(self.n_params, self.p.max_length)

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> Scores:
        ids, values = await asyncio.to_thread(self._score, problem, candidates)
        tokens = sum(len(x) for x in ids)
        return Scores(values, Cost.of_verification(self.n_params, tokens, len(candidates)))

    def _score(
        self, problem: Problem, candidates: Sequence[Candidate]
    ) -> tuple[list[list[int]], tuple[float, ...]]:
        ids = [self.encode(problem, c.text) for c in candidates]
        return ids, self._forward(ids)

    def encode(self, problem: Problem, text: str) -> list[int]:
        """Token ids of the conversation, the candidate as the assistant's turn, cut to its
        last `max_length` tokens."""
        chat = [{"role": m.role, "content": m.content} for m in problem.messages]
        chat.append({"role": "assistant", "content": text})
        rendered = self.tokenizer.apply_chat_template(chat, tokenize=False)
        ids = self.tokenizer(rendered, add_special_tokens=False)["input_ids"]
        return [int(i) for i in ids[-self.p.max_length :]]

    def _forward(self, ids: list[list[int]]) -> tuple[float, ...]:
        """Scores in the candidates' order; batches of similar length, padded on the right."""
        torch, out = self.torch, [0.0] * len(ids)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        size = self.p.batch_size if self.pad is not None else 1
        for start in range(0, len(order), size):
            batch = order[start : start + size]
            width = max(len(ids[i]) for i in batch)
            rows = torch.full((len(batch), width), self.pad or 0, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, i in enumerate(batch):
                rows[r, : len(ids[i])] = torch.tensor(ids[i])
                mask[r, : len(ids[i])] = 1
            with torch.no_grad():
                logits = self.model(
                    input_ids=rows.to(self.device), attention_mask=mask.to(self.device)
                ).logits.float()
            for r, i in enumerate(batch):
                out[i] = scored(logits[r].tolist(), self.index, self.p.score)
        return tuple(out)


def scored(logits: Sequence[float], index: int, kind: ScoreKind) -> float:
    """A candidate's score from its head's logits: the `index`th logit, or its log-probability
    (log-sigmoid of a single logit, else log-softmax), computed stably."""
    x = logits[index]
    if kind == "logit":
        return x
    if len(logits) == 1:
        return min(x, 0.0) - math.log1p(math.exp(-abs(x)))
    top = max(logits)
    return x - top - math.log(sum(math.exp(v - top) for v in logits))


def _label_index(num_labels: int, id2label: dict[int, str], label: str, path: Path) -> int:
    """The head output scored: the only one, or the one `label` names."""
    names = [str(id2label.get(i, f"LABEL_{i}")) for i in range(num_labels)]
    if num_labels == 1 and label in ("", names[0]):
        return 0
    if not label:
        raise ConfigError(
            f"{path} has {num_labels} labels ({', '.join(names)}); choose the one that "
            "means a good answer with label=NAME"
        )
    if label not in names:
        raise ConfigError(f"label {label!r} is not a class of {path}; it has: {', '.join(names)}")
    return names.index(label)


def _said(exc: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__


@verifier("reward_model", RewardModelParams, Traits(loads_file=True, weight="exp"))
def reward_model(params: RewardModelParams, deps: VerifierDeps) -> Verifier:
    """A local sequence-classification reward model; scores its logit (or log-probability)."""
    return RewardModel(params)
