"""Keeping a compute-optimal policy honest in the lab: the model and task it was made for,
and only problems it was not trained on (checked before a run records anything)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from testtime.core.errors import ConfigError
from testtime.core.types import Problem
from testtime.lab.data.spec import RunSpec
from testtime.strategies.compute_optimal import ComputeOptimalParams
from testtime.strategies.policy import load_policy
from testtime.tasks.base import Task


def check_policies(spec: RunSpec, tasks: Mapping[str, tuple[Task, list[Problem]]],
                   fingerprints: Mapping[str, str]) -> None:  # fmt: skip
    """Refuse, before anything runs, a compute_optimal arm whose policy was made for another
    model or task, or trained on any problem this run would evaluate it on."""
    for arm in spec.arms:
        if not isinstance(arm.strategy.params, ComputeOptimalParams):
            continue
        path = arm.strategy.params.policy
        policy = load_policy(path)
        for model in spec.models:
            if model != policy.model or fingerprints.get(model, policy.fingerprint) != (
                policy.fingerprint
            ):
                raise ConfigError(
                    f"{path} was made for model {policy.model!r} (its file hash recorded), "
                    f"not {model!r}; allocate a policy from a run of this model"
                )
        for t in spec.tasks:
            if not _same_task(t.to_dict(), policy.task):
                raise ConfigError(
                    f"{path} was made for task {policy.task['name']!r} {policy.task['params']}, "
                    f"not {t.name!r}; allocate one from a run of this task"
                )
        overlap = sorted({p.id for _, ps in tasks.values() for p in ps} & set(policy.trained_on))
        if overlap:
            raise ConfigError(
                f"{path} was trained on {len(overlap)} of this run's problems (e.g. "
                f"{', '.join(overlap[:3])}); evaluate it on held-out problems, e.g. a task "
                "with another seed"
            )


def _same_task(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Same task and settings; the split (size, seed) may differ."""

    def core(t: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in t["params"].items() if k not in ("size", "seed")}

    return bool(a["name"] == b["name"] and core(a) == core(b))
