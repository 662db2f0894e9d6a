"""JSON responses and request bodies through orjson: one parse path for every JSON body."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable, Coroutine
from typing import Any, Final

import orjson
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hookline.errors import HooklineError, InvalidInput, PayloadTooLarge, UnsupportedMediaType
from hookline.values import MAX_DEPTH, MAX_INT, check_json


class JSON(JSONResponse):
    """A JSON response serialised by orjson (fast, and strict about what is JSON).

    A JSONResponse, so FastAPI documents a route's ``response_model`` as its JSON answer.
    """

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class MalformedJSON(HooklineError):
    """The body is not valid JSON."""

    code = "malformed_json"
    status = 400


class MissingBody(HooklineError):
    """A JSON body is required."""

    code = "missing_body"
    status = 400


# Read (and drop) up to this much of an oversized body so the client, still sending,
# gets our 413 instead of a reset connection; beyond it we just close.
# A client that declared a large body but does not send it gets the 413 after DRAIN_SECONDS.
DRAIN_LIMIT = 32 * 1024 * 1024
DRAIN_SECONDS = 2.0


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 once it passes ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    stream = request.stream()
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            # Keep reading the same stream (a second stream() would raise), within bounds.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DRAIN_SECONDS):
                    async for rest in stream:
                        size += len(rest)
                        if size >= DRAIN_LIMIT:
                            break
            raise PayloadTooLarge(f"the body is larger than {limit} bytes", field="body")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes) -> Any:
    """Parse a request body; what hookline cannot keep exactly is refused naming its field.

    orjson reads the body. It refuses NaN, Infinity and lone surrogates as malformed and reads
    an integer beyond 64 bits as an approximate float; JSON's grammar allows all of them, so
    then the body is read again exactly and the value is refused with a 422 that names where
    it is (``[3].payload.n``) rather than a 400 or a silently changed number.
    """
    if not body.strip():
        # As FastAPI's routes answer a body that is not there: one code for every route.
        raise MissingBody("a JSON body is required", field="body")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        _refuse_inexact(body)
        raise MalformedJSON(f"the body is not valid JSON: {exc}", field="body") from None
    if _may_hold_a_long_integer(body) and _holds_a_huge_float(value):
        _refuse_inexact(body)
    return value


# Every integer orjson cannot read exactly (below -2**63 or above 2**64-1) has 19 digits or
# more, and comes out as a float of that size. Mapping digits to '0' and finding 19 in a row
# costs a fraction of the parse (a regex scan for the run costs four times the parse); only
# then is the value searched for such a float, as ids of 19+ digits in strings are common.
_DIGITS_ONLY: Final = bytes(48 if 48 <= i <= 57 else 32 for i in range(256))
_LONG_RUN: Final = b"0" * 19
_HUGE: Final = 2.0**63


def _may_hold_a_long_integer(body: bytes) -> bool:
    return body.translate(_DIGITS_ONLY).find(_LONG_RUN) >= 0


def _holds_a_huge_float(value: Any) -> bool:
    stack = [value]  # not recursive: orjson reads up to 1024 levels
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif kind is float and not -_HUGE < item < _HUGE:
            return True
    return False


def _exact_int(digits: str) -> int:
    # Past 40 digits the value is out of range whatever it is; int() would also refuse one of
    # more than 4300 digits with a ValueError.
    return int(digits) if len(digits) <= 40 else MAX_INT + 1


def _refuse_inexact(body: bytes) -> None:
    """Raise InvalidInput if the body is JSON holding a value hookline cannot keep exactly."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return
    try:
        # Python's parser keeps integers exact, NaN and Infinity as floats and lone
        # surrogates as they are: check_json then finds them with their path.
        value = json.loads(text, parse_int=_exact_int)
    except RecursionError:
        raise InvalidInput(
            f"objects and arrays nest deeper than {MAX_DEPTH} levels; flatten the data",
            field=_deep_member(text),
        ) from None
    except ValueError:
        return  # not JSON at all: the caller reports orjson's message
    try:
        check_json(value, "", max_depth=None)
    except InvalidInput as exc:
        exc.field = exc.field or "body"
        raise


_TOKEN: Final = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]')


def _deep_member(text: str) -> str:
    """The top-level member (``[3].payload`` in a batch, else ``payload``) that nests too deep.

    Only used on documents too deep for Python's parser, so it scans tokens, not values.
    """
    path: list[str | int] = []  # the position in each open object or array
    expect_key = False
    for match in _TOKEN.finditer(text):
        token = match[0]
        if token[0] == '"':
            if expect_key:
                path[-1] = json.loads(token)
                expect_key = False
        elif token in "{[":
            if len(path) == MAX_DEPTH:
                break
            path.append(0 if token == "[" else "")
            expect_key = token == "{"
        elif token in "}]":
            if path:
                path.pop()
            expect_key = False
        elif path and isinstance(path[-1], int):
            path[-1] += 1
        else:
            expect_key = True
    else:
        return "body"
    top = path[:2] if path and isinstance(path[0], int) else path[:1]
    field = ""
    for part in top:
        field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else part)
    # A key may hold a lone surrogate: written escaped, the answer stays UTF-8.
    return field.encode("utf-8", "backslashreplace").decode() or "body"


_UNREAD: Final = object()


class _ParsedRequest(Request):
    """A request whose JSON body is read by :func:`parse_json`."""

    parsed: Any = _UNREAD

    async def json(self) -> Any:
        if self.parsed is _UNREAD:
            self.parsed = parse_json(await self.body())
        return self.parsed


def is_json(content_type: str | None) -> bool:
    """``application/json`` or any ``application/*+json``, parameters aside."""
    if not content_type:
        return False
    main, _, sub = content_type.partition(";")[0].strip().lower().partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


def require_json(content_type: str | None) -> None:
    """415 unless the body is declared JSON: every JSON route asks for the same header.

    A missing Content-Type is refused too, not guessed: one rule for every route, and what
    a browser may send across sites without asking first (forms, text/plain) never passes.
    """
    if not is_json(content_type):
        got = f"got {content_type!r}" if content_type else "no Content-Type was sent"
        raise UnsupportedMediaType(
            f"send JSON with Content-Type: application/json ({got})", field="Content-Type"
        )


async def read_json(request: Request, limit: int) -> tuple[Any, int]:
    """A JSON body through the one parse path, and its size in bytes."""
    body = await read_body(request, limit)
    if body:
        require_json(request.headers.get("content-type"))
    return parse_json(body), len(body)


class JSONRoute(APIRoute):
    """A route whose JSON body goes through :func:`parse_json`, like the events route's.

    FastAPI would parse it with Python's json module, which accepts NaN, Infinity, integers
    of any size and lone surrogates; the body is parsed here first and FastAPI gets the value.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        if self.body_field is None:
            return handle

        async def parse_then_handle(request: Request) -> Response:
            parsed = _ParsedRequest(request.scope, request.receive)
            body = await parsed.body()
            if body:
                require_json(parsed.headers.get("content-type"))
                await parsed.json()  # here, its errors reach hookline's handlers as they are
            return await handle(parsed)

        return parse_then_handle
