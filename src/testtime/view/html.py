"""The HTML shell every page of the viewer shares, and the page that says what went wrong.

Pages are small: a title, a header with links, a body that the page's script fills from
the JSON APIs. User data is escaped with `esc`; no router writes it into HTML raw.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from fastapi.responses import HTMLResponse

NAV = (("/", "home"), ("/store", "lab store"), ("/traces", "traces"), ("/live", "live"))


def page(
    title: str,
    body: str = "",
    *,
    scripts: Sequence[str] = (),
    styles: Sequence[str] = (),
    data: str = "",
    error: str | None = None,
    status: int = 200,
    nav: Sequence[tuple[str, str]] = NAV,
) -> HTMLResponse:
    """A whole page. `body` is trusted HTML; `scripts` and `styles` are paths under /static
    (vendored libraries first; js/common.js and css/view.css always come); `data` lands in
    the body's data-page attribute for the page's script; `error` fills the error box,
    which scripts also fill (common.js `showError`) when an API answers with an error.
    `nav` is the header's links (the server's live page has its own)."""
    links = " ".join(f'<a href="{href}">{name}</a>' for href, name in nav)
    heads = "".join(
        f'<link rel="stylesheet" href="/static/{s}">' for s in ("css/view.css", *styles)
    )
    tails = "".join(f'<script src="/static/{s}"></script>' for s in ("js/common.js", *scripts))
    box = (
        f'<div id="error" class="error">{esc(error)}</div>'
        if error
        else ('<div id="error" class="error" hidden></div>')
    )
    text = (
        "<!doctype html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{esc(title)} · testtime</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">{heads}</head>'
        f'<body data-page="{esc(data)}"><header><b>testtime view</b> <nav>{links}</nav></header>'
        f'<main><h1 id="title">{esc(title)}</h1>{box}{body}</main>{tails}</body></html>'
    )
    return HTMLResponse(text, status_code=status)


def error_page(message: str, status: int = 400, title: str = "Cannot show this") -> HTMLResponse:
    """A clear page for bad input (a missing store, an unknown run): the one-line message,
    never a traceback, and a way back."""
    return page(title, '<p><a href="/">back to the start page</a></p>', error=message,
                status=status)  # fmt: skip


def esc(text: object) -> str:
    """HTML-escape any value (quotes too: it may land in an attribute)."""
    return escape(str(text), quote=True)
