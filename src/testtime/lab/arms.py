"""How each strategy meets the lab: which stored-pool rule replays it, which parameter a
budget sets. A new replayable strategy is one line in REPLAY.

Replaying is exact for these strategies because they draw their samples in one request
(`ctx.sample(n)`), whose seeded stream the lab's pool reproduces sample for sample: the
strategy at budget k sees the pool's first k samples, and a random k-subset of the pool is
as good a draw as any other.
"""

from __future__ import annotations

from testtime.core.registry import Spec

# strategy -> the selection rule over a pool (see lab/replay.py)
REPLAY: dict[str, str] = {
    "single": "single",  # one sample: pass@1 of a pool of 1 (greedy) or of the pool
    "self_consistency": "majority",
    "best_of_n": "best",
    "weighted_majority": "weighted",
    "best_of_majority": "best_of_majority",
}
# strategy -> the parameter a budget of k samples sets, for strategies run per budget
BUDGET_PARAM: dict[str, str] = {
    "self_consistency": "n",
    "best_of_n": "n",
    "weighted_majority": "n",
    "best_of_majority": "n",
    "first_finish": "n",
    "adaptive_consistency": "max_samples",
    # searches: the budget sets their width; they draw many samples per unit of width
    # (one per step), so their cost is compared on the tokens and FLOPs axes
    "beam_search": "n",
    "dvts": "n",
    "rebase": "n",
    "particle_filtering": "particles",
    "mcts": "iterations",
    # sequential: N chains of thinking (several calls each), N attempts in revision chains
    "budget_forcing": "n",
    "revise": "n",
    "refine": "n",
    # a compute-optimal policy: the budget on its axis (samples, tokens or FLOPs per problem)
    "compute_optimal": "budget",
}
# strategies whose budget sets their size (a width, N thinking chains, a policy's budget),
# not a ceiling on the samples they draw
WIDTH_BUDGET = frozenset({
    "beam_search", "dvts", "rebase", "particle_filtering", "mcts", "budget_forcing",
    "compute_optimal",
})  # fmt: skip


def replay_kind(strategy: Spec) -> str | None:
    """The pool rule that replays this strategy, or None when it must run per budget."""
    return REPLAY.get(strategy.name)
