"""SymPy values as plain data and back, so an answer parsed in the sandbox can leave it.

`to_plain` runs inside the jail (this file's source is the job's code: it imports only the
standard library and sympy) on what `parse_expr` made of a model's answer. `from_plain`
rebuilds that value in testtime's process without evaluating any text: each node is a
sympy class found by name on the `sympy` module (Basic, never an atom but the numbers,
plain symbols and singletons handled apart), called on already rebuilt arguments with
evaluation off, and kept only if it came out exactly as described. So the rebuilt value
equals the jail's, and a forged node list can only describe an expression an answer could
have written; anything else raises `NotSympy`.

Nodes are flat, children before parents, the root last (no nesting limit to hit):
`["py", value]` a plain Python number, bool or None, `["Integer", n]`, `["Rational", p, q]`,
`["Float", [sign, mantissa, exponent, bits], precision]`, `["Symbol", name]` (no
assumptions), `["S", name]` (a singleton such as Pi or Infinity), and
`["Node", class_name, [child indexes]]`.
"""

from __future__ import annotations

from typing import Any

# Plain values parse_expr may give (e.g. `len('ab')`). Never a str: the scorers pass the value
# to sympy functions, which would parse (evaluate) a str here.
PLAIN = (bool, int, float, type(None))
MAX_NODES = 100_000
MAX_PRECISION = 1 << 16  # bits of a Float; parse_expr gives 53 unless an answer writes more


class NotSympy(ValueError):
    """A value that is not plain sympy, or a node that does not rebuild exactly."""


def to_plain(value: Any) -> list[list[Any]]:
    """`value` (a sympy expression, a plain number, bool or None) as a flat list of nodes."""
    import sympy  # type: ignore[import-untyped]
    from sympy.core.singleton import Singleton  # type: ignore[import-untyped]

    nodes: list[list[Any]] = []
    index: dict[int, int] = {}  # id of an object of `value`'s tree -> its node
    stack: list[tuple[Any, bool]] = [(value, False)]
    while stack:
        obj, children_done = stack.pop()
        if id(obj) in index:
            continue
        if not isinstance(obj, sympy.Basic):
            if type(obj) not in PLAIN:
                raise NotSympy(f"a {type(obj).__name__} is neither sympy nor a plain value")
            node: list[Any] = ["py", obj]
        elif isinstance(obj, sympy.Integer):
            node = ["Integer", int(obj.p)]
        elif isinstance(obj, sympy.Rational):
            node = ["Rational", int(obj.p), int(obj.q)]
        elif type(obj) is sympy.Float:
            node = ["Float", [int(part) for part in obj._mpf_], int(obj._prec)]
        elif type(obj) is sympy.Symbol:
            if obj != sympy.Symbol(obj.name):
                raise NotSympy(f"symbol {obj.name!r} has assumptions")
            node = ["Symbol", str(obj.name)]
        elif isinstance(type(obj), Singleton):
            node = ["S", type(obj).__name__]
        else:
            name = type(obj).__name__
            if getattr(sympy, name, None) is not type(obj) or isinstance(obj, sympy.Atom):
                raise NotSympy(f"{name} is not a sympy class of that name with arguments")
            if not children_done:
                stack.append((obj, True))
                stack.extend((arg, False) for arg in reversed(obj.args))
                continue
            node = ["Node", name, [index[id(arg)] for arg in obj.args]]
        index[id(obj)] = len(nodes)
        nodes.append(node)
        if len(nodes) > MAX_NODES:
            raise NotSympy(f"more than {MAX_NODES} nodes")
    return nodes


def from_plain(nodes: Any) -> Any:
    """The value `to_plain` described, rebuilt without evaluating text; `NotSympy` when a
    node is malformed, names no allowed class, or does not come out exactly as written."""
    if not isinstance(nodes, list) or not nodes or len(nodes) > MAX_NODES:
        raise NotSympy("not a node list")
    built: list[Any] = []
    for node in nodes:
        try:
            built.append(_rebuild(node, built))
        except NotSympy:
            raise
        except Exception as exc:  # a constructor refusing its arguments
            raise NotSympy(f"node {str(node)[:80]} does not rebuild: {exc}"[:300]) from None
    return built[-1]


def _ints(values: Any, count: int) -> bool:
    return isinstance(values, list) and len(values) == count and all(type(v) is int for v in values)


def _name(value: Any) -> bool:
    return isinstance(value, str) and value.isidentifier() and not value.startswith("_")


def _rebuild(node: Any, built: list[Any]) -> Any:
    import sympy  # type: ignore[import-untyped]
    from sympy.core.singleton import Singleton  # type: ignore[import-untyped]

    kind = node[0] if isinstance(node, list) and node else None
    if kind == "py" and len(node) == 2 and type(node[1]) in PLAIN:
        return node[1]
    if kind == "Integer" and _ints(node[1:], 1):
        return sympy.Integer(node[1])
    if kind == "Rational" and _ints(node[1:], 2) and node[2] > 0:
        rational = sympy.Rational(node[1], node[2])
        if isinstance(rational, sympy.Rational) and (rational.p, rational.q) == tuple(node[1:]):
            return rational
    if kind == "Float" and len(node) == 3 and _ints(node[1], 4) and _ints(node[2:], 1):
        return _float(node[1], node[2])
    if kind == "Symbol" and len(node) == 2 and isinstance(node[1], str):
        return sympy.Symbol(node[1])
    if kind == "S" and len(node) == 2 and _name(node[1]):
        single = getattr(sympy.S, node[1], None)
        if isinstance(type(single), Singleton) and type(single).__name__ == node[1]:
            return single
    if kind == "Node" and len(node) == 3 and _name(node[1]) and isinstance(node[2], list):
        return _apply(node[1], node[2], built)
    raise NotSympy(f"node {str(node)[:80]} is not one of the node forms")


def _float(mpf: list[int], precision: int) -> Any:
    import sympy

    if 0 < precision <= MAX_PRECISION and mpf[0] in (0, 1):
        number = sympy.Float(tuple(mpf), precision=precision)
        if type(number) is sympy.Float and (number._mpf_, number._prec) == (tuple(mpf), precision):
            return number
    raise NotSympy(f"Float {mpf} of precision {precision} does not rebuild exactly")


def _apply(name: str, children: list[Any], built: list[Any]) -> Any:
    """Class `name` of the sympy module on the built children, unevaluated and exact."""
    import sympy  # type: ignore[import-untyped]

    cls: Any = getattr(sympy, name, None)
    if not (isinstance(cls, type) and issubclass(cls, sympy.Basic) and cls.__name__ == name):
        raise NotSympy(f"{name!r} is not a sympy class")
    if issubclass(cls, sympy.Atom):
        raise NotSympy(f"{name!r} is an atom, not a class with arguments")
    if not all(type(i) is int and 0 <= i < len(built) for i in children):
        raise NotSympy(f"{name} names a child that is not built before it")
    args = tuple(built[i] for i in children)
    if not all(isinstance(arg, sympy.Basic) for arg in args):
        raise NotSympy(f"{name} has an argument that is not sympy")
    try:
        value: Any = cls(*args, evaluate=False)
    except TypeError as exc:  # a class without the keyword (one that does not evaluate)
        if "evaluate" not in str(exc):
            raise
        value = cls(*args)
    if type(value) is not cls or getattr(value, "args", None) != args:
        raise NotSympy(f"{name} of those arguments does not come out as written")
    return value
