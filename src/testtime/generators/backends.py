"""Backends: what a model name means, in one registry.

A backend is one file that subclasses `Backend` and registers it with `@backend`: which
model names it claims (`fake`, `http(s)://HOST:PORT/v1#MODEL`, a packaged name or a local
path), how it opens a `Generator` for one, the fingerprint the lab stores to notice a
changed model, and, where it knows them, the model's parameter count (Snell's exchange
rate) and KV-cache shape (Kinetics's eFLOPs). `BUILTIN` names the modules that register the
shipped backends (a new one is one file plus one line there). Nothing here imports torch.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import Any, ClassVar, TypeVar

from testtime.core.errors import ConfigError
from testtime.core.kinetics import KVShape
from testtime.generators.base import Generator

# the modules whose import registers the shipped backends (the local one is the fallback)
BUILTIN = (  # one module a line: a new backend adds one line
    "testtime.generators.fake",
    "testtime.generators.http",
    "testtime.generators.local",
)


class Backend(ABC):
    """How one family of model names is opened and described (one instance, registered)."""

    name: ClassVar[str]
    usage: ClassVar[str]  # how its names are written, for help and for "unknown model" errors
    fallback: ClassVar[bool] = False  # asked last, for any name no other backend claims
    # Where it runs if not on a device chosen here ("a served model runs on its server"),
    # and the --device/--dtype values that are then still fine; None: it takes both.
    runs_on: ClassVar[str | None] = None
    fine_devices: ClassVar[tuple[str, ...]] = ("auto",)

    @abstractmethod
    def claims(self, model: str) -> bool:
        """Whether `model` is a name of this backend."""

    @abstractmethod
    def open(self, model: str, **opts: Any) -> Generator:
        """The generator for `model`; `opts` are the backend's own options."""

    def fingerprint(self, model: str) -> str:
        """What the lab stores to tell a changed model (a weights hash, where there are any)."""
        return model

    def n_params(self, model: str) -> int:
        """The model's parameter count, read without loading it."""
        raise ConfigError(
            f"the parameter count of {model!r} ({self.name} backend) is unknown here; "
            f"compare models whose weights are installed"
        )

    def kv_shape(self, model: str) -> KVShape | None:
        """The model's KV-cache shape (layers, kv heads, head dim), or None when unknown."""
        return None

    def options(self, opts: dict[str, Any]) -> dict[str, Any]:
        """The options `open` takes: a backend that runs elsewhere refuses a device or dtype
        rather than ignoring it (those in `fine_devices` are dropped quietly)."""
        if self.runs_on is None:
            return opts
        given = [k for k in ("device", "dtype")
                 if opts.get(k) is not None and opts[k] not in self.fine_devices]  # fmt: skip
        if given:
            flags = " and ".join(f"--{k} {opts[k]}" for k in given)
            raise ConfigError(f"{self.runs_on}, so {flags} would do nothing; drop it")
        return {k: v for k, v in opts.items() if k not in ("device", "dtype")}


B = TypeVar("B", bound=type[Backend])


class Backends:
    """The registered backends by name; the shipped ones register on first use."""

    def __init__(self) -> None:
        self.entries: dict[str, Backend] = {}

    def add(self, cls: B) -> B:
        """Class decorator: register one instance of a backend under its name."""
        if cls.name in self.entries:
            raise ValueError(f"backend {cls.name!r} is registered twice")
        if cls.fallback and any(b.fallback for b in self.entries.values()):
            raise ValueError(f"backend {cls.name!r}: there is already a fallback backend")
        self.entries[cls.name] = cls()
        return cls

    def all(self) -> list[Backend]:
        """Every backend, the fallback last."""
        for module in BUILTIN:
            importlib.import_module(module)  # registers it (once: modules import once)
        return sorted(self.entries.values(), key=lambda b: b.fallback)

    def find(self, model: str) -> Backend:
        """The backend that claims `model`: the one specific backend that does, else the
        fallback (which says what is wrong with a name nobody serves)."""
        every = self.all()
        claimed = [b for b in every if not b.fallback and b.claims(model)]
        if len(claimed) > 1:
            names = " and ".join(b.name for b in claimed)
            raise ValueError(f"model {model!r} is claimed by {names}: make their claims disjoint")
        if claimed:
            return claimed[0]
        fallback = [b for b in every if b.fallback and b.claims(model)]
        if not fallback:
            raise ConfigError(f"no backend serves the model {model!r}; name one as {forms()}")
        return fallback[0]


BACKENDS = Backends()
backend = BACKENDS.add


def forms(but: str | None = None) -> str:
    """How every backend except `but` names its models, for help and error messages."""
    return ", ".join(b.usage for b in BACKENDS.all() if b.name != but)
