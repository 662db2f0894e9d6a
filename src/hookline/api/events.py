"""/api/v1/events: the front door of the hot path. 202 only after the commit.

``POST /api/v1/events`` is answered by :class:`IngestPath`, an ASGI layer in front of
FastAPI's routing: one event per request paid more for routing and dependency injection
than for its own validation. The gate, the body limit and the access log still run around
it, errors keep their ``{code, detail, field}`` shape, and the route below stays, so the
OpenAPI document describes it as before.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from hookline.api._json import JSON, read_json
from hookline.api.auth import KeyDep, check_event_brands, principal
from hookline.api.brands import require_visible
from hookline.api.deps import RuntimeDep
from hookline.api.errors import error_response
from hookline.api.models import EventOut, EventsAccepted
from hookline.errors import HooklineError, NotFound
from hookline.events import parse_events
from hookline.runtime import Runtime

log = logging.getLogger("hookline.api")
PATH = "/api/v1/events"
router = APIRouter(prefix=PATH, tags=["events"])

_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["event_type", "user_ext_id"],
    "properties": {
        "eid": {"type": "string", "description": "Your id; the same eid is processed once."},
        "event_type": {"type": "string", "example": "minigame_spin_issued"},
        "user_ext_id": {"type": "string", "example": "user-42"},
        "event_date": {"type": "integer", "description": "Milliseconds since the epoch."},
        "ext_brand_id": {"type": ["string", "integer"]},
        "payload": {
            "type": "object",
            "example": {"saw_template_id": 12, "minigame_spins_count": 3},
        },
    },
}


@router.post(
    "",
    status_code=202,
    summary="Send one event or an array of up to 1,000",
    # Documentation only: the answer is built by hand, never validated on this hot path.
    response_model=EventsAccepted,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"oneOf": [_EVENT_SCHEMA, {"type": "array", "items": _EVENT_SCHEMA}]}
                }
            },
        }
    },
)
async def post_events(request: Request, runtime: RuntimeDep) -> JSON:
    """Accepted events are committed, with their state changes and deliveries, before 202."""
    return await accept_events(request, runtime)


async def accept_events(request: Request, runtime: Runtime) -> JSON:
    """Parse, check the key's brands, commit; the 202 answer."""
    settings = runtime.settings
    data, size = await read_json(request, settings.max_request_bytes)
    events = parse_events(
        data,
        max_events=settings.max_batch_events,
        max_event_bytes=settings.max_event_bytes,
        body_bytes=size,
    )
    check_event_brands(principal(request), events, batch=isinstance(data, list))
    accepted = await runtime.engine.submit(events)
    return JSON(
        {
            "accepted": len(accepted),
            "duplicates": sum(a.duplicate for a in accepted),
            "events": accepted,  # orjson writes the dataclasses field by field
        },
        status_code=202,
    )


@router.get("/{event_id}", summary="Get a stored event", response_model=EventOut)
async def get_event(event_id: str, runtime: RuntimeDep, key: KeyDep) -> JSON:
    event = await runtime.store.get_event(event_id)
    if event is None:
        raise NotFound(f"no event {event_id!r}", field="event_id")
    require_visible(key, event.ext_brand_id, f"no event {event_id!r}", "event_id")
    return JSON(event.as_dict())


class IngestPath:
    """Answers ``POST /api/v1/events`` itself; every other request goes on to the app."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            answer = await accept_events(Request(scope, receive), self.runtime)
        except HooklineError as exc:
            if exc.status >= 500:
                log.error("%s: %s", exc.code, exc.detail)
            answer = error_response(exc.status, exc.code, exc.detail, exc.field)
        except Exception as exc:  # the app's own handler would say the same
            log.exception("unexpected error")
            answer = error_response(
                500, "internal_error", f"hookline hit a bug: {exc.__class__.__name__}"
            )
        await answer(scope, receive, send)
