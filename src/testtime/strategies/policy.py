"""A compute-optimal policy (Snell et al. 2024): per difficulty bin, the best strategy and
parameters at every budget, learned in the lab on a training split and read here at inference.

Difficulty is predicted from a few cheap pilot samples, without a gold answer: one minus the
verifier's mean score over them (Snell's "predicted difficulty"), one minus the share of the
most common answer, or the mean of both. The bins are quantiles of that on the training
problems. Each bin keeps its frontier: the configurations that beat every cheaper one, so the
best choice under a budget is the most expensive frontier entry that fits.
"""

from __future__ import annotations

import bisect
import json
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from testtime.core.errors import ConfigError
from testtime.core.files import write_atomic
from testtime.core.types import Candidate
from testtime.core.voting import group

POLICY_VERSION = 1
Axis = Literal["samples", "tokens", "flops"]
Feature = Literal["score", "vote", "score+vote", "oracle"]


@dataclass(frozen=True, slots=True)
class Choice:
    """One configuration at one budget: what to run, and what it achieved in training."""

    label: str  # the lab arm
    strategy: dict[str, Any]  # {"name", "params"}: params at this budget, ready to run
    verifier: dict[str, Any] | None  # {"name", "params"} or None
    budget: int  # the lab budget k it ran (or was replayed) at
    cost: float  # mean cost per problem of the bin, on the policy's axis
    accuracy: float  # mean accuracy on the bin's training problems


@dataclass(frozen=True, slots=True)
class Pilot:
    """How difficulty is predicted: pilot samples drawn as the lab's pools were drawn."""

    samples: int
    temperature: float
    top_p: float
    feature: Feature
    verifier: dict[str, Any] | None = None  # {"name", "params"}; scores for "score" features
    key: str | None = None  # the name its scores are stored under


@dataclass(frozen=True, slots=True)
class Policy:
    """Bins' edges and, per bin, the frontier of choices sorted by cost."""

    model: str
    fingerprint: str
    n_params: int
    task: dict[str, Any]
    run: str
    trained_on: tuple[str, ...]
    max_tokens: int
    axis: Axis
    pilot: Pilot
    edges: tuple[float, ...]
    frontiers: tuple[tuple[Choice, ...], ...]  # one per bin
    notes: dict[str, Any] = field(default_factory=dict)

    def bin(self, difficulty: float) -> int:
        """The bin of a difficulty: how many edges lie below it."""
        return bisect.bisect_left(self.edges, difficulty)

    def choose(
        self, bin_: int, budget: float, refund: Callable[[Choice], float] = lambda c: 0.0
    ) -> Choice | None:
        """The most accurate choice of the bin costing at most `budget` (None: none fits),
        once `refund` gives back what a choice gets for free (compute_optimal: the pilot
        a one-request choice reuses)."""
        fitting = [c for c in self.frontiers[bin_] if c.cost - refund(c) <= budget]
        return fitting[-1] if fitting else None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["version"] = POLICY_VERSION
        out["trained_on"] = list(self.trained_on)
        return out


def frontier(choices: Sequence[Choice]) -> tuple[Choice, ...]:
    """The choices that beat every cheaper one, cheapest first (ties: the cheaper, then the
    first given)."""
    out: list[Choice] = []
    for c in sorted(choices, key=lambda c: (c.cost, -c.accuracy)):
        if not out or c.accuracy > out[-1].accuracy:
            out.append(c)
    return tuple(out)


def difficulty(pilot: Sequence[Candidate], feature: Feature, scores: Sequence[float]) -> float:
    """Predicted difficulty in [0, 1] from pilot samples (higher is harder)."""
    if not pilot:
        return 1.0
    groups = group(pilot)
    vote = 1.0 - max((g.count for g in groups), default=0) / len(pilot)
    score = 1.0 - sum(scores) / len(scores) if scores else 1.0
    if feature == "vote":
        return vote
    if feature == "score":
        return score
    if feature == "score+vote":
        return (score + vote) / 2
    raise ConfigError(f"difficulty {feature!r} needs gold answers; it is for analysis only")


def load_policy(path: str) -> Policy:
    """The policy in a file written by `testtime lab allocate`; a ConfigError saying what is
    wrong with it otherwise (never quoting the file's content). Blocking: a server calls it
    off its event loop."""
    p = Path(path).expanduser()
    try:
        stamp = p.stat().st_mtime_ns
    except OSError:
        raise ConfigError(
            f"no policy file at {p}; write one with `testtime lab allocate RUN_ID --out {p}`"
        ) from None
    return _load(str(p), stamp)


@lru_cache(maxsize=32)
def _load(path: str, stamp: int) -> Policy:
    try:
        data = json.loads(_read(Path(path)))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not a policy file: not JSON (line {e.lineno})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a policy file: not UTF-8 text") from None
    except RecursionError:
        raise ConfigError(f"{path} is not a policy file: JSON nested too deeply") from None
    if not isinstance(data, dict) or data.get("version") != POLICY_VERSION:
        raise ConfigError(
            f"{path} is not a version-{POLICY_VERSION} policy; write it again with "
            "`testtime lab allocate`"
        )
    try:
        frontiers = tuple(
            tuple(_make(Choice, c, "a choice") for c in _list(f, "a frontier"))
            for f in _list(data.get("frontiers"), "frontiers")
        )
        policy: Policy = _make(Policy, {
            **{k: v for k, v in data.items() if k != "version"},
            "trained_on": tuple(_list(data.get("trained_on"), "trained_on")),
            "pilot": _make(Pilot, data.get("pilot"), "pilot"),
            "edges": tuple(float(e) for e in _list(data.get("edges"), "edges")),
            "frontiers": frontiers,
        }, "the policy")  # fmt: skip
    except (TypeError, ValueError) as e:  # their messages could quote the file: not shown
        what = str(e) if isinstance(e, _Damaged) else "a value of the wrong type"
        raise ConfigError(f"{path} is a damaged policy file ({what}); write it again") from None
    if len(policy.frontiers) != len(policy.edges) + 1 or not all(policy.frontiers):
        raise ConfigError(f"{path}: every bin needs a choice; write the policy again")
    return policy


MAX_POLICY_BYTES = 16 << 20


def _read(path: Path) -> bytes:
    """A regular file's bytes, at most MAX_POLICY_BYTES: a FIFO or a device (which could
    block or never end) is refused without reading it."""
    try:  # O_NONBLOCK: opening a FIFO does not wait for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise ConfigError(f"cannot read policy file {path} ({e.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfigError(
            f"{path} is not a regular file; a policy is the JSON file that "
            "`testtime lab allocate --out FILE` writes"
        )
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_POLICY_BYTES + 1)
    if len(data) > MAX_POLICY_BYTES:
        raise ConfigError(f"{path} is larger than a policy may be ({MAX_POLICY_BYTES} bytes)")
    return data


class _Damaged(ValueError):
    """A policy file's shape is wrong, said in the policy's own field names only."""


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise _Damaged(f"{what} must be a list")
    return value


def _make(cls: Any, raw: Any, what: str) -> Any:
    """cls(**raw), refusing missing or unknown fields without naming the unknown ones."""
    if not isinstance(raw, dict):
        raise _Damaged(f"{what} must be an object")
    names = {f.name for f in fields(cls)}
    required = {
        f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
    }
    missing = sorted(required - set(raw))
    if missing:
        raise _Damaged(f"{what} lacks {', '.join(missing)}")
    if set(raw) - names:
        raise _Damaged(f"{what} has {len(set(raw) - names)} field(s) a policy does not have")
    return cls(**raw)


def save_policy(policy: Policy, path: Path) -> None:
    """Write the policy atomically (a temporary file, then renamed into place)."""
    write_atomic(path, (json.dumps(policy.to_dict(), indent=1) + "\n").encode())
