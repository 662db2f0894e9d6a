"""A request-size guard in front of every route (ASGI middleware, no buffering)."""

from __future__ import annotations

import asyncio
import contextlib

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hookline.api._json import DRAIN_LIMIT, DRAIN_SECONDS, JSON
from hookline.errors import PayloadTooLarge


class BodyLimit:
    """Refuse bodies over ``limit`` bytes with 413, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                if int(value) <= DRAIN_LIMIT:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(DRAIN_SECONDS):
                            await _drain(receive)
                response = JSON(
                    PayloadTooLarge(
                        f"the request body is larger than {self.limit} bytes", field="body"
                    ).as_dict(),
                    status_code=413,
                    headers={"connection": "close"},
                )
                await response(scope, receive, send)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # Raised inside the app, so its error handler answers 413 as JSON.
                    raise PayloadTooLarge(
                        f"the request body is larger than {self.limit} bytes", field="body"
                    )
            return message

        await self.app(scope, limited, send)


async def _drain(receive: Receive) -> None:
    """Consume the request body so the 413 reaches a client that is still sending."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
