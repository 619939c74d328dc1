"""Templates that requests may supply (a judge's prompt, refine's retry text), filled safely.

Never `str.format` on request text: a format spec pads without bound (`{score:>300000000}`
made 300 MB from a 200-byte request) and attribute access reaches Python objects. Here a
template names fields only, each at most once, and is at most `MAX_TEMPLATE_CHARS` long, so
what it makes is bounded by the template plus each value once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from testtime.core.errors import ConfigError

MAX_TEMPLATE_CHARS = 4000  # a template's length (templates arrive in server requests)
_BRACES = re.compile(r"\{\{|\}\}|\{[^{}]*\}|[{}]")


def fill(
    template: str,
    values: Mapping[str, str],
    param: str = "template",
    aliases: Mapping[str, str] | None = None,
) -> str:
    """`template` with each `{name}` replaced by `values[name]` and `{{`, `}}` by braces.

    Not str.format: a template (request-supplied, through the server) gets no format specs
    (`{score:>300000000}` padded 300 MB) and no attribute or item access; each field may
    appear once, so the output is at most the template plus each value once.
    """
    aliases = aliases or {}
    texts, tokens = _BRACES.split(template), _BRACES.findall(template)
    out, seen = [texts[0]], set()
    for token, text in zip(tokens, texts[1:], strict=True):
        name = aliases.get(token[1:-1], token[1:-1])
        if token in ("{{", "}}"):
            out.append(token[0])
        elif name in values and name not in seen:
            seen.add(name)
            out.append(values[name])
        else:
            allowed = ", ".join("{" + k + "}" for k in values)
            raise ConfigError(
                f"parameter {param!r} may use {allowed} (each once, no format specs or "
                f"attributes) and {{{{ }}}} for literal braces, not {token[:40]!r}"
            )
        out.append(text)
    return "".join(out)


def short(param: str, text: str) -> None:
    """Refuse a template longer than `MAX_TEMPLATE_CHARS`."""
    if len(text) > MAX_TEMPLATE_CHARS:
        raise ConfigError(
            f"parameter {param!r} is {len(text)} characters; at most {MAX_TEMPLATE_CHARS} "
            "are allowed"
        )
