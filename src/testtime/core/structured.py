"""Structured output: OpenAI's `response_format`, checked, and JSON answers in one canonical form.

A `ResponseFormat` is what a request asks its samples to be: free text, any JSON object, or
JSON that follows a schema. It is validated here, once, for every front end (the server's
400s, the library's ConfigErrors); whether a backend can honour a valid schema is the
backend's to say (the embedded model compiles it with xgrammar, an upstream is sent it as it
came). It keeps the object as sent, so a proxy passes it on unchanged.

JSON answers are compared in canonical form (`canonical_json`): parsed, keys sorted, numbers
written one way (1, 1.0 and 1e0 are one number), no whitespace, so a vote over samples groups
values, not spellings. This is the one place that equivalence lives.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from testtime.core.errors import ConfigError

Kind = Literal["text", "json_object", "json_schema"]
KINDS: tuple[str, ...] = ("text", "json_object", "json_schema")
# JSON Schema's type names; a schema naming another is refused before any backend sees it
SCHEMA_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # OpenAI's rule for json_schema.name
_FENCE = re.compile(r"```(?:json)?\s*\n?(.*?)```", re.DOTALL)


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """A checked `response_format`. `sent` is the object as the caller wrote it (JSON text, so
    the request stays hashable and a proxy forwards it byte for byte in meaning); `schema` is
    the JSON schema's text for `json_schema` (key order kept: it orders the properties)."""

    kind: Kind
    sent: str
    schema: str | None = None
    name: str | None = None
    strict: bool = False

    @property
    def json(self) -> bool:
        """Whether the samples are JSON (the answer is then their canonical JSON)."""
        return self.kind != "text"

    def wire(self) -> dict[str, Any]:
        """The object to send on to an OpenAI-compatible upstream: as it was sent."""
        out: dict[str, Any] = json.loads(self.sent)
        return out

    def schema_object(self) -> dict[str, Any] | None:
        """The JSON schema as an object (None unless `json_schema`)."""
        return None if self.schema is None else dict(json.loads(self.schema))


def response_format(raw: Any) -> ResponseFormat | None:
    """A `ResponseFormat` from OpenAI's shapes ({type: text}, {type: json_object},
    {type: json_schema, json_schema: {name, schema, strict?}}); None for None; a ConfigError
    naming what is wrong otherwise."""
    if raw is None:
        return None
    if isinstance(raw, ResponseFormat):
        return raw
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"response_format must be an object like {{'type': 'json_object'}}, "
            f"not {type(raw).__name__}"
        )
    kind = raw.get("type")
    if kind not in KINDS:
        raise ConfigError(
            f"response_format.type {kind!r} is not allowed; use one of: {', '.join(KINDS)}"
        )
    try:
        sent = json.dumps(raw, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"response_format must be plain JSON ({e})") from None
    if kind != "json_schema":
        return ResponseFormat(kind, sent)
    spec = raw.get("json_schema")
    if not isinstance(spec, Mapping):
        raise ConfigError(
            "response_format of type json_schema needs a 'json_schema' object: "
            "{'name': ..., 'schema': {...}, 'strict': true}"
        )
    name = spec.get("name")
    if name is not None and not (isinstance(name, str) and _NAME.fullmatch(name)):
        raise ConfigError(
            "response_format.json_schema.name must be 1-64 letters, digits, '_' or '-'"
        )
    strict = spec.get("strict", False)
    if not isinstance(strict, bool) and strict is not None:
        raise ConfigError("response_format.json_schema.strict must be true or false")
    if "schema" not in spec or spec["schema"] is None:
        raise ConfigError(
            "response_format.json_schema has no 'schema'; give the JSON schema the output "
            "must follow, e.g. {'type': 'object', 'properties': {...}}, or use "
            "{'type': 'json_object'} for any JSON object"
        )
    schema = spec["schema"]
    if not isinstance(schema, Mapping):
        raise ConfigError(
            "response_format.json_schema.schema must be a JSON schema object, not "
            f"{type(schema).__name__}"
        )
    check_schema(schema, "response_format.json_schema.schema")
    return ResponseFormat(kind, sent, json.dumps(schema), name, bool(strict))


def check_schema(schema: Mapping[str, Any], where: str) -> None:
    """Refuse what is malformed in any JSON schema, whatever compiles it: a type that is
    not a JSON type, properties that are not an object of schemas, a required that is not a
    list of names, items or sub-schemas that are not schemas. (Keywords a backend does not
    support are the backend's to refuse.)"""
    kinds = schema.get("type")
    for kind in kinds if isinstance(kinds, list) else [] if kinds is None else [kinds]:
        if kind not in SCHEMA_TYPES:
            raise ConfigError(
                f"{where}.type {kind!r} is not a JSON schema type; use one of: "
                f"{', '.join(sorted(SCHEMA_TYPES))}"
            )
    props = schema.get("properties")
    if props is not None:
        if not isinstance(props, Mapping):
            raise ConfigError(f"{where}.properties must be an object of schemas")
        for key, sub in props.items():
            _sub(sub, f"{where}.properties.{key}")
    required = schema.get("required")
    if required is not None and not (
        isinstance(required, list) and all(isinstance(r, str) for r in required)
    ):
        raise ConfigError(f"{where}.required must be a list of property names")
    for key in ("items", "additionalProperties", "not"):
        if key in schema and not isinstance(schema[key], bool):
            _sub(schema[key], f"{where}.{key}")
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        if key in schema:
            subs = schema[key]
            if not isinstance(subs, list) or not subs:
                raise ConfigError(f"{where}.{key} must be a non-empty list of schemas")
            for i, sub in enumerate(subs):
                _sub(sub, f"{where}.{key}[{i}]")
    for key in ("$defs", "definitions"):
        defs = schema.get(key)
        if defs is not None:
            if not isinstance(defs, Mapping):
                raise ConfigError(f"{where}.{key} must be an object of schemas")
            for name, sub in defs.items():
                _sub(sub, f"{where}.{key}.{name}")


def _sub(sub: Any, where: str) -> None:
    if isinstance(sub, bool):
        return  # true / false are schemas too
    if not isinstance(sub, Mapping):
        raise ConfigError(f"{where} must be a schema object, not {type(sub).__name__}")
    check_schema(sub, where)


# -- JSON answers ---------------------------------------------------------------------------
def canonical_json(text: str) -> str | None:
    """The canonical form of the JSON value in `text` (keys sorted, numbers one way, no
    whitespace), or None when `text` holds no JSON value. The text may be the value alone,
    or the value in a ``` fence (how models answer when nothing constrained them)."""
    value = parse_json(text)
    return None if value is _NONE else dumps(value)


_NONE = object()


def parse_json(text: str) -> Any:
    """The JSON value in `text` (numbers as Decimal, so none loses digits), or `_NONE`."""
    for candidate in (text, *(m.group(1) for m in _FENCE.finditer(text))):
        try:
            return json.loads(
                candidate.strip(), parse_float=Decimal, parse_int=Decimal, parse_constant=_refuse
            )
        except (ValueError, RecursionError):
            continue
    return _NONE


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def dumps(value: Any) -> str:
    """`value` as canonical JSON text."""
    if isinstance(value, dict):
        items = sorted(value.items())
        return "{" + ",".join(f"{_string(k)}:{dumps(v)}" for k, v in items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    if isinstance(value, str):
        return _string(value)
    if value is True or value is False or value is None:
        return json.dumps(value)
    return number(Decimal(value))


def _string(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def number(d: Decimal) -> str:
    """A JSON number written one way: integers without point or exponent (1.0, 1e0 -> 1),
    others in shortest plain or exponent form (0.50 -> 0.5, 1.5E-7 -> 1.5e-7)."""
    try:
        if d == d.to_integral_value() and abs(d.adjusted()) < 100:
            return str(int(d))
        text = format(d.normalize(), "").lower().replace("e+", "e")
    except InvalidOperation:  # exponents beyond Decimal's context
        text = str(d).lower()
    return "0" if text in ("-0", "0e0") else text
