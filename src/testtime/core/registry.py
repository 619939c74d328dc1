"""One registry per kind of component, recording each one's name and validated parameters.

Every component declares a frozen dataclass of parameters. `Registry.spec(name, **params)`
checks names and types (unknown or ill-typed parameters are refused with the allowed list)
and returns a `Spec`: the record stored with every result so a run can be repeated exactly.
Every integer parameter is a size (n, width, particles, iterations, tokens, ...) capped at
`max_param()` unless it is one of `NOT_SIZES`, so no parameter asks for unbounded work.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Literal, TypeVar, overload

from testtime.core.errors import ConfigError, unknown

F = TypeVar("F")
D = TypeVar("D")  # what a factory is built from besides its parameters
R = TypeVar("R")  # what a factory makes
MAX_PARAM = 65536  # the default maximum of an integer parameter (a size)
MAX_PARAM_ENV = "TESTTIME_MAX_PARAM"  # raises (or lowers) it for the library and the CLI
NOT_SIZES = frozenset({"seed", "n_params", "label"})  # seeds, parameter counts, token ids


def max_param() -> int:
    """The largest integer parameter allowed: $TESTTIME_MAX_PARAM, else MAX_PARAM."""
    raw = os.environ.get(MAX_PARAM_ENV, "").strip()
    if not raw:
        return MAX_PARAM
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{MAX_PARAM_ENV}={raw!r} must be a positive integer; unset it or fix it")
    return int(raw)


_LIMIT: ContextVar[tuple[int, str] | None] = ContextVar("testtime_size_limit", default=None)


@contextmanager
def size_limit(limit: int, remedy: str) -> Iterator[None]:
    """Parameters made inside are capped at `limit` (a server's), refused saying `remedy`."""
    token = _LIMIT.set((limit, remedy))
    try:
        yield
    finally:
        _LIMIT.reset(token)


@dataclass(frozen=True)
class Params:
    """Base of every component's parameter dataclass; subclasses add typed fields."""

    _not_sizes: ClassVar[frozenset[str]] = NOT_SIZES  # integer fields that are not capped
    # fields that name local files: a server takes them only inside directories it allows
    _paths: ClassVar[frozenset[str]] = frozenset()
    # fields that name models to open (a fusion's aggregator): a server refuses them
    _models: ClassVar[frozenset[str]] = frozenset()

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            checked = _coerce(value, hints[f.name])
            if checked is _BAD:
                raise ConfigError(
                    f"parameter {f.name!r} must be {_describe(hints[f.name])}, got {value!r}"
                )
            if checked is not value:
                object.__setattr__(self, f.name, checked)
        limit, remedy = _LIMIT.get() or (max_param(), f"set {MAX_PARAM_ENV} to allow more")
        for name, value in sizes(self):
            if value > limit:
                raise ConfigError(
                    f"parameter {name!r} = {value} is above the maximum of {limit}; ask for "
                    f"less ({remedy})"
                )
        self.validate()

    def validate(self) -> None:
        """Range checks beyond types; raise ConfigError naming the field."""

    def positive(self, *names: str) -> None:
        for name in names:
            if getattr(self, name) <= 0:
                raise ConfigError(f"parameter {name!r} must be > 0, got {getattr(self, name)}")


def sizes(params: Params) -> Iterator[tuple[str, int]]:
    """Each integer parameter that is a size, with its value."""
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        if type(value) is int and f.name not in params._not_sizes:
            yield f.name, value


_BAD = object()


def _coerce(value: Any, tp: Any) -> Any:
    """Return value (or a lossless conversion of it) if it fits type tp, else _BAD."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            out = _coerce(value, arg)
            if out is not _BAD:
                return out
        return _BAD
    if origin is Literal:
        return value if value in typing.get_args(tp) else _BAD
    if tp is type(None):
        return value if value is None else _BAD
    if tp is bool:
        return value if isinstance(value, bool) else _BAD
    if tp is int:
        if isinstance(value, bool):
            return _BAD
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value if isinstance(value, int) else _BAD
    if tp is float:
        if isinstance(value, bool):
            return _BAD
        return float(value) if isinstance(value, int | float) else _BAD
    if tp is str:
        return value if isinstance(value, str) else _BAD
    if origin is tuple:
        if not isinstance(value, list | tuple):
            return _BAD
        (item,) = typing.get_args(tp)[:1]
        out = tuple(_coerce(v, item) for v in value)
        return _BAD if any(o is _BAD for o in out) else out
    return value if isinstance(tp, type) and isinstance(value, tp) else _BAD


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


@dataclass(frozen=True)
class Spec:
    """The record of one component: kind, name and validated parameters."""

    kind: str
    name: str
    params: Params

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON data (a tuple parameter as a list, as it loads back)."""
        params = dataclasses.asdict(self.params, dict_factory=_listed)
        return {"kind": self.kind, "name": self.name, "params": params}

    def changed(self) -> dict[str, Any]:
        """The parameters that differ from their defaults."""
        return {
            f.name: getattr(self.params, f.name)
            for f in dataclasses.fields(self.params)
            if f.default is dataclasses.MISSING or getattr(self.params, f.name) != f.default
        }

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in dataclasses.asdict(self.params).items())
        return f"{self.name}({args})"


_NO_DEPS: Any = object()  # `Registry.build` without deps


@dataclass
class Entry(Generic[F]):
    name: str
    params: type[Params]
    factory: F
    summary: str = ""
    traits: Any = None  # facts the component declares where it is registered (its kind's class)


@dataclass
class Registry(Generic[F]):
    """Components of one kind (strategy, verifier, task, ...) by name."""

    kind: str
    entries: dict[str, Entry[F]] = field(default_factory=dict)

    def register(self, name: str, params: type[Params], traits: Any = None) -> Callable[[F], F]:
        """Decorator: register `factory` under `name` with its parameter dataclass and the
        facts it declares (`traits`, of its kind's own class: a strategy's, a verifier's)."""

        def deco(factory: F) -> F:
            if name in self.entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            doc = (getattr(factory, "__doc__", None) or "").strip().splitlines()
            self.entries[name] = Entry(name, params, factory, doc[0] if doc else "", traits)
            return factory

        return deco

    def names(self) -> list[str]:
        return sorted(self.entries)

    def get(self, name: str) -> Entry[F]:
        if name not in self.entries:
            raise unknown(self.kind, name, self.names())
        return self.entries[name]

    def spec(self, name: str, params: Mapping[str, Any] | None = None) -> Spec:
        """Validate `params` for component `name` and return its record."""
        entry = self.get(name)
        params = dict(params or {})
        allowed = {f.name for f in dataclasses.fields(entry.params)}
        extra = sorted(set(params) - allowed)
        if extra:
            listing = ", ".join(sorted(allowed)) or "(none)"
            raise ConfigError(
                f"{self.kind} {name!r} has no parameter {', '.join(map(repr, extra))}; "
                f"its parameters are: {listing}"
            )
        try:
            return Spec(self.kind, name, entry.params(**params))
        except ConfigError as e:
            raise ConfigError(f"{self.kind} {name!r}: {e}") from None

    @overload
    def build(self: Registry[Callable[[Any], R]], spec: Spec) -> R: ...
    @overload
    def build(self: Registry[Callable[[D, Any], R]], spec: Spec, deps: D) -> R: ...
    def build(self, spec: Spec, deps: Any = _NO_DEPS) -> Any:
        """What `spec` describes, made by its registered factory: `factory(params)`, or
        `factory(deps, params)` for one that needs more (a strategy its Context, a verifier
        its VerifierDeps; a strategy's build is the run itself, to await).

        The one way to make a registered component: the spec must be of this kind, name a
        registered one and carry that one's parameter class (as `spec()` makes them)."""
        if spec.kind != self.kind:
            raise ConfigError(
                f"a {spec.kind} spec ({spec.name!r}) was given where a {self.kind} is built; "
                f"make it with the {self.kind} registry's spec()"
            )
        entry = self.get(spec.name)
        if not isinstance(spec.params, entry.params):
            raise ConfigError(
                f"{self.kind} {spec.name!r} takes {entry.params.__name__}, not "
                f"{type(spec.params).__name__}; make the spec with spec({spec.name!r}, ...)"
            )
        factory: Callable[..., Any] = entry.factory  # type: ignore[assignment]
        return factory(spec.params) if deps is _NO_DEPS else factory(deps, spec.params)

    def defaults(self, name: str) -> dict[str, Any]:
        """Each parameter's default value (MISSING ones as None)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self.get(name).params):
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
            else:
                out[f.name] = None
        return out


def _listed(items: list[tuple[str, Any]]) -> dict[str, Any]:
    return {k: _list(v) for k, v in items}


def _list(value: Any) -> Any:
    return [_list(v) for v in value] if isinstance(value, tuple | list) else value


def parse_params(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Parse CLI 'key=value' items; values are read as JSON when they parse, else as strings."""
    import json

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"parameter {item!r} must be written key=value, e.g. n=8")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out
