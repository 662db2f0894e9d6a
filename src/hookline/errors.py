"""The one exception tree of hookline.

Every error names what was wrong, where (``field``) and, where it helps, what to do.
The API turns them into ``{"code", "detail", "field"}`` JSON answers.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class HooklineError(Exception):
    """Something went wrong in hookline."""

    code = "error"
    status = 500

    def __init__(self, detail: str | None = None, *, field: str | None = None) -> None:
        self.detail = detail or (self.__doc__ or self.code).strip()
        self.field = field
        super().__init__(self.detail)

    def as_dict(self) -> dict[str, str | None]:
        return {"code": self.code, "detail": self.detail, "field": self.field}


class InvalidInput(HooklineError):
    """The input is not valid."""

    code = "invalid_input"
    status = 422


class BadRequest(HooklineError):
    """The request is not valid."""

    code = "bad_request"
    status = 400


class UnsupportedMediaType(HooklineError):
    """The body is not JSON; send JSON with Content-Type: application/json."""

    code = "unsupported_media_type"
    status = 415


class TemplateError(InvalidInput):
    """The template cannot produce valid output."""

    code = "invalid_template"

    def __init__(
        self,
        detail: str,
        *,
        field: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.line = line
        self.column = column
        where = f" (line {line}, column {column})" if line is not None else ""
        super().__init__(f"{detail}{where}", field=field)

    def at_field(self, field: str) -> TemplateError:
        """The same error, reported under ``field`` (a prefix path is prepended by callers)."""
        err = TemplateError.__new__(TemplateError)
        err.line, err.column, err.detail, err.field = self.line, self.column, self.detail, field
        err.args = self.args
        return err


class ConditionError(InvalidInput):
    """The condition is not valid."""

    code = "invalid_condition"


class RenderError(HooklineError):
    """A request could not be rendered from its template for this event."""

    code = "render_failed"
    status = 422


class Unauthorized(HooklineError):
    """A valid API key is required: send `Authorization: Bearer <key>`."""

    code = "unauthorized"
    status = 401


class Forbidden(HooklineError):
    """This API key may not do that."""

    code = "forbidden"
    status = 403


class NotFound(HooklineError):
    """No such resource."""

    code = "not_found"
    status = 404


class Conflict(HooklineError):
    """The request conflicts with the current state of the resource."""

    code = "conflict"
    status = 409


class PreconditionFailed(HooklineError):
    """The resource changed since the version the request names (If-Match)."""

    code = "precondition_failed"
    status = 412


class PayloadTooLarge(HooklineError):
    """The request body is too large."""

    code = "payload_too_large"
    status = 413


class StoreError(HooklineError):
    """The store failed; the operation was not applied."""

    code = "store_unavailable"
    status = 503


class ConfigError(HooklineError):
    """A setting is not valid."""

    code = "invalid_setting"


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice ``word`` most likely misspells, if one is close enough to suggest."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def unknown_key(key: str, allowed: Iterable[str]) -> str:
    """``unknown key 'header'; did you mean 'headers'?``, else the keys allowed."""
    names = sorted(allowed)
    guess = closest(key, names)
    hint = f"did you mean {guess!r}?" if guess else f"allowed keys: {', '.join(names)}"
    return f"unknown key {key!r}; {hint}"
