"""How each strategy meets the lab: which stored-pool rule replays it, which parameter a
budget sets. Each strategy declares these where it is registered
(`@strategy(name, Params, Traits(replay=..., budget_param=...))`); the tables here derive
from the registry, so a new strategy touches no list.

Replaying is exact for strategies that draw their samples in one request (`ctx.sample(n)`),
whose seeded stream the lab's pool reproduces sample for sample: the strategy at budget k
sees the pool's first k samples, and a random k-subset of the pool is as good a draw as any
other. A rule that reads more than each sample on its own is sound only where that holds
for any subset: a verifier's score must not depend on the other candidates (`relative`), and
a tournament's judge must give a pair the verdict its two texts alone decide (a greedy
judge), since one stored verdict per pair stands for that comparison in every subset.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import testtime.strategies  # noqa: F401  (registers the strategies the tables derive from)
from testtime.core.registry import Spec
from testtime.strategies.base import named, traits_of
from testtime.strategies.tournament import JUDGING, TournamentParams, order_dependent
from testtime.verifiers.base import traits_of as verifier_traits

# strategy -> the selection rule over a pool (see lab/analysis/pools.py)
REPLAY: dict[str, str] = {n: traits_of(n).replay for n in named(lambda t: bool(t.replay))}
# strategy -> the parameter a budget of k samples sets, for strategies run per budget
BUDGET_PARAM: dict[str, str] = {
    n: traits_of(n).budget_param for n in named(lambda t: bool(t.budget_param))
}
# strategies whose budget sets their size (a width, N thinking chains, a policy's budget),
# not a ceiling on the samples they draw
WIDTH_BUDGET = frozenset(named(lambda t: t.budget_is_size))
JUDGED = "tournament"  # the rule that replays stored pairwise verdicts


def replay_kind(strategy: Spec, verifier: Spec | None = None) -> str | None:
    """The pool rule that replays this strategy (with this verifier), or None when it must
    run per budget (`run_reason` says why)."""
    kind = REPLAY.get(strategy.name)
    return None if kind is None or unsound(strategy, verifier) else kind


def unsound(strategy: Spec, verifier: Spec | None = None) -> str:
    """Why a stored pool cannot stand in for this arm although a rule would replay the
    strategy ('' when it can): a verifier whose scores depend on the candidates scored
    together (`relative`) gives a sample one score in a pool and another in a k-subset; a
    judge whose verdict depends on more than the pair's texts gives a stored verdict that
    another subset's tournament would not have got."""
    kind = REPLAY.get(strategy.name)
    pooled = kind in (None, "single", "majority")  # rules that read no verifier score
    if verifier is not None and not pooled and _relative(verifier):
        return f"its verifier {verifier.name!r} scores each candidate against those scored with it"
    if kind == JUDGED and isinstance(strategy.params, TournamentParams):
        return order_dependent(strategy.params)
    return ""


def _relative(verifier: Spec) -> bool:
    return verifier_traits(verifier.name, verifier.params).relative


def run_reason(strategy: Spec, verifier: Spec | None = None) -> str:
    """Why an arm runs at each budget instead of being replayed from a pool ('' if it is
    replayed)."""
    if strategy.name not in REPLAY:
        return "no pool rule replays it (it adapts, or samples in more than one request)"
    return unsound(strategy, verifier)


def judge_key(strategy: Spec) -> str:
    """The name a replayed tournament's stored verdicts go under: its judge ('policy' for
    the run's model) and a digest of the parameters a verdict depends on (`JUDGING`), so
    tournaments that judge alike share them and those that do not never mix."""
    params = dataclasses.asdict(strategy.params)
    judging = {k: params[k] for k in JUDGING}
    digest = hashlib.sha256(json.dumps(judging, sort_keys=True).encode()).hexdigest()[:10]
    return f"{params['judge'] or 'policy'}-{digest}"
