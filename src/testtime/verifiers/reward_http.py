"""Outcome reward models served over HTTP by vLLM's Pooling API.

Serve a sequence-classification reward model as a pooling model (`vllm serve
Skywork/Skywork-Reward-V2-Qwen3-0.6B --runner pooling`; older vLLMs: `--task reward`
or `--task classify`) and name its root as `url`. Each candidate is one request
(the server batches them), `POST {url}/pooling` in the chat form, so the server renders
the conversation with the model's own chat template:

    {"model": M, "messages": [...problem..., {"role": "assistant", "content": candidate}],
     "task": "classify", "use_activation": false}

and vLLM answers `{"data": [{"index": 0, "data": [...]}], "usage": {"prompt_tokens": T}}`,
where `data` holds one logit per label (`classify`), or one row per token (a token-level
reward model, or `task=token_classify`), of which the last row is read. The score is that
logit, or log P(label) (`score=logprob`, computed here), as `reward_model` scores a local
directory, and a vote weighs exp(score). `use_activation: false` asks for raw logits; a vLLM
older than that field ignores it and sends its activation (sigmoid or softmax): the same
order, so best-of-N picks the same candidate, but the scores are then probabilities.

Cost: the prompt tokens the server reports (`usage`) are verifier tokens, and FLOPs are 2 x
`n_params` x those tokens; `n_params=0` (the default: a served model's size is unknown here)
or a server that reports no usage charges 0 FLOPs, so a FLOPs budget does not see this
verifier. With `max_tokens` the server keeps each input's last `max_tokens` tokens
(`truncate_prompt_tokens`), which bounds the worst case a budget reserves.

What is not covered: retries (a failed call fails the scoring with a one-line ServerError
naming the URL and what to check), and a served `testtime` request choosing this verifier:
it would send the request's text, with a key from the server's environment, to a URL of
the requester's choosing, so the server refuses it (`Traits.calls_url`).
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from testtime.core.cost import Cost, flops
from testtime.core.errors import ConfigError
from testtime.core.registry import Params
from testtime.core.types import Candidate, Problem
from testtime.generators.http_wire import ServerError, error_detail
from testtime.verifiers.base import Scores, Traits, Verifier, VerifierDeps, verifier
from testtime.verifiers.reward_model import ScoreKind, scored

if TYPE_CHECKING:
    import httpx

Task = Literal["classify", "token_classify", "default"]


@dataclass(frozen=True)
class RewardHttpParams(Params):
    url: str = ""  # the server's root, e.g. http://127.0.0.1:8000 (a trailing /v1 is dropped)
    model: str = ""  # the model name the server serves
    api_key_env: str = "VLLM_API_KEY"  # the variable holding the key ("" sends none)
    timeout: float = 60.0  # seconds for one candidate's whole answer
    label: int | None = None  # which of several values per candidate is scored
    score: ScoreKind = "logit"
    task: Task = "classify"  # vLLM's pooling task; default: the server's own choice
    max_tokens: int = 0  # the server keeps each input's last max_tokens tokens (0: all)
    n_params: int = 0  # the served model's parameters, for FLOPs (0: not counted)
    concurrency: int = 16  # requests in flight at once

    def validate(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(
                f"verifier 'reward_http' needs url=http(s)://HOST:PORT, the root of a vLLM "
                f"server running a reward model, got {self.url!r}"
            )
        if not self.model:
            raise ConfigError("verifier 'reward_http' needs model=NAME, the model it serves")
        if not (self.timeout > 0 and math.isfinite(self.timeout)):
            raise ConfigError(f"parameter 'timeout' must be > 0 seconds, got {self.timeout}")
        if self.label is not None and self.label < 0:
            raise ConfigError(f"parameter 'label' must be >= 0, got {self.label}")
        self.positive("concurrency")
        if self.max_tokens < 0 or self.n_params < 0:
            raise ConfigError("parameters 'max_tokens' and 'n_params' must be >= 0")
        if self.n_params and not self.max_tokens:
            raise ConfigError(
                "n_params counts this verifier's FLOPs, whose worst case needs a bound: set "
                "max_tokens (the most tokens the server reads per candidate) too"
            )


class RewardHttp(Verifier):
    """A reward model behind vLLM's /pooling endpoint: one request per candidate."""

    name = "reward_http"

    def __init__(self, p: RewardHttpParams) -> None:
        root = p.url.rstrip("/")
        root = root.removesuffix("/v1")
        self.p, self.endpoint = p, f"{root}/pooling"
        self._key = os.environ.get(p.api_key_env, "") if p.api_key_env else ""

    def flops_per_candidate(self, problem: Problem) -> float:
        """The bound holds because the server keeps at most `max_tokens` tokens."""
        return flops(self.p.n_params, self.p.max_tokens)

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> Scores:
        import httpx

        slots = asyncio.Semaphore(self.p.concurrency)
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        async with httpx.AsyncClient(headers=headers, timeout=self.p.timeout) as client:
            tasks = [
                asyncio.ensure_future(self._one(client, slots, problem, c.text)) for c in candidates
            ]
            try:
                done = await asyncio.gather(*tasks)
            except BaseException:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
        tokens = sum(n for _, n in done)
        cost = Cost.of_verification(self.p.n_params, tokens, calls=len(candidates))
        return Scores(tuple(s for s, _ in done), cost)

    def body(self, problem: Problem, text: str) -> dict[str, Any]:
        """The /pooling request for one candidate, in the chat form."""
        chat = [{"role": m.role, "content": m.content} for m in problem.messages]
        out: dict[str, Any] = {
            "model": self.p.model,
            "messages": [*chat, {"role": "assistant", "content": text}],
            "use_activation": False,
        }
        if self.p.task != "default":
            out["task"] = self.p.task
        if self.p.max_tokens:
            out["truncate_prompt_tokens"] = self.p.max_tokens
            out["truncation_side"] = "left"  # keep the end: the answer
        return out

    async def _one(
        self, client: httpx.AsyncClient, slots: asyncio.Semaphore, problem: Problem, text: str
    ) -> tuple[float, int]:
        """One candidate's score and the prompt tokens the server reported (0 if none)."""
        import httpx

        async with slots:
            try:
                async with asyncio.timeout(self.p.timeout):  # the whole answer, not per byte
                    response = await client.post(self.endpoint, json=self.body(problem, text))
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                raise self._error(
                    f"could not reach the reward model server at {self.endpoint} "
                    f"({type(exc).__name__}: {exc}); is vLLM running there? check url= (the "
                    "server's root, e.g. http://127.0.0.1:8000)"
                ) from None
            except (TimeoutError, httpx.TimeoutException):
                raise self._error(
                    f"the reward model server at {self.endpoint} did not answer within "
                    f"{self.p.timeout:g} s; it may be overloaded: raise timeout= or lower "
                    "concurrency="
                ) from None
            except httpx.TransportError as exc:  # reset, closed mid-answer, bad protocol
                raise self._error(
                    f"the connection to the reward model server at {self.endpoint} failed "
                    f"({type(exc).__name__}: {exc}); check that it is up and that url= is right"
                ) from None
        if response.status_code >= 400:
            raise self._refused(response)
        try:
            data = response.json()
        except ValueError:
            raise self._error(
                f"the server at {self.endpoint} answered {response.status_code} with something "
                f"that is not JSON ({response.text[:200]!r}); is url= the root of a vLLM server?"
            ) from None
        return self._value(self._logits(data)), _prompt_tokens(data)

    def _logits(self, data: Any) -> list[float]:
        """The candidate's values from a /pooling answer: `data[0].data`, one per label, or
        one row per token (the last row is the whole conversation's)."""
        item = data.get("data") if isinstance(data, dict) else None
        values = item[0].get("data") if isinstance(item, list) and item and isinstance(
            item[0], dict
        ) else None  # fmt: skip
        if isinstance(values, list) and values and isinstance(values[-1], list):
            values = values[-1]  # per-token rows
        if not isinstance(values, list) or not values or not all(_number(v) for v in values):
            raise self._error(
                f"the server at {self.endpoint} answered without numbers in data[0].data "
                f"({str(data)[:200]!r}); is it vLLM's Pooling API serving a reward model "
                "(vllm serve MODEL --runner pooling)?"
            )
        return [float(v) for v in values]

    def _value(self, logits: list[float]) -> float:
        """The score from one candidate's values, by `label` and `score`."""
        n = len(logits)
        index = 0 if self.p.label is None else self.p.label
        if self.p.label is None and n > 1:
            raise self._error(
                f"the server at {self.endpoint} sent {n} values per candidate (one per label); "
                f"choose the one that means a good answer with label=INDEX (0 to {n - 1})"
            )
        if index >= n:
            raise self._error(
                f"label={index} is not among the {n} value(s) the server at {self.endpoint} "
                f"sends per candidate; use 0 to {n - 1}"
            )
        return scored(logits, index, self.p.score)

    def _refused(self, response: httpx.Response) -> ServerError:
        status, detail = response.status_code, error_detail(response.text)
        said = f"({status}: {detail})"
        if status in (401, 403):
            sent = "" if self._key else f"; no key was sent: ${self.p.api_key_env} is not set"
            hint = (
                f"the server refused the API key {said}{sent}; set api_key_env= to the "
                "variable holding it"
            )
        elif status == 404:
            hint = (
                f"the server found no such thing {said}; vLLM serves reward models at "
                f"ROOT/pooling: check that url= is the server's root (not .../v1/...) and that "
                f"it serves the model {self.p.model!r}"
            )
        elif status < 500:
            hint = (
                f"the server rejected the request {said}; is it running a reward model as a "
                "pooling model (vllm serve MODEL --runner pooling), with the task asked for "
                f"(task={self.p.task})?"
            )
        else:
            hint = f"the server failed {said}; it may be overloaded or down: try again later"
        return self._error(f"reward model at {self.endpoint}: {hint}", status, detail)

    def _error(self, message: str, status: int | None = None, detail: str = "") -> ServerError:
        """A ServerError with the API key cut out, even where the server echoed it."""
        if self._key:
            message, detail = message.replace(self._key, "***"), detail.replace(self._key, "***")
        return ServerError(message, status, detail)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _prompt_tokens(data: dict[str, Any]) -> int:
    """The tokens the server says it read (0 when it reports no usage)."""
    usage = data.get("usage")
    for key in ("prompt_tokens", "total_tokens"):
        v = usage.get(key) if isinstance(usage, dict) else None
        if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
            return v
    return 0


@verifier("reward_http", RewardHttpParams, Traits(weight="exp", calls_url=True))
def reward_http(params: RewardHttpParams, deps: VerifierDeps) -> Verifier:
    """A reward model served by vLLM (/pooling); scores its logit (or log-probability)."""
    return RewardHttp(params)
