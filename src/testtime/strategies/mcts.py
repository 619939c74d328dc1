"""Monte Carlo tree search over solution steps (the MCTS baseline of Wu et al. 2024).

Each iteration selects a path from the root by UCT, expands its end by sampled next steps,
values every new node (its PRM score, or with `rollout` the verifier's score of one
completion sampled from it), and backs the values up the path. The tree is plain data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from testtime.core.errors import ConfigError
from testtime.core.types import Candidate, Result
from testtime.strategies.base import Context, Traits, strategy
from testtime.strategies.stepwise import ROOT, StepParams, extend, finished

SMALL = {"iterations": 4, "expand": 2}  # the invariant suite's examples
ROLLOUT = {**SMALL, "rollout": True}


@dataclass(frozen=True)
class MctsParams(StepParams):
    iterations: int = 8  # select-expand-evaluate-backup rounds
    expand: int = 4  # children sampled when a node is expanded
    exploration: float = 1.0  # c in UCT: Q + c * sqrt(ln N_parent / (1 + N_child))
    rollout: bool = False  # value a new node by finishing it once (else by its PRM score)

    def validate(self) -> None:
        super().validate()
        self.positive("iterations", "expand")
        if self.exploration < 0:
            raise ConfigError(f"parameter 'exploration' must be >= 0, got {self.exploration}")


@dataclass
class Node:
    """A tree node: a candidate, its children (node indices), visits and summed value."""

    candidate: Candidate
    parent: int | None
    children: list[int] = field(default_factory=list)
    visits: int = 0
    value: float = 0.0

    def q(self) -> float:
        return self.value / self.visits if self.visits else 0.0


@strategy(
    "mcts",
    MctsParams,
    Traits("iterations", budget_is_size=True, verifier="process", examples=(SMALL, ROLLOUT)),
)
async def mcts(ctx: Context, p: MctsParams) -> Result:
    """MCTS (UCT selection, PRM or rollout values, backpropagation of values to the root)."""
    ctx.need_process_verifier()
    tree = [Node(ROOT, None)]
    for _ in range(p.iterations):
        leaf = _select(tree, p.exploration)
        if finished(tree[leaf].candidate):
            _backup(tree, leaf, tree[leaf].q())  # a finished leaf: revisit its value
            continue
        children = await extend(ctx, tree[leaf].candidate, p.expand, p)  # fmt: skip
        if not children:
            break  # the budget refused
        for child in await ctx.score(children):
            tree.append(Node(child, leaf))
            tree[leaf].children.append(len(tree) - 1)
            value = await _rollout(ctx, child, p) if p.rollout else ctx.verifier_score(child)
            if value is None:
                break
            _backup(tree, len(tree) - 1, value)
    done = [n for n in tree[1:] if finished(n.candidate)]
    pool = done or tree[1:]
    best = max(pool, key=lambda n: (n.q(), n.visits), default=None)
    return ctx.finish(best.candidate if best else None, trace={"tree": _plain(tree)})


def _select(tree: list[Node], c: float) -> int:
    """Walk down by UCT while the node has children; return where to expand."""
    i = 0
    while tree[i].children:
        parent = tree[i]
        i = max(parent.children, key=lambda j: tree[j].q()
                + c * math.sqrt(math.log(parent.visits + 1) / (1 + tree[j].visits)))  # fmt: skip
    return i


def _backup(tree: list[Node], i: int | None, value: float) -> None:
    while i is not None:
        tree[i].visits += 1
        tree[i].value += value
        i = tree[i].parent


async def _rollout(ctx: Context, node: Candidate, p: MctsParams) -> float | None:
    """The verifier's score of one completion sampled from `node` to the end."""
    if finished(node):
        return ctx.verifier_score(node)
    got = await ctx.sample(1, temperature=p.temperature, top_p=p.top_p,
                           prefix=node.text + p.stop, parent=node.id)  # fmt: skip
    if not got:
        return None
    return ctx.verifier_score((await ctx.score(got))[0])


def _plain(tree: list[Node]) -> list[dict[str, Any]]:
    keys = ("parent", "children", "visits", "value")
    return [{"candidate": n.candidate.id, **{k: getattr(n, k) for k in keys}} for n in tree]
