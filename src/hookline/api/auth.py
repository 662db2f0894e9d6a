"""Who may call which route: one table of rights, checked in one place for every request.

``Gate`` (a pure ASGI middleware, in front of everything) finds the route a request goes
to with the router's own routes (their regexes, methods and order, so ``{id:path}`` takes
a ``/`` here exactly as there), looks that route's method and ``path_format`` up in
``RIGHTS``, and answers 401 or 403 before any route runs or any body is read. A route the
table does not know needs an admin key, so a route left out of the table is closed, not
open (and a test checks that every route of the app is in it). The key that passed, or
``OPEN`` while hookline runs without keys, is left on ``request.state.key`` for routes
that narrow what a brand-scoped key may touch.

Matching the table here rather than in a FastAPI dependency costs about a microsecond
instead of some twenty per request (ingest takes tens of thousands a second), and needs
nothing from FastAPI's routing internals.

A key is never logged or echoed: errors say what was wrong, never the key.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Annotated, Any, Final
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from hookline.api.errors import error_response
from hookline.errors import Forbidden, HooklineError, Unauthorized
from hookline.events import EventInput
from hookline.keys import (
    KEY_PREFIX,
    OPEN,
    ApiKey,
    AuthMode,
    Right,
    is_loopback,
    keys_required,
)
from hookline.redaction import MASK
from hookline.runtime import Runtime
from hookline.settings import Settings

log = logging.getLogger("hookline.auth")

# A route anyone may call: the echo service (its secret is in its URL) and health.
PUBLIC: Final = None

_ECHO_METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")

# (method, the route's path_format) -> the right it needs. Admin is also the answer for any path
# not listed; tests check that every route of the app is listed, so none is by mistake.
RIGHTS: Final[dict[tuple[str, str], Right | None]] = {
    # ingest: what a platform sends
    ("POST", "/api/v1/events"): Right.INGEST,
    ("PATCH", "/api/v1/users/{user_ext_id}/state"): Right.INGEST,
    # read: everything hookline holds, and renders that send nothing
    ("GET", "/api/v1/events/{event_id}"): Right.READ,
    ("GET", "/api/v1/users/{user_ext_id}/state"): Right.READ,
    ("GET", "/api/v1/rules"): Right.READ,
    ("GET", "/api/v1/rules/{rule_id}"): Right.READ,
    ("GET", "/api/v1/webhooks"): Right.READ,
    ("GET", "/api/v1/webhooks/{webhook_id}"): Right.READ,
    ("POST", "/api/v1/webhooks/preview"): Right.READ,
    ("GET", "/api/v1/deliveries"): Right.READ,
    ("GET", "/api/v1/deliveries/{delivery_id}"): Right.READ,
    ("GET", "/api/v1/journeys"): Right.READ,
    ("GET", "/api/v1/journeys/{journey_id}"): Right.READ,
    ("GET", "/api/v1/journeys/{journey_id}/instances"): Right.READ,
    ("GET", "/api/v1/journeys/{journey_id}/stats"): Right.READ,
    ("GET", "/api/v1/journeys/{journey_id}/chain-cuts"): Right.READ,
    ("GET", "/api/v1/journeys/{journey_id}/versions"): Right.READ,
    ("GET", "/api/v1/journeys/{journey_id}/versions/{version}"): Right.READ,
    ("GET", "/api/v1/users/{user_ext_id}/journeys"): Right.READ,
    ("GET", "/docs"): Right.READ,
    ("GET", "/openapi.json"): Right.READ,
    ("GET", "/metrics"): Right.READ,  # and a key of every brand: see api/metrics.py
    # admin: configuration, keys, and anything that makes hookline send a request
    ("POST", "/api/v1/rules"): Right.ADMIN,
    ("POST", "/api/v1/rules/validate"): Right.ADMIN,
    ("PUT", "/api/v1/rules/{rule_id}"): Right.ADMIN,
    ("PATCH", "/api/v1/rules/{rule_id}"): Right.ADMIN,
    ("DELETE", "/api/v1/rules/{rule_id}"): Right.ADMIN,
    ("POST", "/api/v1/journeys"): Right.ADMIN,
    ("POST", "/api/v1/journeys/validate"): Right.ADMIN,
    ("PUT", "/api/v1/journeys/{journey_id}"): Right.ADMIN,
    ("PATCH", "/api/v1/journeys/{journey_id}"): Right.ADMIN,
    ("DELETE", "/api/v1/journeys/{journey_id}"): Right.ADMIN,
    ("POST", "/api/v1/journeys/{journey_id}/rotate-secret"): Right.ADMIN,
    ("POST", "/api/v1/webhooks"): Right.ADMIN,
    ("POST", "/api/v1/webhooks/{webhook_id}/rotate-secret"): Right.ADMIN,
    ("POST", "/api/v1/rules/{rule_id}/rotate-secret"): Right.ADMIN,
    ("PUT", "/api/v1/webhooks/{webhook_id}"): Right.ADMIN,
    ("DELETE", "/api/v1/webhooks/{webhook_id}"): Right.ADMIN,
    ("POST", "/api/v1/webhooks/test"): Right.ADMIN,
    ("POST", "/api/v1/deliveries/{delivery_id}/retry"): Right.ADMIN,
    ("POST", "/api/v1/keys"): Right.ADMIN,
    ("GET", "/api/v1/keys"): Right.ADMIN,
    ("DELETE", "/api/v1/keys/{key_id}"): Right.ADMIN,
    # public
    ("GET", "/healthz"): PUBLIC,
    **{
        (method, path): PUBLIC
        for method in _ECHO_METHODS
        for path in ("/echo-send/{secret}/", "/echo-send/{secret}")
    },
    **{
        (method, path): PUBLIC
        for method in ("GET", "DELETE")
        for path in ("/echo-list/{secret}/", "/echo-list/{secret}")
    },
    ("GET", "/static/swagger/{path}"): PUBLIC,  # Swagger UI's files, no data
}

# Routes only a key that sees every brand may call: a brand-scoped admin could otherwise
# make itself a key without its scope.
EVERY_BRAND: Final = frozenset(
    {("POST", "/api/v1/keys"), ("GET", "/api/v1/keys"), ("DELETE", "/api/v1/keys/{key_id}")}
)


def manages_keys(method: str, template: str | None) -> bool:
    """Whether a request goes to a keys route (HEAD as the GET it stands for)."""
    return ("GET" if method == "HEAD" else method, template) in EVERY_BRAND


_DOING: Final = {
    Right.INGEST: "send events or change a user's state",
    Right.READ: "read",
    Right.ADMIN: "change configuration, manage keys or send requests",
}
_NEEDS: Final = {
    Right.INGEST: "an ingest or admin key",
    Right.READ: "a read or admin key",
    Right.ADMIN: "an admin key",
}


def right_for(method: str, template: str) -> Right | None:
    """The right a route needs (None: public); admin for a route the table does not know."""
    return RIGHTS.get((method, template), Right.ADMIN)


def _walk(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """The app's routes in the router's order, with included routers opened up."""
    for route in routes:
        # An included router is one entry holding its own routes (FastAPI >= 0.16x).
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _walk(inner.routes)
        else:
            yield route


def route_key(route: BaseRoute) -> tuple[frozenset[str] | None, str] | None:
    """A route's methods (None: any, a mount) and the template RIGHTS knows it by."""
    if isinstance(route, Route):  # APIRoute is one
        return frozenset(route.methods or ()), route.path_format
    if isinstance(route, Mount):
        return None, route.path_format
    return None


class RouteRights:
    """Which route of the app a request goes to, found as the router finds it, and its right.

    Built from the app's own routes: the regex that matches a path here is the one the
    router matches it with, so the table of rights and the router cannot disagree about
    which template a path falls under.
    """

    def __init__(self, routes: Iterable[BaseRoute]) -> None:
        self.routes: list[tuple[re.Pattern[str], frozenset[str] | None, str]] = []
        for route in _walk(routes):
            key = route_key(route)
            if key is not None:
                regex: re.Pattern[str] = route.path_regex  # type: ignore[attr-defined]
                self.routes.append((regex, *key))

    def templates(self) -> list[tuple[str, str]]:
        """Every (method, template) of the app; a mount's as GET."""
        found = set()
        for _, methods, template in self.routes:
            for method in methods if methods is not None else ("GET",):
                found.add((method, template))
        return sorted(found)

    def template_of(self, method: str, path: str) -> str | None:
        """The template of the route ``method`` and ``path`` go to, or None."""
        for regex, methods, template in self.routes:
            if (methods is None or method in methods) and regex.match(path):
                return template
        if len(path) > 1 and path.endswith("/"):
            return self.template_of(method, path.rstrip("/"))  # the router redirects there
        return None

    def need_of(self, method: str, path: str) -> tuple[Right | None, str | None]:
        """The right a request needs and the template it matched (admin and None: unknown)."""
        template = self.template_of(method, path)
        if template is None and method == "HEAD":
            # HEAD is GET without the body: Starlette answers it wherever GET is answered.
            method, template = "GET", self.template_of("GET", path)
        if template is None:
            return Right.ADMIN, None
        if method == "HEAD" and (method, template) not in RIGHTS:
            method = "GET"  # a route that answers GET answers HEAD with the same right
        return right_for(method, template), template


def _presented(scope: Scope) -> str:
    """The key a request carries; Unauthorized, saying how to send one, if none."""
    header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
    if not header:
        raise Unauthorized(
            "this route needs an API key: send 'Authorization: Bearer <key>'",
            field="Authorization",
        )
    return presented_key(bytes(header).decode("latin-1"))


SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


def _refuse_other_sites(scope: Scope) -> None:
    """Forbidden if a browser sent this change from another site (cross-site request forgery).

    A browser sends Basic credentials it was given with every request to hookline, a form
    posted from another site's page included, and an open hookline (no keys, loopback)
    needs none at all; only a Bearer key is never sent by itself. Browsers say where a
    request comes from: ``Sec-Fetch-Site`` when they send it (it alone decides, so a proxy
    that rewrites ``Host`` does not matter), else ``Origin``, whose host must be the one the
    request was sent to. Tools such as curl send neither.
    """
    if scope["method"] in SAFE_METHODS or _sends_bearer(scope):
        return
    # Every value counts: a second header must not stand in for the first.
    sites = [
        bytes(v).decode("latin-1").lower() for k, v in scope["headers"] if k == b"sec-fetch-site"
    ]
    origins = [bytes(v).decode("latin-1") for k, v in scope["headers"] if k == b"origin"]
    host = next((bytes(v).decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
    if sites:
        if all(site in {"same-origin", "none"} for site in sites):
            return
        field = "Sec-Fetch-Site"
    elif all(_is_host(origin, host) for origin in origins):
        return
    else:
        field = "Origin"
    raise Forbidden(
        "a change sent by a browser from another site's page is refused (it would be a forged "
        "request); send it from a program, with 'Authorization: Bearer <key>'",
        field=field,
    )


def _sends_bearer(scope: Scope) -> bool:
    header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
    return bytes(header[:7]).lower() == b"bearer "


def _is_host(origin: str, host: str) -> bool:
    """Whether an Origin names the host and port the request was sent to.

    An origin without a host ('null': a sandboxed page, or after a redirect) is never
    hookline's own, not even for a request that names no Host either.
    """
    seen = urlsplit(origin).netloc.lower()
    return bool(seen) and seen == host.lower()


def presented_key(authorization: str) -> str:
    """The key in an Authorization header value: ``Bearer <key>``, or HTTP Basic.

    Basic is for browsers (the docs page) and tools that speak only it: the key is the
    password, or the user name when the password is empty (``curl -u "$KEY:"``).
    """
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() == "basic":
        try:
            # Padding is optional (some tools leave it out); the alphabet is not.
            pair = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
        except ValueError:
            raise Unauthorized(
                "the Authorization header is 'Basic' but not base64 of 'user:key'",
                field="Authorization",
            ) from None
        user, _, password = pair.partition(b":")
        try:
            # Only the key need be text: a browser may send the user name in Latin-1.
            return (password or user).decode()
        except UnicodeDecodeError:
            raise Unauthorized(
                "the key in the Basic credentials is not UTF-8 text", field="Authorization"
            ) from None
    if scheme.lower() == "bearer" and not token:
        # What `-H "Authorization: Bearer $KEY"` sends when $KEY was never set in this shell.
        raise Unauthorized(
            "the Authorization header is 'Bearer' with no key after it (is the shell "
            "variable that should hold the key empty?); send 'Authorization: Bearer <key>'",
            field="Authorization",
        )
    if scheme.lower() != "bearer":
        raise Unauthorized("the Authorization header must be 'Bearer <key>'", field="Authorization")
    return token


def without_api_key(authorization: str) -> str:
    """An Authorization header value as hookline may keep it: its own key masked.

    The echo service keeps what it receives, for anyone who knows its secret to read; a
    browser given a key for the docs page sends it with every request to hookline, a link
    someone else made to their own echo secret included.
    """
    try:
        key = presented_key(authorization)
    except Unauthorized:
        return authorization
    if not key.startswith(KEY_PREFIX):
        return authorization
    return f"{authorization.partition(' ')[0]} {MASK}"


# Pages a browser opens: their 401 also offers Basic, so the browser asks for the key
# (as the password) and sends it with the page's own requests.
BROWSER_PAGES: Final = frozenset({"/docs", "/openapi.json"})


class Gate:
    """Let a request through with the key it carries, or answer 401 / 403 itself."""

    def __init__(self, app: ASGIApp, runtime: Runtime, router: Router) -> None:
        self.app = app
        self.runtime = runtime
        # The middleware stack is built when the app first answers: every route is there.
        self.rights = RouteRights(router.routes)
        # Fixed for the process: read once, not per request.
        self.mode = runtime.settings.auth_mode
        self.host = runtime.settings.host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        need, template = self.rights.need_of(scope["method"], scope["path"])
        if need is not PUBLIC:
            try:
                _refuse_other_sites(scope)
                key = await self._admit(scope, need, template)
            except HooklineError as exc:
                answer = error_response(exc.status, exc.code, exc.detail, exc.field)
                if isinstance(exc, Unauthorized):
                    answer.headers["WWW-Authenticate"] = 'Bearer realm="hookline"'
                    if template in BROWSER_PAGES:
                        answer.headers.append(
                            "WWW-Authenticate", 'Basic realm="hookline", charset="UTF-8"'
                        )
                await answer(scope, receive, send)
                return
            scope.setdefault("state", {})["key"] = key
        await self.app(scope, receive, send)

    async def _admit(self, scope: Scope, need: Right, template: str | None) -> ApiKey:
        ring = self.runtime.keys
        await ring.refresh()  # a time comparison, unless a reload is due
        if not keys_required(self.mode, self.host, ring.made):
            if not any(k == b"authorization" for k, _ in scope["headers"]):
                return OPEN
            # A key sent to an open hookline may have just been made elsewhere (the
            # first admin key, on the data directory): looking it up loads the keys,
            # and from then on they are required.
            with contextlib.suppress(Unauthorized):
                await ring.find(_presented(scope))
            if not keys_required(self.mode, self.host, ring.made):
                return OPEN
        key = await ring.find(_presented(scope))
        if key is None:
            raise Unauthorized(
                "the API key is not valid: unknown or revoked", field="Authorization"
            )
        if not key.can(need):
            raise Forbidden(
                f"this {key.role.value} key may not {_DOING[need]}; that needs {_NEEDS[need]}",
                field="Authorization",
            )
        if not key.all_brands and manages_keys(scope["method"], template):
            raise Forbidden(
                "only an admin key without brands may manage keys", field="Authorization"
            )
        return key


async def sees_everything(request: Request, runtime: Runtime) -> bool:
    """Whether a public route's caller may see data of every brand (read key of all brands).

    True while hookline runs without keys; otherwise only for a valid key, sent as on any
    other route, that may read and is limited to no brand.
    """
    ring = runtime.keys
    await ring.refresh()
    if not keys_required(runtime.settings.auth_mode, runtime.settings.host, ring.made):
        return True
    try:
        key = await ring.find(presented_key(request.headers.get("authorization", "")))
    except Unauthorized:
        return False
    return key is not None and key.all_brands and key.can(Right.READ)


def principal(request: Request) -> ApiKey:
    """The key the request was let in with (``OPEN`` while hookline runs without keys).

    Routes take it as ``KeyDep``; the ingest route calls this directly, as a dependency
    costs more than the whole check.
    """
    key = request.state.key
    assert isinstance(key, ApiKey), "the gate sets the key of every route that is not public"
    return key


KeyDep = Annotated[ApiKey, Depends(principal)]


def check_event_brands(key: ApiKey, events: Sequence[EventInput], *, batch: bool) -> None:
    """Forbidden unless every event carries one of a brand-scoped key's brands."""
    if key.all_brands:
        return
    for i, event in enumerate(events):
        if not key.sees(event.ext_brand_id):
            brand = "no ext_brand_id" if event.ext_brand_id is None else repr(event.ext_brand_id)
            raise Forbidden(
                f"this key may send events of its brands only ({', '.join(key.brands)}), "
                f"and this event has {brand}",
                field=f"[{i}].ext_brand_id" if batch else "ext_brand_id",
            )


def _create_first(settings: Settings) -> str:
    return f"hookline keys create --role admin --data-dir {settings.data_dir}"


def start_problem(settings: Settings, active_keys: int) -> str | None:
    """Why hookline must not start as configured (no keys, reachable by others), or None."""
    exposed = not is_loopback(settings.host)
    if settings.auth_mode is AuthMode.AUTO and active_keys == 0 and exposed:
        return (
            f"there are no API keys, and {settings.host} is not a loopback address: anyone "
            f"who reaches port {settings.port} could use the whole API. Create an admin key "
            f"first with `{_create_first(settings)}` and start again (then send it as "
            "'Authorization: Bearer <key>'), or set HOOKLINE_AUTH=off to run open on purpose"
        )
    return None


def announce(settings: Settings, active_keys: int, keys_made: int | None = None) -> None:
    """Warn at start when the API is open, or closed to everyone.

    ``keys_made`` counts revoked keys too (default: ``active_keys``).
    """
    made = active_keys if keys_made is None else keys_made
    where = f"{settings.host}:{settings.port}"
    mode = settings.auth_mode
    if mode is AuthMode.OFF:
        log.warning(
            "HOOKLINE_AUTH=off: the API is open to anyone who can reach %s; "
            "API keys are not checked",
            where,
        )
    elif mode is AuthMode.AUTO and not keys_required(mode, settings.host, made):
        log.warning(
            "no API keys: the API is open to anyone who can reach %s; create one with `%s` "
            "and every /api/v1 request will need it",
            where,
            _create_first(settings),
        )
    elif active_keys == 0:
        log.warning(
            "no active API keys, and keys are required: every /api/v1 request will be refused "
            "until you create one with `%s`",
            _create_first(settings),
        )


def _document(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, with the bearer scheme and each operation's right."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    schema.setdefault("components", {}).setdefault("securitySchemes", {})["apiKey"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (`hlk_...`) made with `hookline keys create` or "
        "`POST /api/v1/keys`. Without any key, hookline on a loopback address runs open.",
    }
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            need = right_for(method.upper(), path)
            if need is PUBLIC:
                operation["security"] = []
                continue
            operation["security"] = [{"apiKey": []}]
            note = f"Needs an API key with the `{need.value}` right."
            operation["description"] = (operation.get("description", "") + "\n\n" + note).strip()
            responses = operation.setdefault("responses", {})
            responses.setdefault("401", {"description": "No API key, or not a valid one"})
            responses.setdefault("403", {"description": "The API key may not do this"})
    app.openapi_schema = schema
    return schema


def install(app: FastAPI, runtime: Runtime) -> None:
    """Put the gate in front of every request, and the bearer scheme in the OpenAPI document.

    Call it after adding the other middleware: the gate then runs before them, so a
    request without a key is answered before its body is read.
    """
    app.add_middleware(Gate, runtime=runtime, router=app.router)
    app.openapi = lambda: _document(app)  # type: ignore[method-assign]
