"""One log line per request: method, path, status and duration; nothing a secret could hide in.

Bodies, the query string and headers (``Authorization`` among them) are never logged, and
an echo secret in a path is masked. uvicorn's own access log is off, so this is the one
line per request.
"""

from __future__ import annotations

import logging
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hookline.keys import KEY_PREFIX

log = logging.getLogger("hookline.access")

# The echo service's secret is the credential a path carries by design.
_ECHO_PREFIXES = ("/echo-send/", "/echo-list/")
# And an API key pasted where an id goes (`hookline keys revoke hlk_...` for a leaked key).
_API_KEY = re.compile(re.escape(KEY_PREFIX) + r"[^/]*")


def loggable_path(path: str) -> str:
    """The path with an echo secret masked (``/echo-send/***/``), and any API key."""
    if KEY_PREFIX in path:
        path = _API_KEY.sub(f"{KEY_PREFIX}***", path)
    if path.startswith(_ECHO_PREFIXES):
        prefix = path[: path.index("/", 1) + 1]
        rest = path[len(prefix) :]
        tail = rest[rest.index("/") :] if "/" in rest else ""
        return f"{prefix}***{tail}"
    return path


class AccessLog:
    """A pure ASGI middleware, the cheapest place to time a whole request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app fails before answering

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            log.info(
                "%s %s %d %.1f ms",
                scope["method"],
                loggable_path(scope["path"]),
                status,
                (time.perf_counter() - started) * 1000,
            )
