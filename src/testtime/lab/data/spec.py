"""An experiment, described: models x tasks x strategy arms x budgets x seeds.

A run spec comes from a YAML file or CLI flags, is validated in full before anything is
generated (every problem in one error, each naming what exists), and resolves every
component through its registry, so the stored spec records each parameter, defaults
included. The run id is a hash of the resolved spec: the same command resumes the same run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, TypeVar

from testtime.core.errors import ConfigError
from testtime.core.registry import Spec
from testtime.lab.data.arms import BUDGET_PARAM, JUDGED, judge_key, replay_kind
from testtime.strategies.base import STRATEGIES
from testtime.tasks.base import TASKS
from testtime.verifiers.base import VERIFIERS

KEYS = (
    "name", "model", "models", "task", "tasks", "problems", "seeds", "budgets", "pool",
    "max_tokens", "strategies", "concurrency",
)  # fmt: skip
ARM_KEYS = ("name", "label", "params", "verifier", "budgets", "sweep")
SPEC_VERSION = 1
T = TypeVar("T")
RunKind = Literal["llm", "diffusion"]
DIFFUSION: RunKind = "diffusion"  # a diffusion run's spec says `kind: diffusion` (lab.execution)


@dataclass(frozen=True, slots=True)
class ArmSpec:
    """One strategy with its parameters and verifier, run (or replayed) at each budget."""

    label: str
    strategy: Spec
    verifier: Spec | None
    budgets: tuple[int, ...]

    @property
    def replay(self) -> str | None:
        """How a stored pool replays this arm ('majority', 'best', ...); None: run per budget."""
        return replay_kind(self.strategy, self.verifier)

    @property
    def sampling(self) -> tuple[float, float]:
        """(temperature, top_p): arms that sample alike share one pool."""
        p = self.strategy.params
        return float(getattr(p, "temperature", 1.0)), float(getattr(p, "top_p", 1.0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "strategy": self.strategy.to_dict(),
            "verifier": self.verifier.to_dict() if self.verifier else None,
            "budgets": list(self.budgets),
        }


@dataclass(frozen=True, slots=True)
class RunSpec:
    """A validated experiment grid."""

    name: str
    models: tuple[str, ...]
    tasks: tuple[Spec, ...]
    problems: int | None  # the first N problems of each task (None: all)
    seeds: tuple[int, ...]
    max_tokens: int
    pool: int  # samples per problem in each stored pool (>= every replayed budget)
    arms: tuple[ArmSpec, ...]
    concurrency: int = 64  # units in flight at once (the engine batches across them)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": SPEC_VERSION,
            "name": self.name,
            "models": list(self.models),
            "tasks": [t.to_dict() for t in self.tasks],
            "problems": self.problems,
            "seeds": list(self.seeds),
            "max_tokens": self.max_tokens,
            "pool": self.pool,
            "arms": [a.to_dict() for a in self.arms],
            "concurrency": self.concurrency,
        }

    @property
    def run_id(self) -> str:
        """`name-hash`: the same resolved spec gives the same id, so re-running resumes."""
        grid = {k: v for k, v in self.to_dict().items() if k != "concurrency"}
        digest = hashlib.sha256(json.dumps(grid, sort_keys=True).encode()).hexdigest()[:10]
        return f"{self.name}-{digest}"

    def pools(self) -> dict[tuple[float, float], int]:
        """Each distinct (temperature, top_p) of the replayed arms -> its pool size."""
        found: dict[tuple[float, float], int] = {}
        for arm in self.arms:
            if arm.replay is not None:
                size = 1 if arm.replay == "single" else self.pool
                found[arm.sampling] = max(found.get(arm.sampling, 0), size)
        return found

    def pool_verifiers(self, sampling: tuple[float, float]) -> tuple[Spec, ...]:
        """The verifiers that score every sample of the pool drawn with `sampling`."""
        seen: dict[str, Spec] = {}
        for arm in self.arms:
            if arm.replay is not None and arm.sampling == sampling and arm.verifier:
                seen.setdefault(spec_key(arm.verifier), arm.verifier)
        return tuple(seen.values())

    def pool_judges(self, sampling: tuple[float, float]) -> dict[str, Spec]:
        """The judges whose pairwise verdicts are stored for the pool drawn with `sampling`
        (judge key -> a replayed tournament's strategy): one per way of judging."""
        found: dict[str, Spec] = {}
        for arm in self.arms:
            if arm.replay == JUDGED and arm.sampling == sampling:
                found.setdefault(judge_key(arm.strategy), arm.strategy)
        return found


def spec_key(spec: Spec) -> str:
    """The name a component is stored under (a task's rows, a verifier's scores): its name,
    plus its parameters that differ from their defaults."""
    changed = spec.changed()
    if not changed:
        return spec.name
    return f"{spec.name}({','.join(f'{k}={v}' for k, v in sorted(changed.items()))})"


def parse_spec(data: Any) -> RunSpec:
    """A RunSpec from a parsed YAML mapping; all problems reported in one ConfigError."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"a run spec must be a mapping of keys ({', '.join(KEYS)})")
    errors: list[str] = []

    def get(fn: Callable[[], T], default: T) -> T:
        try:
            return fn()
        except ConfigError as e:
            errors.append(str(e))
            return default

    unknown = sorted(str(k) for k in data if k not in KEYS)
    if unknown:
        errors.append(f"unknown key(s) {unknown}; allowed: {', '.join(KEYS)}")
    name = get(lambda: _name(data.get("name", "run")), "run")
    models: tuple[str, ...] = get(
        lambda: _strings(_one_or_many(data, "model", "models", "smollm2-135m"), "model"), ()
    )
    problems = get(lambda: _optional_positive(data.get("problems"), "problems"), None)
    tasks: tuple[Spec, ...] = get(
        lambda: tuple(
            _task(t, problems) for t in _one_or_many(data, "task", "tasks", "arithmetic")
        ),
        (),
    )
    seeds: tuple[int, ...] = get(lambda: _ints(data.get("seeds", [0]), "seeds", minimum=0), (0,))
    budgets: tuple[int, ...] = get(
        lambda: _ints(data.get("budgets", [1, 2, 4, 8, 16]), "budgets", minimum=1), ()
    )
    max_tokens = get(lambda: _positive(data.get("max_tokens", 128), "max_tokens"), 128)
    concurrency = get(lambda: _positive(data.get("concurrency", 64), "concurrency"), 64)
    raw_arms = data.get("strategies")
    if not isinstance(raw_arms, list) or not raw_arms:
        errors.append("'strategies' must be a non-empty list of strategy names or mappings")
        raw_arms = []
    arms: list[ArmSpec] = []
    for raw in raw_arms:
        arms += get(partial(_swept, raw, budgets), [])
    labels = [a.label for a in arms]
    if len(set(labels)) != len(labels):
        dup = sorted({x for x in labels if labels.count(x) > 1})
        errors.append(f"strategy labels must be unique; repeated: {dup} (set 'label:' apart)")
    replayed = [b for a in arms if a.replay not in (None, "single") for b in a.budgets]
    pool = get(lambda: _optional_positive(data.get("pool"), "pool"), None) or max(
        replayed, default=1
    )
    if replayed and pool < max(replayed):
        errors.append(
            f"'pool' ({pool}) must be at least the largest replayed budget ({max(replayed)})"
        )
    if errors:
        raise ConfigError("invalid run spec: " + "; ".join(errors))
    return RunSpec(name, models, tasks, problems, seeds, max_tokens, pool, tuple(arms), concurrency)


def _one_or_many(data: Mapping[str, Any], one: str, many: str, default: Any) -> list[Any]:
    if one in data and many in data:
        raise ConfigError(f"give '{one}' or '{many}', not both")
    if many in data:
        value = data[many]
        if not isinstance(value, list) or not value:
            raise ConfigError(f"'{many}' must be a non-empty list")
        return value
    return [data.get(one, default)]


def _name(value: Any) -> str:
    text = str(value)
    if not text or not all(c.isalnum() or c in "-_." for c in text):
        raise ConfigError(f"'name' must be letters, digits, '-', '_' or '.'; got {text!r}")
    return text


def _strings(values: list[Any], what: str) -> tuple[str, ...]:
    if any(not isinstance(v, str) or not v for v in values):
        raise ConfigError(f"each {what} must be a non-empty string; got {values}")
    return tuple(values)


def _task(value: Any, problems: int | None) -> Spec:
    name, params = _named(value, "task")
    return TASKS.spec(name, sized(name, params, problems))


def sized(name: str, params: dict[str, Any], count: int | None) -> dict[str, Any]:
    """Task parameters that make at least `count` problems where the task can: a task that
    generates its problems (a `size` parameter, e.g. reasoning-gym) and was left at its
    default size gets `size=count` when count is larger. Problem i is the same whatever the
    size, so asking for more problems extends the set instead of silently capping it."""
    if count is None or "size" in params:
        return params
    default = TASKS.defaults(name).get("size")
    if isinstance(default, int) and count > default:
        return {**params, "size": count}
    return params


def _named(value: Any, what: str) -> tuple[str, dict[str, Any]]:
    """`name` or `{name: ..., params: {...}}`."""
    if isinstance(value, str):
        return value, {}
    if isinstance(value, Mapping) and isinstance(value.get("name"), str):
        extra = sorted(str(k) for k in value if k not in ("name", "params"))
        if extra:
            raise ConfigError(f"unknown {what} key(s) {extra}; allowed: name, params")
        params = value.get("params") or {}
        if not isinstance(params, Mapping):
            raise ConfigError(f"the {what} 'params' must be a mapping, got {params!r}")
        return value["name"], dict(params)
    raise ConfigError(f"a {what} is a name or a mapping with 'name' and 'params'; got {value!r}")


def _swept(value: Any, budgets: tuple[int, ...]) -> list[ArmSpec]:
    """One arm, or one per combination of a `sweep` (parameter -> list of values), labelled
    with the swept values, e.g. `budget_forcing(thinking_tokens=64)`."""
    sweep = value.get("sweep") if isinstance(value, Mapping) else None
    if sweep is None:
        return [_arm(value, budgets)]
    lists = isinstance(sweep, Mapping) and all(isinstance(v, list) and v for v in sweep.values())
    if not sweep or not lists:
        raise ConfigError(f"'sweep' maps parameters to non-empty lists of values; got {sweep!r}")
    params = value.get("params") or {}
    if not isinstance(params, Mapping):
        raise ConfigError(f"the strategy 'params' must be a mapping, got {params!r}")
    entry = {k: v for k, v in value.items() if k != "sweep"}
    base = value.get("label") or _arm(entry, budgets).label
    out = []
    for combo in itertools.product(*sweep.values()):
        chosen = dict(zip(sweep, combo, strict=True))
        tag = ", ".join(f"{k}={v}" for k, v in chosen.items())
        out.append(_arm({**entry, "params": {**params, **chosen}, "label": f"{base}({tag})"},
                        budgets))  # fmt: skip
    return out


def _arm(value: Any, budgets: tuple[int, ...]) -> ArmSpec:
    if isinstance(value, Mapping):
        extra = sorted(str(k) for k in value if k not in ARM_KEYS)
        if extra:
            raise ConfigError(f"unknown strategy key(s) {extra}; allowed: {', '.join(ARM_KEYS)}")
    name, params = _named(
        {k: v for k, v in value.items() if k in ("name", "params")}
        if isinstance(value, Mapping)
        else value,
        "strategy",
    )
    strategy = STRATEGIES.spec(name, params)
    verifier = None
    raw = value.get("verifier") if isinstance(value, Mapping) else None
    if raw is not None:
        vname, vparams = _named(raw, "verifier")
        verifier = VERIFIERS.spec(vname, vparams)
    own = value.get("budgets") if isinstance(value, Mapping) else None
    arm_budgets = _ints(own, f"{name} budgets", minimum=1) if own is not None else budgets
    if replay_kind(strategy) == "single":
        arm_budgets = (1,)  # one sample whatever the budget
    param = BUDGET_PARAM.get(name)
    if replay_kind(strategy, verifier) is None and param is not None:
        for b in arm_budgets:  # every budget must make a valid strategy, checked up front
            try:
                STRATEGIES.spec(name, {**params, param: b})
            except ConfigError as e:
                raise ConfigError(f"at budget {b}: {e}") from None
    label = value.get("label") if isinstance(value, Mapping) else None
    if label is None:
        label = name + (f"[{spec_key(verifier)}]" if verifier else "")
    return ArmSpec(str(label), strategy, verifier, arm_budgets)


def _ints(value: Any, what: str, minimum: int) -> tuple[int, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or any(isinstance(v, bool) or not isinstance(v, int) for v in items):
        raise ConfigError(f"'{what}' must be a whole number or a list of them; got {value!r}")
    if any(v < minimum for v in items):
        raise ConfigError(f"'{what}' must all be >= {minimum}; got {value!r}")
    return tuple(sorted(set(items)))


def _positive(value: Any, what: str) -> int:
    return _ints(value, what, minimum=1)[0] if not isinstance(value, list) else _bad(what, value)


def _optional_positive(value: Any, what: str) -> int | None:
    return None if value is None else _positive(value, what)


def _bad(what: str, value: Any) -> int:
    raise ConfigError(f"'{what}' must be one positive whole number; got {value!r}")


def run_kind(stored: Mapping[str, Any]) -> RunKind:
    """Which kind of run a stored spec records: a diffusion run's names its kind, an LLM
    run's (this module's `RunSpec`) names none."""
    return DIFFUSION if stored.get("kind") == DIFFUSION else "llm"


def spec_from_dict(stored: Mapping[str, Any]) -> RunSpec:
    """The RunSpec a stored run was made from (its resolved record), re-validated."""
    if run_kind(stored) == DIFFUSION:
        raise ConfigError(
            f"run {stored.get('name', '')!r} is a diffusion run: rebuild its report with "
            "`testtime lab report RUN_ID` or `testtime diffuse report RUN_ID`, and re-run it "
            "with `testtime diffuse lab SPEC`"
        )
    if stored.get("version") != SPEC_VERSION:
        raise ConfigError(
            f"the stored run spec has version {stored.get('version')!r}; this testtime reads "
            f"version {SPEC_VERSION}"
        )
    return parse_spec({
        "name": stored["name"],
        "models": stored["models"],
        "tasks": [{"name": t["name"], "params": t["params"]} for t in stored["tasks"]],
        "problems": stored["problems"],
        "seeds": stored["seeds"],
        "max_tokens": stored["max_tokens"],
        "pool": stored["pool"],
        "concurrency": stored["concurrency"],
        "strategies": [
            {
                "name": a["strategy"]["name"],
                "params": a["strategy"]["params"],
                "label": a["label"],
                "budgets": a["budgets"],
                **({"verifier": {"name": a["verifier"]["name"], "params": a["verifier"]["params"]}}
                   if a["verifier"] else {}),
            }
            for a in stored["arms"]
        ],
    })  # fmt: skip
