"""/api/v1/users/{user_ext_id}/state: read and merge-patch a user's state.

A user_ext_id is the platform's, so it may hold anything: ``/``, spaces, ``%``, ``..`` or
non-ASCII text. Clients percent-encode it (``a%2Fb``); the server decodes the path before
routing, so the id is matched as a path (up to the last ``/state``), not as one segment.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from hookline.api._json import JSON, read_json
from hookline.api.deps import RuntimeDep
from hookline.api.models import UserState
from hookline.errors import NotFound
from hookline.events import MAX_ID_LENGTH
from hookline.state import check_patch

router = APIRouter(prefix="/api/v1/users", tags=["users"])

# The same limit as user_ext_id in events: a state no event could reach is refused.
UserId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        description="Percent-encoded: a/b is a%2Fb, an id of two dots is %2E%2E",
    ),
]


@router.get("/{user_ext_id:path}/state", summary="Read a user's state", response_model=UserState)
async def get_state(user_ext_id: UserId, runtime: RuntimeDep) -> JSON:
    state = await runtime.store.get_state(user_ext_id)
    if state is None:
        raise NotFound(f"no state for user {user_ext_id!r}", field="user_ext_id")
    return JSON(state)


_PATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object", "example": {"ach_level_current": "gold"}}
            }
        },
    }
}


@router.patch(
    "/{user_ext_id:path}/state",
    summary="Merge into a user's state (JSON Merge Patch: null removes a key)",
    openapi_extra=_PATCH_BODY,
    response_model=UserState,
)
async def patch_state(user_ext_id: UserId, request: Request, runtime: RuntimeDep) -> JSON:
    data, _ = await read_json(request, runtime.settings.max_event_bytes)
    patch = check_patch(data)
    return JSON(await runtime.engine.patch_state(user_ext_id, patch))
