"""JSON responses and request bodies through orjson."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from hookline.errors import HooklineError, PayloadTooLarge


class JSON(Response):
    """A JSON response serialised by orjson (fast, and strict about what is JSON)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class MalformedJSON(HooklineError):
    """The body is not valid JSON."""

    code = "malformed_json"
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
    """Parse with a message that says where the JSON broke."""
    if not body.strip():
        raise MalformedJSON("the body is empty; send a JSON document", field="body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedJSON(f"the body is not valid JSON: {exc}", field="body") from None
