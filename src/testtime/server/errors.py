"""Errors in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, never a 422.

Bad input is a 400 whose message says what was wrong and what is allowed; a 500 is only
ever a bug of ours, logged with its traceback and answered without one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from testtime.core.errors import TesttimeError
from testtime.generators.http_wire import ServerError

log = logging.getLogger("testtime.server")
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_KINDS = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "internal_error",
    502: "upstream_error",
    503: "unavailable_error",
    504: "timeout_error",
}


class ApiError(Exception):
    """An HTTP error with a message for the user; raise it anywhere in a request."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = sanitize(message)
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        kind = _KINDS.get(self.status, "invalid_request_error")
        if self.code == "insufficient_quota":
            kind = "insufficient_quota"
        error = {"message": self.message, "type": kind, "param": self.param, "code": self.code}
        return {"error": error}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def sanitize(message: str) -> str:
    """A message safe to show: no object addresses, bounded length."""
    message = _ADDRESS.sub("", message)
    return message if len(message) <= 2000 else message[:2000] + " ..."


def from_exception(exc: BaseException) -> ApiError:
    """The ApiError for any exception: user errors are 400s, an upstream that is down,
    overloaded or without the endpoint asked for a 502, anything else a logged 500."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ServerError) and (exc.status is None or exc.status >= 429):
        return ApiError(502, f"the upstream server failed: {exc}", code="upstream_error")
    if isinstance(exc, ServerError) and exc.status in (404, 405):  # e.g. no /v1/completions
        return ApiError(502, f"the upstream server cannot serve this: {exc}", code="upstream_error")
    if isinstance(exc, TesttimeError):
        return ApiError(400, str(exc))
    log.error("internal error", exc_info=exc)
    return ApiError(500, "internal server error; the server log has the details", code="internal")


def validation_message(errors: Sequence[Any], content_type: str) -> tuple[str, str | None]:
    """A readable message (and the first offending field) from pydantic's error list."""
    first = errors[0] if errors else {}
    kind = first.get("type", "")
    if kind == "json_invalid":
        why = (first.get("ctx") or {}).get("error", "")
        return f"the body is not valid JSON ({why}); send a JSON object{_EXAMPLE}", None
    if not _where(first) and kind == "missing":
        return f"the request has no body; send a JSON object{_EXAMPLE}", None
    if not _where(first):
        hint = "" if "json" in content_type else " with Content-Type: application/json"
        got = type(first.get("input")).__name__.replace("NoneType", "null")
        return f"the body must be a JSON object{hint}, not {got}{_EXAMPLE}", None
    found: dict[str, list[str]] = {}
    for e in errors:  # a union's alternatives share a place: "a string or a list"
        found.setdefault(_where(e), []).append(str(e.get("msg", "invalid")))
    parts = [f"{where}: {' or '.join(dict.fromkeys(msgs))}" for where, msgs in found.items()]
    more = f" (and {len(parts) - 5} more)" if len(parts) > 5 else ""
    return "invalid request: " + "; ".join(parts[:5]) + more, _where(first)


def _where(error: Any) -> str:
    """The field an error is about, without pydantic's union tags ('str', 'list[str]')."""
    tags = {"str", "int", "float", "bool", "list", "dict", "none", "body"}
    return ".".join(
        str(p)
        for p in error.get("loc", ())
        if not (isinstance(p, str) and (p in tags or "[" in p or p[:1].isupper()))
    )


_EXAMPLE = ', e.g. {"model": "MODEL", "messages": [{"role": "user", "content": "2+2?"}]}'


def install(app: FastAPI) -> None:
    """Route every error through the OpenAI error shape."""

    async def api_error(_: Request, exc: Exception) -> JSONResponse:
        return from_exception(exc).response()

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        ctype = request.headers.get("content-type", "")
        message, param = validation_message(list(exc.errors()), ctype)
        return ApiError(400, message, param=param, code="invalid_value").response()

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        message = str(exc.detail)
        if exc.status_code == 404:
            message = (
                "no such endpoint; this server serves /v1/chat/completions, /v1/completions, "
                "/v1/models, /v1/models/{model}, /v1/testtime/stats and /health"
            )
        return ApiError(exc.status_code, message, headers=exc.headers).response()

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(TesttimeError, api_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, api_error)
