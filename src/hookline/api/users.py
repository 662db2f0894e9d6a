"""/api/v1/users/{user_ext_id}/state: read and merge-patch a user's state.

A user_ext_id is the platform's, so it may hold anything: ``/``, spaces, ``%``, ``..`` or
non-ASCII text. Clients percent-encode it (``a%2Fb``); the server decodes the path before
routing, so the id is matched as a path (up to the last ``/state``), not as one segment.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from hookline.api._json import JSON, read_json
from hookline.api.auth import KeyDep
from hookline.api.brands import BrandQuery, require_visible
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


def _missing(user_ext_id: str, ext_brand_id: str | None) -> str:
    missing = f"no state for user {user_ext_id!r}"
    if ext_brand_id is not None:
        missing += f" of brand {ext_brand_id!r}"
    return missing


@router.get("/{user_ext_id:path}/state", summary="Read a user's state", response_model=UserState)
async def get_state(
    user_ext_id: UserId, runtime: RuntimeDep, key: KeyDep, ext_brand_id: BrandQuery = None
) -> JSON:
    missing = _missing(user_ext_id, ext_brand_id)
    require_visible(key, ext_brand_id, missing, "user_ext_id")
    state = await runtime.store.get_state(user_ext_id, ext_brand_id)
    if state is None:
        raise NotFound(missing, field="user_ext_id")
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
async def patch_state(
    user_ext_id: UserId,
    request: Request,
    runtime: RuntimeDep,
    key: KeyDep,
    ext_brand_id: BrandQuery = None,
) -> JSON:
    # Another brand's user is not there for this key, as for a read (before the body is
    # read); 404 whether or not it exists, so the answer does not tell.
    require_visible(key, ext_brand_id, _missing(user_ext_id, ext_brand_id), "user_ext_id")
    data, _ = await read_json(request, runtime.settings.max_event_bytes)
    patch = check_patch(data)
    return JSON(await runtime.engine.patch_state(user_ext_id, patch, ext_brand_id))
