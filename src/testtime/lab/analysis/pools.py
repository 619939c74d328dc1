"""Stored pools, read back as arrays, and the selection rules that replay them.

A pool is the K samples of one problem drawn at one (temperature, top_p) with one seed.
Replaying strategy S at budget k means: the expected accuracy of S on a uniformly random
k-subset of the pool (in random order). Majority vote, best-of-k and pass@k have exact
closed forms (`analysis.estimators`); weighted vote and best-of-majority are estimated by Monte
Carlo over random subsets, selecting with core's own voting code so the rule is the one
the strategies use: answers group by their task's canonical form (`Task.canonical`, the
task's notion of the same answer), and a verifier's score weighs a vote as the verifier declares.
A tournament is replayed from its judge's stored verdicts on every pair of the pool, through
the bracket logic the strategy itself runs (`strategies/tournament.py: settle`), and charged
the judge calls that subset's tournament makes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from testtime.core.answers import canonical
from testtime.core.cost import flops
from testtime.core.kinetics import KVShape, kv_bytes
from testtime.core.types import Candidate
from testtime.core.voting import frequent_groups, group, leader, vote_weight
from testtime.lab.analysis import estimators
from testtime.lab.data.arms import JUDGED, judge_key
from testtime.strategies.base import STRATEGIES
from testtime.strategies.tournament import Format, Outcome, decide, distinct, settle
from testtime.verifiers.base import VERIFIERS, traits_of


@dataclass
class Verdicts:
    """One judge's stored comparisons of a pool's samples: per ordered pair (x shown as
    Response A, y as B) the sample its reply voted for (None: no vote) and the call's FLOPs."""

    votes: dict[tuple[int, int], int | None] = field(default_factory=dict)
    flops: dict[tuple[int, int], float] = field(default_factory=dict)
    _games: dict[tuple[int, int], tuple[int | None, float]] | None = None

    def add(self, row: tuple[Any, ...]) -> None:
        """One stored verdict row (see Store.verdicts for the column order)."""
        i, j, swapped, vote, refused, flops = row[6:12]
        if refused == "same":
            return  # identical texts: one entrant, never compared
        shown = (int(i), int(j)) if not swapped else (int(j), int(i))
        self.votes[shown] = None if vote is None else int(vote)
        self.flops[shown] = float(flops)

    def game(self, x: int, y: int) -> tuple[int | None, float]:
        """The comparison of samples x and y (both orders, settled as the tournament settles
        it: `decide`): the sample that won it (None: a tie), and what its two calls cost."""
        if self._games is None:
            self._games = {}
            for a, b in self.votes:
                won = decide((self.votes[(a, b)], self.votes[(b, a)])).winner
                self._games[(a, b)] = (won, self.flops[(a, b)] + self.flops[(b, a)])
        return self._games[(x, y)]


@dataclass
class Pool:
    """One problem's stored samples, in sample order."""

    answers: list[str | None] = field(default_factory=list)
    correct: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    flops: list[float] = field(default_factory=list)
    verifier_flops: list[float] = field(default_factory=list)  # all pool verifiers
    verifier_costs: list[dict[str, float]] = field(default_factory=list)  # key -> FLOPs
    scores: list[dict[str, float]] = field(default_factory=list)
    prompt_tokens: int = 0
    canon: Callable[[str], str] = canonical  # the task's `canonical`: what one vote is
    texts: list[str] = field(default_factory=list)  # loaded for judged pools alone
    judged: dict[str, Verdicts] = field(default_factory=dict)  # judge key -> its verdicts
    _canon: list[str | None] | None = None
    _played: dict[tuple[Any, ...], tuple[float, float]] = field(default_factory=dict)
    _means: dict[Any, float] = field(default_factory=dict)  # what -> its mean per sample

    def add(self, row: tuple[Any, ...]) -> None:
        """Append one stored sample row (see Store.samples for the column order)."""
        self.extend([row])

    def extend(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Append stored sample rows, in order; their JSON columns are parsed in one call
        each (a large run has 10^5 rows: one `json.loads` per cell costs seconds)."""
        if not rows:
            return
        answers, correct, tokens, cost, scores, v_flops, _, v_costs = zip(
            *(r[6:14] for r in rows), strict=True
        )  # column by column: a large run has 10^5 rows
        self.answers += answers
        self.correct += [float(c or 0) for c in correct]
        self.tokens += map(int, tokens)
        self.flops += map(float, cost)
        self.verifier_flops += map(float, v_flops)
        self.scores += _objects(list(scores))
        self.verifier_costs += _objects(list(v_costs))
        self.prompt_tokens = int(rows[-1][12])
        self._canon = None
        self._means.clear()

    def flops_at(self, k: int, n_params: int, verifier: str | None = None) -> float:
        """Replayed FLOPs of k samples: the prompt prefilled once, k mean samples (and their
        passes of `verifier`, a pool verifier's key), as one strategy drawing them alone
        would spend. A store written before per-verifier costs (schema < 3) has only the
        pool's verifiers together, and that sum is charged."""
        return flops(n_params, self.prompt_tokens) + k * self.flops_per(verifier)

    def flops_per(self, verifier: str | None = None) -> float:
        """The FLOPs of one mean sample (and its pass of `verifier`), computed once a pool:
        replays ask for it at every k."""
        if ("flops", verifier) not in self._means:
            per = float(np.mean(self.flops))
            if verifier is not None:
                per += float(np.mean([
                    c.get(verifier, v)
                    for c, v in zip(self.verifier_costs, self.verifier_flops, strict=True)
                ]))  # fmt: skip
            self._means[("flops", verifier)] = per
        return self._means[("flops", verifier)]

    def mean_tokens(self) -> float:
        """Generated tokens of one mean sample (computed once a pool)."""
        if "tokens" not in self._means:
            self._means["tokens"] = float(np.mean(self.tokens))
        return self._means["tokens"]

    def mean_kv(self, shape: KVShape) -> float:
        """KV-cache bytes one mean sample reads while decoding (`core.kinetics.kv_bytes`),
        computed once a pool and shape."""
        if shape not in self._means:
            kv = [kv_bytes(shape, self.prompt_tokens, t) for t in self.tokens]
            self._means[shape] = float(np.mean(kv))
        return self._means[shape]

    @property
    def size(self) -> int:
        return len(self.answers)

    def canonical(self) -> list[str | None]:
        """Each answer in its task's canonical form, the one strategies vote by (`Task.same`:
        a number's spellings, a program's syntax tree), so replays compare answers with plain
        `==` and group as a strategy would."""
        if self._canon is None:
            self._canon = [None if a is None else self.canon(a) for a in self.answers]
        return self._canon

    def score(self, verifier: str) -> list[float]:
        return [s[verifier] for s in self.scores]


def _objects(cells: list[str]) -> list[Any]:
    """JSON cells, parsed as one array (what one `json.loads` per cell gives)."""
    try:
        parsed = json.loads("[" + ",".join(cells) + "]")
    except json.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, list) or len(parsed) != len(cells):
        return [json.loads(c) for c in cells]  # some cell is no one JSON value: its error
    return parsed


def _same(a: str, b: str) -> bool:
    return a == b


def majority(pool: Pool, ks: Sequence[int]) -> list[float]:
    """Exact majority@k: plurality vote over a random k-subset (ties split evenly)."""
    canon = pool.canonical()
    counts: dict[str, list[float]] = {}
    for answer, ok in zip(canon, pool.correct, strict=True):
        if answer is not None:
            counts.setdefault(answer, []).append(ok)
    groups = [(len(v), sum(v) / len(v)) for v in counts.values()]
    unanswered = sum(a is None for a in canon)
    if pool.size > estimators.MAX_EXACT_POOL:
        return [_monte_carlo_majority(pool, k) for k in ks]
    return estimators.majority_curve(groups, unanswered, ks)


def _monte_carlo_majority(pool: Pool, k: int) -> float:
    canon = pool.canonical()

    def select(idx: np.ndarray) -> float:
        top = leader(group([Candidate("", canon[i], id=int(i)) for i in idx], None, _same))
        return pool.correct[int(idx[top.members[0]])] if top else 0.0

    return estimators.monte_carlo_at_k(select, pool.size, k)


def best(pool: Pool, ks: Sequence[int], verifier: str) -> list[float]:
    """Exact best-of-k: the top-scored sample of a random k-subset (ties at random)."""
    return estimators.best_of_k_curve(pool.score(verifier), pool.correct, ks)


def coverage(pool: Pool, ks: Sequence[int]) -> list[float]:
    """pass@k, Chen et al. 2021's unbiased estimator."""
    return estimators.pass_at_k_curve(pool.size, round(sum(pool.correct)), ks)


def weighted(
    pool: Pool, k: int, verifier: str, draws: int, seed: int, weighting: str = "score"
) -> float:
    """Weighted majority@k by Monte Carlo: each sample votes with its verifier score as a
    weight (`weighting`, the verifier's declared transform); the winning answer's heaviest
    sample is submitted (as `weighted_majority` does)."""
    canon = pool.canonical()
    weights = [vote_weight(s, weighting) for s in pool.score(verifier)]

    def select(idx: np.ndarray) -> float:
        cands = [Candidate("", canon[i], id=int(i)) for i in idx]
        top = leader(group(cands, [weights[i] for i in idx], _same))
        if top is None:
            return 0.0
        chosen = max((int(idx[m]) for m in top.members), key=weights.__getitem__)
        return pool.correct[chosen]

    return estimators.monte_carlo_at_k(select, pool.size, k, draws, seed)


def best_of_majority(
    pool: Pool, k: int, verifier: str, alpha: float, draws: int, seed: int
) -> float:
    """Best-of-majority@k (Di et al. 2025) by Monte Carlo: keep answers with frequency
    >= alpha in the subset, submit the top-scored kept sample."""
    canon, scores = pool.canonical(), pool.score(verifier)

    def select(idx: np.ndarray) -> float:
        cands = [Candidate("", canon[i], id=int(i)) for i in idx]
        kept = frequent_groups(cands, alpha, _same)
        if not kept:
            top = leader(group(cands, None, _same))
            kept = [top] if top else []
        members = [int(idx[m]) for m in sorted(m for g in kept for m in g.members)]
        if not members:
            return 0.0
        return pool.correct[max(members, key=scores.__getitem__)]  # ties: first in order

    return estimators.monte_carlo_at_k(select, pool.size, k, draws, seed)


def tournament(
    pool: Pool, k: int, judge: str, fmt: Format, draws: int, seed: int
) -> tuple[float, float]:
    """A tournament of k samples, replayed: its accuracy and its judge's FLOPs, each the
    mean over random k-subsets (in random order: the earlier sample wins a tie) of what the
    strategy would do on them: `distinct` entrants, the bracket or round robin of `settle`,
    each game decided by the stored verdicts of its two orders and charged their calls."""
    memo = (judge, fmt, k, draws, seed)
    if memo not in pool._played:
        verdicts, spent, subsets = pool.judged[judge], [0.0], [0]

        def select(idx: np.ndarray) -> float:
            order = [int(i) for i in idx]
            subsets[0] += 1

            def play(a: int, b: int) -> Outcome:
                won, cost = verdicts.game(order[a], order[b])
                spent[0] += cost
                return Outcome(True, None if won is None else a if won == order[a] else b)

            winner = settle(fmt, distinct([pool.texts[i] for i in order]), play)
            return 0.0 if winner is None else pool.correct[order[winner]]

        accuracy = estimators.monte_carlo_at_k(select, pool.size, k, draws, seed)
        pool._played[memo] = (accuracy, spent[0] / subsets[0])
    return pool._played[memo]


def _judging(arm: dict[str, Any]) -> tuple[str, Format]:
    """A tournament arm's judge key and format, from its stored record."""
    spec = STRATEGIES.spec(arm["strategy"]["name"], arm["strategy"]["params"])
    fmt: Format = spec.params.format  # type: ignore[attr-defined]  # a tournament's
    return judge_key(spec), fmt


Rule = Callable[[Pool, Sequence[int]], list[float]]


def weighting(verifier: dict[str, Any] | None) -> str:
    """How a stored verifier's scores weigh votes (its registered traits; 'score' if none)."""
    if not verifier:
        return "score"
    spec = VERIFIERS.spec(verifier["name"], verifier.get("params") or {})
    return traits_of(spec.name, spec.params).weight


def rule(kind: str, arm: dict[str, Any], draws: int, seed: int) -> tuple[Rule, str]:
    """The replay rule for an arm's stored record, and its estimator ('exact'/'monte-carlo')."""
    verifier = arm.get("verifier_key") or ""
    if kind == "single":
        return (lambda pool, ks: [float(np.mean(pool.correct)) for _ in ks]), "exact"
    if kind == "majority":
        return majority, "exact"
    if kind == "best":
        return (lambda pool, ks: best(pool, ks, verifier)), "exact"
    if kind == "weighted":
        how = weighting(arm.get("verifier"))
        return (
            lambda pool, ks: [weighted(pool, k, verifier, draws, seed, how) for k in ks]
        ), "monte-carlo"
    if kind == "best_of_majority":
        alpha = float(arm["strategy"]["params"]["alpha"])
        return (
            lambda pool, ks: [best_of_majority(pool, k, verifier, alpha, draws, seed) for k in ks]
        ), "monte-carlo"
    if kind == JUDGED:
        judge, fmt = _judging(arm)
        return (
            lambda pool, ks: [tournament(pool, k, judge, fmt, draws, seed)[0] for k in ks]
        ), "monte-carlo"
    raise ValueError(f"no replay rule {kind!r}")


def selection_flops(
    kind: str, arm: dict[str, Any], draws: int, seed: int
) -> Callable[[Pool, int], float]:
    """What a rule's selection spends at k beyond the pool's samples and their verifier
    passes: a tournament's judge calls (on the subsets its accuracy is read from); 0 for
    the rest."""
    if kind != JUDGED:
        return lambda pool, k: 0.0
    judge, fmt = _judging(arm)
    return lambda pool, k: tournament(pool, k, judge, fmt, draws, seed)[1]


def replays(kind: str, arm: dict[str, Any]) -> Callable[[Pool], bool]:
    """Whether a stored pool holds what the rule reads: for a tournament, its judge's
    verdicts (a run stopped before a pool was judged leaves it out); any pool for the rest."""
    if kind != JUDGED:
        return lambda pool: True
    judge, _ = _judging(arm)
    return lambda pool: judge in pool.judged
