"""The WebHook activity: one definition, used alike by automation rules and journey steps.

A :class:`WebhookSpec` is what the user wrote; :func:`compile_webhook` checks every template
once and returns a :class:`CompiledWebhook` whose ``render`` builds the exact request.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Final, TypeGuard
from urllib.parse import quote, urlsplit

import orjson

from hookline.errors import InvalidInput, RenderError
from hookline.labels import describe
from hookline.redaction import hide_url_credentials, keep_masked, redact_headers, same_origin
from hookline.templates import SCOPES, Template, TemplateMode, compile_template
from hookline.times import short_value


class Method(StrEnum):
    GET = "GET"
    POST = "POST"
    PUT = "PUT"
    PATCH = "PATCH"
    DELETE = "DELETE"


DEFAULT_CONTENT_TYPE: Final = "application/json"
MAX_TIMEOUT: Final = 300.0
MAX_DELAY: Final = 7 * 86400.0  # the longest wait a retry_schedule may name, in seconds
# As the API's models take them, checked here too: a journey's block is no model field.
MAX_URL_LENGTH: Final = 4096
MAX_CONTENT_TYPE_LENGTH: Final = 200
MAX_SECRET_HEADERS: Final = 100
# hookline owns these: they carry identity, signing and framing of every delivery.
RESERVED_HEADERS: Final = frozenset(
    {
        "content-length",
        "host",
        "transfer-encoding",
        "connection",
        "content-type",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)
# A header name is an RFC 9110 token; a value may hold tab, space and visible characters
# (and non-ASCII), never another control character: CR/LF would split the header, and the
# rest no sender will send, so such a value could only be retried until its schedule ran out.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}")
_NOT_IN_FIELD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # in a URL, not even a tab
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+\-]+/[A-Za-z0-9!#$&^_.+\-]+(\s*;.*)?")


@dataclass(frozen=True)
class WebhookSpec:
    """A webhook as written by the user; templates are still text."""

    url: str
    method: str = "POST"
    content_type: str = DEFAULT_CONTENT_TYPE
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    body: str | None = None
    timeout: float | None = None
    retry_schedule: tuple[float, ...] | None = None
    # Headers whose values are credentials: sent as written, shown as *** (see redaction).
    secret_headers: tuple[str, ...] = ()

    def keeping_secrets(self, stored: WebhookSpec | None, where: str) -> WebhookSpec:
        """This spec, with secret headers sent back as ``***`` kept from ``stored``.

        See :func:`hookline.redaction.keep_masked` (the one merge); ``where`` names the
        headers object (``activity.headers``).
        """
        before = stored.headers if stored is not None else None
        same = same_origin(stored.url if stored is not None else None, self.url)
        headers = keep_masked(
            self.headers, self.secret_headers, before, where, same_destination=same
        )
        return self if headers == dict(self.headers) else replace(self, headers=headers)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WebhookSpec:
        """Build from API/JSON data already shaped by the edge (body may be an object)."""
        body = data.get("body")
        if body is not None and not isinstance(body, str):
            body = orjson.dumps(body).decode()
        schedule = data.get("retry_schedule")
        return cls(
            url=data["url"],
            method=str(data.get("method") or "POST").upper(),
            content_type=data.get("content_type") or DEFAULT_CONTENT_TYPE,
            headers=dict(data.get("headers") or {}),
            query=dict(data.get("query") or {}),
            body=body,
            timeout=data.get("timeout"),
            retry_schedule=tuple(schedule) if schedule is not None else None,
            secret_headers=tuple(data.get("secret_headers") or ()),
        )

    def as_dict(self) -> dict[str, Any]:
        """Every field as written, secrets included: what the store keeps."""
        return {
            "url": self.url,
            "method": self.method,
            "content_type": self.content_type,
            "headers": dict(self.headers),
            "query": dict(self.query),
            "body": self.body,
            "timeout": self.timeout,
            "retry_schedule": list(self.retry_schedule) if self.retry_schedule else None,
            "secret_headers": list(self.secret_headers),
        }

    def shown(self) -> dict[str, Any]:
        """As :meth:`as_dict`, with secret header values masked: what answers show."""
        return {**self.as_dict(), "headers": redact_headers(self.headers, self.secret_headers)}


@dataclass(frozen=True, slots=True)
class RenderedRequest:
    """The exact request a delivery sends, on every attempt."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes | None
    timeout: float | None
    retry_schedule: tuple[float, ...] | None
    secret_headers: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The request as shown (a preview, a test send): secret header values masked."""
        return {
            "method": self.method,
            "url": hide_url_credentials(self.url),
            "headers": redact_headers(self.headers, self.secret_headers),
            "body": self.body.decode("utf-8", "replace") if self.body is not None else None,
        }


def body_mode(content_type: str) -> TemplateMode:
    """The template mode a body of this content type is rendered in."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return TemplateMode.JSON
    if media == "application/x-www-form-urlencoded":
        return TemplateMode.FORM
    return TemplateMode.TEXT


class CompiledWebhook:
    """A webhook whose templates are parsed and checked; render is the hot path."""

    __slots__ = ("_body", "_headers", "_query", "_url", "spec")

    def __init__(
        self, spec: WebhookSpec, field_prefix: str, scopes: frozenset[str] = SCOPES
    ) -> None:
        self.spec = spec
        p = field_prefix + "." if field_prefix else ""
        self._url = compile_template(spec.url, TemplateMode.URL, field=p + "url", scopes=scopes)
        self._headers: tuple[tuple[str, Template], ...] = tuple(
            (name, _compile_header(name, value, p, scopes)) for name, value in spec.headers.items()
        )
        self._query: tuple[tuple[str, Template], ...] = tuple(
            (
                name,
                compile_template(value, TemplateMode.TEXT, field=f"{p}query.{name}", scopes=scopes),
            )
            for name, value in spec.query.items()
        )
        self._body = (
            compile_template(
                spec.body, body_mode(spec.content_type), field=p + "body", scopes=scopes
            )
            if spec.body is not None
            else None
        )

    @property
    def warnings(self) -> list[dict[str, str]]:
        """``[{field, detail}]``: what renders but looks wrong (templates.fallback_warning)."""
        templates = [self._url, *(t for _, t in self._headers), *(t for _, t in self._query)]
        if self._body is not None:
            templates.append(self._body)
        return [{"field": t.field, "detail": detail} for t in templates for detail in t.warnings]

    def render(self, context: Mapping[str, Any]) -> RenderedRequest:
        """Build the request for one user and event; RenderError if a header would break."""
        url = self._url.render(context)
        if self._query:
            pairs = "&".join(
                f"{quote(name, safe='')}={quote(t.render(context), safe='')}"
                for name, t in self._query
            )
            url += ("&" if "?" in url else "?") + pairs
        headers: list[tuple[str, str]] = []
        for name, template in self._headers:
            value = template.render(context)
            bad = _NOT_IN_FIELD_VALUE.search(value)
            if bad is not None:
                raise RenderError(
                    f"header {name!r} would contain {describe(bad.group())}; the value was refused",
                    field=f"headers.{name}",
                )
            headers.append((name, value))
        body = None
        if self._body is not None:
            body = self._body.render(context).encode()
            headers.append(("content-type", self.spec.content_type))
        return RenderedRequest(
            self.spec.method,
            url,
            tuple(headers),
            body,
            self.spec.timeout,
            self.spec.retry_schedule,
            self.spec.secret_headers,
        )


def _compile_header(name: str, value: str, prefix: str, scopes: frozenset[str]) -> Template:
    where = f"{prefix}headers.{name}"
    if not _HEADER_NAME.fullmatch(name):
        raise InvalidInput(f"{name!r} is not a valid header name", field=where)
    if name.lower() in RESERVED_HEADERS:
        hint = " (set content_type instead)" if name.lower() == "content-type" else ""
        raise InvalidInput(f"header {name!r} is set by hookline{hint}", field=where)
    bad = _NOT_IN_FIELD_VALUE.search(value)
    if bad is not None:
        raise InvalidInput(
            f"a header value cannot contain {describe(bad.group())} (at index {bad.start()}); "
            "only tab, space and visible characters are allowed",
            field=where,
        )
    return compile_template(value, TemplateMode.TEXT, field=where, scopes=scopes)


def _check_secret_headers(spec: WebhookSpec, prefix: str) -> None:
    """Each name must be one of the webhook's headers: a typo would leave a secret shown."""
    written = {name.lower() for name in spec.headers}
    for index, name in enumerate(spec.secret_headers):
        if name.lower() not in written:
            raise InvalidInput(
                f"secret_headers names {name!r}, which is not one of the webhook's headers",
                field=f"{prefix}secret_headers[{index}]",
            )


def compile_webhook(
    spec: WebhookSpec, *, field: str = "", scopes: frozenset[str] = SCOPES
) -> CompiledWebhook:
    """Check the whole spec; InvalidInput/TemplateError name the field (and line, column).

    ``scopes``: the tag scopes allowed (a journey step adds ``last_event`` and ``journey``).
    """
    p = field + "." if field else ""
    try:
        method = Method(spec.method)
    except ValueError:
        allowed = ", ".join(m.value for m in Method)
        raise InvalidInput(f"method must be one of {allowed}", field=p + "method") from None
    if not spec.url or len(spec.url) > MAX_URL_LENGTH:
        raise InvalidInput(f"the url is 1-{MAX_URL_LENGTH} characters", field=p + "url")
    if len(spec.content_type) > MAX_CONTENT_TYPE_LENGTH:
        raise InvalidInput(
            f"content_type is at most {MAX_CONTENT_TYPE_LENGTH} characters",
            field=p + "content_type",
        )
    if len(spec.secret_headers) > MAX_SECRET_HEADERS:
        raise InvalidInput(
            f"secret_headers names at most {MAX_SECRET_HEADERS} headers", field=p + "secret_headers"
        )
    if not _MEDIA_TYPE.fullmatch(spec.content_type):
        raise InvalidInput(
            "content_type must be a media type such as application/json", field=p + "content_type"
        )
    bad = _NOT_IN_FIELD_VALUE.search(spec.content_type)
    if bad is not None:  # its parameters are free text, and it is sent as a header
        raise InvalidInput(
            f"content_type cannot contain {describe(bad.group())}", field=p + "content_type"
        )
    if method is Method.GET and spec.body is not None:
        raise InvalidInput(
            "a GET request carries no body; put values in 'query' instead", field=p + "body"
        )
    bad = _CONTROL.search(spec.url)
    if bad is not None:  # no sender puts one on a request line: it could only be retried
        raise InvalidInput(f"the url cannot contain {describe(bad.group())}", field=p + "url")
    try:
        urlsplit(spec.url).port  # noqa: B018 - parsing the port is the check
    except ValueError as exc:
        raise InvalidInput(f"the url cannot be parsed: {exc}", field=p + "url") from None
    _check_secret_headers(spec, p)
    if spec.timeout is not None and not (
        _is_number(spec.timeout) and 0 < spec.timeout <= MAX_TIMEOUT
    ):
        raise InvalidInput(
            f"timeout is a number of seconds, more than 0 and at most {MAX_TIMEOUT:g}; "
            f"got {short_value(spec.timeout)}",
            field=p + "timeout",
        )
    if spec.retry_schedule is not None:
        s = spec.retry_schedule
        if not s or len(s) > 50 or not all(_is_delay(d) for d in s):
            raise InvalidInput(
                "retry_schedule must list 1-50 delays in seconds, each 0-604800",
                field=p + "retry_schedule",
            )
    return CompiledWebhook(spec, field, scopes)


def _is_number(value: object) -> TypeGuard[float]:
    """A real, finite number (a stored spec may hold anything: NaN came back as null)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_delay(value: object) -> bool:
    return _is_number(value) and 0 <= value <= MAX_DELAY
