"""Generative verification: the judge reasons, then answers whether the answer is correct.

GenRM (Zhang et al. 2024, "Generative Verifiers: Reward Modeling as Next-Token
Prediction"), its chain-of-thought form: the judge model verifies a solution step by step
and ends with "Is the answer correct (Yes/No)? X". `votes` verifications are sampled per
candidate at `temperature` > 0 and averaged, so a lab sweep can trade solutions for
verifications at a fixed budget (Singhi et al. 2025, "When To Solve, When To Verify").

A verification scores 1 for Yes and 0 for No, read from its text (the last "correct
(Yes/No)? X", else a last line that is Yes or No, as `verdict` says). With `logprobs`, it
scores P(Yes) / (P(Yes) + P(No)) instead, as the paper does: its rationale (cut before any
verdict it wrote) is given back as the judge's turn, the question is asked as the next user
turn, and the top logprobs of the reply's first token are read (one more call and token per
verification; a turn rather than a continuation, which an instruct model may simply end).
A verification whose verdict cannot be read (no Yes/No in the text, or neither among the
top tokens) is dropped: it is counted in `unparsed` (and logged), and a candidate none of
whose verifications gives a verdict scores 0.5, undecided. Every token the judge reads or
writes is verifier cost.

Each candidate's verifications are seeded from the problem and its text, so a response is
verified the same way wherever it appears (score_once gives its copies one score anyway).

`genrm` asks the policy (VerifierDeps.generator); `genrm_model` asks a judge model of its
own, `judge` (any name `load_generator` takes, loaded once per process by
`generators/models.py: opened`, shared with any other component naming it): it loads a model
named in its parameters, so a server allows it only with --allow-file-verifiers.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import zlib
from dataclasses import dataclass, replace

from testtime.core.cost import Cost, flops
from testtime.core.errors import ConfigError
from testtime.core.registry import Params
from testtime.core.templates import fill, short
from testtime.core.types import Candidate, Message, Problem, Request
from testtime.generators.base import Generator
from testtime.generators.models import opened
from testtime.verifiers.base import Traits, Verifier, VerifierDeps, verifier
from testtime.verifiers.judge import TOP, Judge, p_yes

log = logging.getLogger(__name__)

QUESTION = "Is the answer correct (Yes/No)?"
TEMPLATE = (
    "Problem:\n{problem}\n\nProposed solution:\n{solution}\n\n"
    "Verify the solution step by step. Then end with the line "
    "'" + QUESTION + " X', where X is Yes or No."
)
_ASKED = re.compile(r"(?:is\s+the\s+answer\s+)?correct\s*\(\s*yes\s*/\s*no\s*\)\s*\?", re.I)
_YES_NO = re.compile(r"^\W*(yes|no)\b", re.I)  # after the question: its first word
_VERDICT_LINE = re.compile(r"^\W*(yes|no)\b\W*(?:$|[,.;:!])", re.I)  # "No." but not "No idea"


@dataclass(frozen=True)
class GenRMParams(Params):
    votes: int = 4  # verifications sampled per candidate, averaged
    temperature: float = 0.7  # > 0 when votes > 1, or every vote is the same
    max_tokens: int = 256  # the most tokens of one verification (its reasoning and verdict)
    logprobs: bool = False  # score a verification by P(Yes) of its verdict token
    prompt: str = TEMPLATE  # must contain {problem} and {solution}
    max_solution_tokens: int = 512  # longer solutions keep only their end (the answer)

    def validate(self) -> None:
        self.positive("votes", "max_tokens", "max_solution_tokens")
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise ConfigError(f"parameter 'temperature' must be >= 0, got {self.temperature}")
        if self.votes > 1 and self.temperature == 0:
            raise ConfigError(
                f"genrm samples {self.votes} verifications at temperature 0, which makes them "
                "all the same; give temperature > 0 (e.g. 0.7) or votes=1"
            )
        short("prompt", self.prompt)  # it may arrive in a server request: bounded, fields only
        fill(self.prompt, {"problem": "", "solution": ""}, "prompt")
        missing = [k for k in ("{problem}", "{solution}") if k not in self.prompt]
        if missing:
            raise ConfigError(
                f"genrm prompt lacks {' and '.join(missing)}; write a text with both "
                "placeholders, e.g. the default: " + repr(TEMPLATE)
            )


@dataclass(frozen=True)
class GenRMModelParams(GenRMParams):
    judge: str = ""  # the judge model: any name load_generator takes (required)

    def validate(self) -> None:
        super().validate()
        if not self.judge.strip():
            raise ConfigError(
                "verifier 'genrm_model' needs parameter 'judge', the model to verify with "
                "(e.g. judge=smollm2-135m); to verify with the policy itself use 'genrm'"
            )


class GenRM(Judge):
    """Scores each candidate by the mean verdict of `votes` sampled verifications."""

    name = "genrm"

    def __init__(self, generator: Generator, params: GenRMParams = GenRMParams()) -> None:
        self.generator = generator
        self.template = params.prompt
        self.max_solution_tokens = params.max_solution_tokens
        self.votes = params.votes
        self.temperature = params.temperature
        self.max_tokens = params.max_tokens
        self.logprobs = params.logprobs
        self.verifications = 0  # verifications sampled so far
        self.unparsed = 0  # ... of which no verdict could be read (dropped)

    def flops_per_candidate(self, problem: Problem) -> float:
        """The worst case: `votes` verifications of `max_tokens` after a prompt cut to its
        limit (prefilled once), and with `logprobs` one verdict call per verification."""
        tokens = self._limit(problem) + self.votes * self.max_tokens
        if self.logprobs:
            tokens += self.votes * (self._verdict_limit(problem) + 1)
        return flops(self.generator.n_params, tokens)

    async def one(self, problem: Problem, c: Candidate) -> tuple[float, Cost]:
        """One candidate's mean verdict and what verifying it cost."""
        seed = zlib.crc32(f"{problem.id}\x00{c.text}".encode())
        asked = replace(self._fitted(problem, c.text), seed=seed)
        gen = await self.generator.generate(asked)
        cost = self._cost(gen.cost)
        texts = [comp.text for comp in gen.completions]
        if self.logprobs:
            got = await asyncio.gather(*(self._p_yes(problem, asked, t) for t in texts))
            verdicts = [v for v, _ in got]
            cost = sum((spent for _, spent in got), cost)
        else:
            verdicts = [verdict(t) for t in texts]
        read = [v for v in verdicts if v is not None]
        self.verifications += len(verdicts)
        self.unparsed += len(verdicts) - len(read)
        if len(read) < len(verdicts):
            log.info(
                "genrm: %d of %d verifications of candidate %d gave no verdict (dropped)",
                len(verdicts) - len(read), len(verdicts), c.id,
            )  # fmt: skip
        return (sum(read) / len(read) if read else 0.5), cost

    async def _p_yes(
        self, problem: Problem, asked: Request, rationale: str
    ) -> tuple[float | None, Cost]:
        """P(Yes) of the verdict token after the rationale (cut before any verdict it wrote)
        and the question; None when neither Yes nor No is among the top tokens."""
        found = list(_ASKED.finditer(rationale))
        head = rationale[: found[-1].start()] if found else rationale
        limit = self._verdict_limit(problem)
        request = self._verdict_request(asked, head)
        while head and self.generator.count_prompt_tokens(request) > limit:
            head = head[len(head) // 8 + 1 :]
            request = self._verdict_request(asked, head)
        gen = await self.generator.generate(request)
        cost = self._cost(gen.cost)
        tops = gen.completions[0].top_logprobs if gen.completions else ()
        if tops is None:
            raise ConfigError(
                f"verifier 'genrm' with logprobs=true needs top logprobs from its model, but "
                f"generator {self.generator.name!r} returned none; use a backend that returns "
                "them, or logprobs=false to read the verdict from the text"
            )
        if not tops or not any(t.strip().lower() in ("yes", "no") for t in tops[0]):
            return None, cost  # no token to read (it ended at once), or neither word
        return p_yes(tops[0]), cost

    def _request(self, problem: Problem, solution: str) -> Request:
        text = fill(self.template, {"problem": problem.prompt, "solution": solution}, "prompt")
        return Request(
            (Message("user", text),),
            n=self.votes,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
        )

    def _verdict_request(self, asked: Request, head: str) -> Request:
        """The verification `asked` for, `head` given back as the judge's turn, then the
        verdict question as the next user turn: an instruct model answers it first thing
        (continuing its own turn after the question, SmolLM2 ended it: no token to read)."""
        chat = (*asked.messages, Message("assistant", head.strip()), Message("user", QUESTION))
        return Request(chat, n=1, max_tokens=1, temperature=0.0, top_logprobs=TOP)

    def _verdict_limit(self, problem: Problem) -> int:
        """The most prompt tokens of a verdict call: the verification's prompt limit, the
        question and one verification's worth of reasoning."""
        bare = self._request(problem, "")
        question = self._verdict_request(bare, "")
        added = self.generator.count_prompt_tokens(question) - (
            self.generator.count_prompt_tokens(bare)
        )
        return self._limit(problem) + added + self.max_tokens

    def _cost(self, spent: Cost) -> Cost:
        """A judge call's tokens (read and written) as verifier cost."""
        return Cost.of_verification(
            self.generator.n_params, spent.prompt_tokens + spent.generated_tokens
        )


def verdict(text: str) -> float | None:
    """1.0 for a verification that concludes Yes, 0.0 for No, None when it says neither:
    the first word after its last "correct (Yes/No)?", else a last line that is Yes or No
    (with punctuation: "No.", "Yes, it holds"; not "No idea")."""
    found = list(_ASKED.finditer(text))
    if found:
        after = _YES_NO.match(text[found[-1].end() :])
        return None if after is None else float(after.group(1).lower() == "yes")
    lines = [line for line in text.splitlines() if line.strip()]
    last = _VERDICT_LINE.match(lines[-1].strip()) if lines else None
    return None if last is None else float(last.group(1).lower() == "yes")


@verifier("genrm", GenRMParams, Traits())  # a mean verdict in [0, 1]: it weighs a vote as it is
def genrm(params: GenRMParams, deps: VerifierDeps) -> Verifier:
    """The policy verifies each candidate step by step, `votes` times; the mean verdict."""
    if deps.generator is None:
        raise ConfigError(
            "verifier 'genrm' needs a model to ask; give it a generator (the policy model "
            "serves by default), or use 'genrm_model' with judge=MODEL"
        )
    return GenRM(deps.generator, params)


@verifier("genrm_model", GenRMModelParams, Traits(loads_file=True))
def genrm_model(params: GenRMModelParams, deps: VerifierDeps) -> Verifier:
    """GenRM with a judge model of its own (`judge`), loaded once per process."""
    built = GenRM(opened(params.judge), params)
    built.name = "genrm_model"
    return built
