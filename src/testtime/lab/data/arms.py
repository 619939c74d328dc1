"""How each strategy meets the lab: which stored-pool rule replays it, which parameter a
budget sets. Each strategy declares these where it is registered
(`@strategy(name, Params, Traits(replay=..., budget_param=...))`); the tables here derive
from the registry, so a new strategy touches no list.

Replaying is exact for strategies that draw their samples in one request (`ctx.sample(n)`),
whose seeded stream the lab's pool reproduces sample for sample: the strategy at budget k
sees the pool's first k samples, and a random k-subset of the pool is as good a draw as any
other.
"""

from __future__ import annotations

import testtime.strategies  # noqa: F401  (registers the strategies the tables derive from)
from testtime.core.registry import Spec
from testtime.strategies.base import named, traits_of
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


def replay_kind(strategy: Spec, verifier: Spec | None = None) -> str | None:
    """The pool rule that replays this strategy (with this verifier), or None when it must
    run per budget: a verifier whose scores depend on the candidates scored together
    (`relative`) gives a sample one score in a pool and another in a k-subset."""
    kind = REPLAY.get(strategy.name)
    pooled = kind in (None, "single", "majority")  # rules that read no verifier score
    if (
        verifier is not None
        and not pooled
        and verifier_traits(verifier.name, verifier.params).relative
    ):
        return None
    return kind
