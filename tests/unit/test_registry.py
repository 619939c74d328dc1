"""The registry: names and typed parameters are checked, and refused with what is allowed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import pytest

from testtime.core.errors import ConfigError
from testtime.core.registry import Params, Registry, Spec, parse_params


@dataclass(frozen=True)
class ToyParams(Params):
    n: int = 4
    temperature: float = 0.8
    name: str = "x"
    greedy: bool = False
    agg: Literal["last", "min", "prod"] = "last"
    sizes: tuple[int, ...] = (1, 2)
    cap: int | None = None

    def validate(self) -> None:
        self.positive("n")


Toy = Callable[[ToyParams], str]


@pytest.fixture
def reg() -> Registry[Toy]:
    r: Registry[Toy] = Registry("toy")

    @r.register("alpha", ToyParams)
    def alpha(p: ToyParams) -> str:
        """The first toy.

        More words."""
        return f"alpha n={p.n}"

    @r.register("beta", ToyParams)
    def beta(p: ToyParams) -> str:
        return "beta"

    return r


def test_spec_records_name_and_validated_params(reg: Registry[Toy]) -> None:
    spec = reg.spec("alpha", {"n": 8, "temperature": 1, "sizes": [3, 4]})
    assert isinstance(spec.params, ToyParams)
    assert (spec.params.n, spec.params.temperature, spec.params.sizes) == (8, 1.0, (3, 4))
    assert isinstance(spec.params.temperature, float)
    assert spec.to_dict()["params"]["n"] == 8 and spec.to_dict()["name"] == "alpha"
    assert str(spec).startswith("alpha(n=8, temperature=1.0")
    assert reg.get("alpha").factory(spec.params) == "alpha n=8"
    assert reg.get("alpha").summary == "The first toy."


def test_unknown_name_lists_the_registered_ones(reg: Registry[Toy]) -> None:
    with pytest.raises(ConfigError, match="unknown toy 'gamma'; available: alpha, beta"):
        reg.spec("gamma")


def test_unknown_parameter_lists_the_allowed_ones(reg: Registry[Toy]) -> None:
    allowed = "its parameters are: agg, cap, greedy, n, name, sizes, temperature$"
    with pytest.raises(ConfigError, match=f"toy 'alpha' has no parameter 'm'; {allowed}"):
        reg.spec("alpha", {"m": 3})


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"n": "eight"}, "'n' must be an integer, got 'eight'"),
        ({"n": 2.5}, "'n' must be an integer"),
        ({"n": True}, "'n' must be an integer"),  # a bool is not a count
        ({"temperature": "hot"}, "'temperature' must be a number"),
        ({"greedy": 1}, "'greedy' must be true or false"),
        ({"agg": "mean"}, "'agg' must be one of 'last', 'min', 'prod'"),
        ({"sizes": [1, "two"]}, "'sizes' must be a list of an integer"),
        ({"cap": "none"}, "'cap' must be an integer or null"),
        ({"n": 0}, "'n' must be > 0"),
    ],
)
def test_ill_typed_or_out_of_range_parameters_are_refused(
    reg: Registry[Toy], params: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=f"toy 'alpha': parameter {message}"):
        reg.spec("alpha", params)


def test_lossless_conversions_are_accepted(reg: Registry[Toy]) -> None:
    p = reg.spec("alpha", {"n": 3.0, "cap": 7, "sizes": (5,)}).params
    assert isinstance(p, ToyParams)
    assert (p.n, p.cap, p.sizes) == (3, 7, (5,)) and isinstance(p.n, int)


def test_defaults_and_names(reg: Registry[Toy]) -> None:
    assert reg.names() == ["alpha", "beta"]
    assert reg.defaults("alpha")["temperature"] == 0.8
    assert reg.defaults("beta")["cap"] is None


def test_a_name_registers_once(reg: Registry[Toy]) -> None:
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("alpha", ToyParams)(lambda p: "again")


def test_parse_params_reads_json_values_else_strings() -> None:
    got = parse_params(["n=8", "temperature=0.5", "name=greedy", "sizes=[1,2]", "cap=null"])
    assert got == {"n": 8, "temperature": 0.5, "name": "greedy", "sizes": [1, 2], "cap": None}
    with pytest.raises(ConfigError, match="must be written key=value"):
        parse_params(["n8"])


def test_build_makes_the_component_from_its_validated_spec(reg: Registry[Toy]) -> None:
    assert reg.build(reg.spec("alpha", {"n": 8})) == "alpha n=8"
    withdeps: Registry[Callable[[str, ToyParams], str]] = Registry("toy")
    withdeps.register("gamma", ToyParams)(lambda deps, p: f"{deps} n={p.n}")
    assert withdeps.build(withdeps.spec("gamma", {"n": 3}), "ctx") == "ctx n=3"


def test_build_refuses_a_spec_of_another_kind_or_with_foreign_params(reg: Registry[Toy]) -> None:
    other: Registry[Toy] = Registry("tool")
    other.register("alpha", ToyParams)(lambda p: "tool")
    with pytest.raises(ConfigError, match=r"a tool spec .* given where a toy is built"):
        reg.build(other.spec("alpha"))

    @dataclass(frozen=True)
    class Foreign(Params):
        n: int = 4

    with pytest.raises(ConfigError, match="toy 'alpha' takes ToyParams, not Foreign"):
        reg.build(Spec("toy", "alpha", Foreign()))
    with pytest.raises(ConfigError, match="unknown toy 'delta'"):
        reg.build(Spec("toy", "delta", ToyParams()))


def test_a_component_declares_its_traits_where_it_is_registered(reg: Registry[Toy]) -> None:
    @dataclass(frozen=True)
    class Facts:
        cheap: bool

    reg.register("gamma", ToyParams, Facts(cheap=True))(lambda p: "gamma")
    assert reg.get("gamma").traits == Facts(cheap=True)
    assert reg.get("alpha").traits is None  # declared nothing
