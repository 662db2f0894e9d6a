"""Every error leaves as JSON ``{code, detail, field}``; a 500 is a bug and says so."""

from __future__ import annotations

import logging
import re
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from hookline.api._json import JSON
from hookline.api.models import error_location
from hookline.errors import HooklineError

log = logging.getLogger("hookline.api")


# The codes of the web framework's own errors (no route, wrong method, ...).
HTTP_CODES: Final = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def error_response(status: int, code: str, detail: str, field: str | None = None) -> JSON:
    return JSON({"code": code, "detail": detail, "field": field}, status_code=status)


# Parts pydantic adds to a location for the member of a union it tried ("reach.int" for
# ``int | float``): they name no field the caller wrote, so the answer leaves them out.
_UNION_MEMBER = re.compile(
    r"(int|float|str|bool|none|bytes|(function|constrained|lax|strict)-.*|.*\[.*\])"
)


def _field(loc: tuple[Any, ...]) -> str | None:
    # The first part says where the value came from; a field may be named "body" too.
    parts = loc[1:] if loc and loc[0] in ("body", "query", "path", "header", "cookie") else loc
    parts = tuple(p for p in parts if not (isinstance(p, str) and _UNION_MEMBER.fullmatch(p)))
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None


def install(app: FastAPI) -> None:
    """Register the handlers that shape every error answer."""

    @app.exception_handler(HooklineError)
    async def _hookline(_: Request, exc: HooklineError) -> JSON:
        if exc.status >= 500:
            log.error("%s: %s", exc.code, exc.detail)
        return error_response(exc.status, exc.code, exc.detail, exc.field)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSON:
        errors = list(exc.errors())
        first: dict[str, Any] = dict(errors[0]) if errors else {"msg": "invalid input", "loc": ()}
        if first.get("type") == "json_invalid":
            where = first.get("ctx", {}).get("error", "")
            return error_response(
                400, "malformed_json", f"the body is not valid JSON: {where}", "body"
            )
        if first.get("type") == "missing" and tuple(first.get("loc", ())) == ("body",):
            return error_response(400, "missing_body", "a JSON body is required", "body")
        msg = str(first.get("msg", "invalid input"))
        field = _field(error_location(first))
        return error_response(422, "invalid_input", f"{field}: {msg}" if field else msg, field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSON:
        return error_response(
            exc.status_code, HTTP_CODES.get(exc.status_code, "http_error"), str(exc.detail)
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSON:
        log.exception("unexpected error")
        return error_response(
            500, "internal_error", f"hookline hit a bug: {exc.__class__.__name__}"
        )
