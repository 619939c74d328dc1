"""Diffusion experiments in the lab: strategies x NFE budgets on the embedded digit model,
every result stored in the same SQLite store as LLM runs (one transaction per unit, so a
run resumes after a crash without losing or repeating a unit).

A problem is one (digit, repeat): "draw a 7" with its own noise stream; a unit is one
strategy arm at one NFE budget on one problem, run with its width filled to the budget
(`diffusion.run.fill`) under a hard `Budget(nfe=...)`. Correctness is the independent
judge's label, the reward the classifier's probability (see `diffusion.digits`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from testtime.core.budget import Budget
from testtime.core.errors import ConfigError
from testtime.core.registry import Spec
from testtime.core.types import Problem
from testtime.lab.data.rows import ProblemRow, ResultRow, Unit
from testtime.lab.data.spec import DIFFUSION
from testtime.lab.data.store import Store

if TYPE_CHECKING:  # torch loads only to run a spec, so reports of stored runs need none
    from testtime.diffusion.models import Setup

DEFAULT: dict[str, Any] = {  # the README's science check
    "kind": DIFFUSION, "name": "digits-search", "guidance": 0.0, "repeats": 20, "steps": 20,
    "budgets": [20, 40, 80, 160, 320],
    "strategies": [
        "best_of_n",
        {"name": "best_of_n", "label": "best_of_n[ddpm]", "params": {"sampler": "ddpm"}},
        "zero_order",
        {"name": "path_search", "params": {"branches": 2}, "budgets": [80, 160, 320]},
        "fk_steering",
    ],
}  # fmt: skip
KEYS = ("kind", "name", "guidance", "digits", "repeats", "seed", "steps", "budgets", "strategies")
TASK = "digits"


@dataclass(frozen=True, slots=True)
class Arm:
    label: str
    strategy: Spec
    budgets: tuple[int, ...]  # NFE per problem


@dataclass(frozen=True, slots=True)
class DiffusionSpec:
    name: str
    guidance: float
    digits: tuple[int, ...]
    repeats: int
    seed: int
    arms: tuple[Arm, ...]

    @property
    def model(self) -> str:
        return f"digits(guidance={self.guidance:g})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": DIFFUSION, "name": self.name, "guidance": self.guidance,
            "digits": list(self.digits), "repeats": self.repeats, "seed": self.seed,
            "arms": [{"label": a.label, "strategy": a.strategy.to_dict(),
                      "budgets": list(a.budgets)} for a in self.arms],
        }  # fmt: skip

    @property
    def run_id(self) -> str:
        digest = hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()
        return f"{self.name}-{digest[:10]}"

    def problems(self) -> list[Problem]:
        """Each digit x repeat: its own id, so its own noise."""
        from testtime.diffusion.digits import problem

        return [dataclasses.replace(problem(d), id=f"digit-{d}/{r}")
                for d in self.digits for r in range(self.repeats)]  # fmt: skip


def parse_diffusion_spec(data: Any) -> DiffusionSpec:
    """A validated spec; every budget of every arm checked against its smallest unit."""
    if not isinstance(data, Mapping) or data.get("kind") != DIFFUSION:
        raise ConfigError(f"a diffusion run spec is a mapping with kind: {DIFFUSION}")
    unknown = sorted(str(k) for k in data if k not in KEYS)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in the diffusion spec; allowed: {KEYS}")
    digits = tuple(data.get("digits", range(10)))
    if not digits or any(isinstance(d, bool) or d not in range(10) for d in digits):
        raise ConfigError(f"'digits' must be digits 0-9, got {list(digits)}")
    repeats, seed = data.get("repeats", 10), data.get("seed", 0)
    if not isinstance(repeats, int) or repeats < 1 or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"'repeats' must be >= 1 and 'seed' >= 0, got {repeats}, {seed}")
    guidance = float(data.get("guidance", 0.0))
    evals = 1 if guidance in (0.0, 1.0) else 2
    budgets = _budgets(data.get("budgets", [20, 40, 80, 160, 320]), "budgets")
    steps = data.get("steps", 20)
    arms = tuple(_arm(a, budgets, steps, evals) for a in data.get("strategies") or [])
    if not arms:
        raise ConfigError("'strategies' must list at least one diffusion strategy")
    labels = [a.label for a in arms]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"strategy labels must be unique, got {labels}; set 'label:' apart")
    name = str(data.get("name", "diffusion"))
    return DiffusionSpec(name, guidance, digits, repeats, seed, arms)


def _arm(raw: Any, budgets: tuple[int, ...], steps: Any, evals: int) -> Arm:
    from testtime.diffusion.run import strategy_spec, unit_nfe

    raw = {"name": raw} if isinstance(raw, str) else raw
    if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
        raise ConfigError(f"a strategy is a name or a mapping with 'name'; got {raw!r}")
    spec = strategy_spec(raw["name"], {"steps": steps, **(raw.get("params") or {})})
    own = _budgets(raw["budgets"], "budgets") if "budgets" in raw else budgets
    least = unit_nfe(spec, evals)
    if min(own) < least:
        raise ConfigError(
            f"{raw['name']} needs at least {least} nfe per problem with these settings; "
            f"its budgets {list(own)} go below. Give it its own 'budgets:' or fewer steps"
        )
    return Arm(str(raw.get("label", raw["name"])), spec, own)


def _budgets(value: Any, what: str) -> tuple[int, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in items):
        raise ConfigError(f"'{what}' must be positive whole numbers of nfe, got {value!r}")
    return tuple(sorted(set(items)))


def run(
    store: Store, spec: DiffusionSpec, source: str, on_unit: Callable[[Unit], None] | None = None
) -> str:
    """Do every unit not stored yet (resuming), storing each as it finishes."""
    import torch

    from testtime.diffusion.models import open_digits

    run_id = spec.run_id
    problems = spec.problems()
    if store.create_run(run_id, spec.name, source, spec.to_dict(), {"kind": DIFFUSION}):
        rows = [ProblemRow(TASK, p.id, i, json.dumps(p.prompt), p.answer)
                for i, p in enumerate(problems)]  # fmt: skip
        store.put_problems(run_id, rows)
    _, stored = store.done(run_id)
    setups = {d: open_digits(d, spec.guidance) for d in spec.digits}
    started, threads = time.perf_counter(), torch.get_num_threads()
    torch.set_num_threads(1)  # the digit MLP is tiny: more threads only spin
    try:
        for arm in spec.arms:
            for budget in arm.budgets:
                for p in problems:
                    unit = Unit(spec.model, TASK, spec.seed, p.id, arm=arm.label, budget=budget)
                    if (unit.model, TASK, arm.label, budget, spec.seed, p.id) in stored:
                        continue
                    setup = setups[int(p.metadata["digit"])]
                    store.put(run_id, unit, [], _result(setup, p, arm, budget, spec.seed))
                    if on_unit is not None:
                        on_unit(unit)
    except BaseException as e:
        status = "cancelled" if isinstance(e, KeyboardInterrupt) else "error"
        store.set_status(run_id, status, time.perf_counter() - started, repr(e))
        raise
    finally:
        torch.set_num_threads(threads)
    store.set_status(run_id, "success", time.perf_counter() - started)
    return run_id


def _result(setup: Setup, p: Problem, arm: Arm, budget: int, seed: int) -> ResultRow:
    from testtime.diffusion.run import fill, solve

    strategy = fill(arm.strategy, budget, setup.denoiser.evals_per_call)
    out = solve(p, strategy, setup.denoiser, setup.reward, budget=Budget(nfe=budget),
                seed=seed, judge=setup.judge).result  # fmt: skip
    return ResultRow(
        answer=out.answer, correct=out.correct, chosen=out.chosen, exhausted=out.budget_exhausted,
        cost=out.cost.to_dict(), trace=dict(out.trace or {}),
        candidates=[{"answer": c.answer, "correct": c.answer == p.answer, "scores": c.scores,
                     "parent": c.parent} for c in out.candidates],
    )  # fmt: skip


def units(spec: DiffusionSpec) -> int:
    return len(spec.problems()) * sum(len(a.budgets) for a in spec.arms)
