"""/api/v1/journeys: campaign journeys, validated when saved, versioned while active.

Secret header values of inline webhook blocks are shown as ``***`` (and a ``***`` sent back
keeps the stored value); the journey's ``signing_secret``, which its inline blocks sign
with, is shown to admins only (see :func:`hookline.redaction.show_secrets`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import Field

from hookline.api._json import JSON, JSONRoute
from hookline.api.auth import KeyDep
from hookline.api.brands import BrandQuery, may_own, only_visible, require_visible
from hookline.api.deps import RuntimeDep
from hookline.api.models import (
    BrandIn,
    FreeObject,
    InstanceList,
    JourneyList,
    JourneyOut,
    JourneyStats,
    _Strict,
)
from hookline.api.users import UserId
from hookline.errors import Conflict, NotFound, StoreError
from hookline.events import MAX_ID_LENGTH, later_than, now_ms
from hookline.ids import new_id
from hookline.journeys import (
    DEFINITION_KEYS,
    InstanceStatus,
    Journey,
    JourneyStatus,
    compile_journey,
    keeping_secrets,
    shown_definition,
    webhook_ids_of,
)
from hookline.keys import ApiKey, Right
from hookline.redaction import show_secrets
from hookline.rules import SavedWebhook
from hookline.runtime import Runtime
from hookline.signing import Signing
from hookline.store.journey_sql import JourneyStore

router = APIRouter(prefix="/api/v1/journeys", tags=["journeys"], route_class=JSONRoute)
users_router = APIRouter(prefix="/api/v1/users", tags=["journeys"], route_class=JSONRoute)

Status = Literal["draft", "active", "paused", "stopped", "archived"]
Duration = str | float


class JourneyIn(_Strict):
    """A journey: entry, optional control group, goal, exits, and its blocks."""

    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    status: Status = "draft"
    ext_brand_id: BrandIn = None
    entry: FreeObject
    control_group: FreeObject | None = None
    goal: FreeObject | None = None
    exit_on: list[FreeObject] | None = None
    max_duration: Duration | None = None
    start: str = Field(min_length=1, max_length=64)
    blocks: FreeObject


class JourneyPatch(_Strict):
    """Change some fields of a journey (often just ``status``); the others stay."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    status: Status | None = None
    ext_brand_id: BrandIn = None
    entry: FreeObject | None = None
    control_group: FreeObject | None = None
    goal: FreeObject | None = None
    exit_on: list[FreeObject] | None = None
    max_duration: Duration | None = None
    start: str | None = Field(default=None, min_length=1, max_length=64)
    blocks: FreeObject | None = None


def _store(runtime: Runtime) -> JourneyStore:
    if runtime.journeys is None:
        raise StoreError("journeys are not available on this store")
    return runtime.journeys


def _definition(data: dict[str, Any]) -> dict[str, Any]:
    return {k: data[k] for k in DEFINITION_KEYS if data.get(k) is not None}


async def _journey(store: JourneyStore, journey_id: str, key: ApiKey) -> Journey:
    """The journey, if ``key`` sees its brand (another brand's is, for it, not there)."""
    journey = await store.get_journey(journey_id)
    missing = f"no journey {journey_id!r}"
    if journey is None:
        raise NotFound(missing, field="journey_id")
    require_visible(key, journey.ext_brand_id, missing, "journey_id")
    return journey


def _usable(
    key: ApiKey, journey: Journey, current: Journey | None
) -> Callable[[SavedWebhook], bool]:
    """The saved webhooks ``key`` may name in ``journey``'s blocks.

    Those it sees; another brand's is, for it, one that does not exist (the same 422 as an
    unknown id). Blocks left as they were keep the webhooks they use, so a brand's admin can
    pause a journey that an admin of every brand pointed at a webhook of no brand.
    """
    kept: frozenset[str] = frozenset()
    if current is not None and current.definition.get("blocks") == journey.definition.get("blocks"):
        kept = webhook_ids_of(current.definition)
    return lambda saved: saved.id in kept or key.sees(saved.ext_brand_id)


async def _save(
    runtime: Runtime, key: ApiKey, journey: Journey, current: Journey | None
) -> Journey:
    """Compile, store, index; users leave a journey that is stopped or archived."""
    engine = runtime.engine
    store = _store(runtime)
    if (
        current is not None
        and current.status is not JourneyStatus.DRAFT
        and journey.status is JourneyStatus.DRAFT
    ):
        raise Conflict(
            "a journey that has run cannot go back to draft; pause or stop it", field="status"
        )
    async with engine.rules_lock:
        if journey.signing is None:  # kept across versions and changes; new when created
            stored = await store.get_journey(journey.id) if current is not None else None
            signing = stored.signing if stored is not None else None
            journey = replace(journey, signing=signing or Signing.new())
        usable = _usable(key, journey, current)
        webhooks = {w.id: w for w in await runtime.store.list_webhooks() if usable(w)}
        compiled = compile_journey(journey, webhooks)
        saved = await store.save_journey(journey, create=current is None)
        if saved.status is JourneyStatus.DRAFT:
            engine.journeys.remove(saved.id)
        else:
            engine.journeys.put(compiled)
        runtime.catalog.keyring.put(saved.id, saved.signing)
    leaving = (JourneyStatus.STOPPED, JourneyStatus.ARCHIVED)
    if saved.status in leaving and (current is None or current.status not in leaving):
        await engine.stop_journey(saved.id)
    return saved


def shown(journey: Journey, *, admin: bool) -> dict[str, Any]:
    """A journey as answers show it: secret headers masked, the signing secret for admins."""
    answer = journey.as_dict()
    answer.update(shown_definition({k: answer[k] for k in ("blocks",) if k in answer}))
    return show_secrets(answer, admin=admin)  # type: ignore[no-any-return]


def _next_version(current: Journey, definition: dict[str, Any]) -> int:
    """A changed definition of a journey that has run is a new version; a draft is edited."""
    if dict(current.definition) == definition or current.status is JourneyStatus.DRAFT:
        return current.version
    return current.version + 1


@router.post("", status_code=201, summary="Create a journey", response_model=JourneyOut)
async def create_journey(body: JourneyIn, runtime: RuntimeDep, key: KeyDep) -> JSON:
    may_own(key, body.ext_brand_id)
    now = now_ms()
    data = body.model_dump()
    journey = Journey(
        id=new_id("jrn", now),
        name=body.name,
        description=body.description,
        status=JourneyStatus(body.status),
        definition=keeping_secrets(_definition(data), None),
        ext_brand_id=body.ext_brand_id,
        created_at=now,
        updated_at=now,
    )
    saved = await _save(runtime, key, journey, None)
    return JSON(shown(saved, admin=True), status_code=201)


@router.get("", summary="List journeys", response_model=JourneyList)
async def list_journeys(runtime: RuntimeDep, key: KeyDep, status: Status | None = None) -> JSON:
    journeys = only_visible(key, await _store(runtime).list_journeys(), lambda j: j.ext_brand_id)
    if status is not None:
        journeys = [j for j in journeys if j.status.value == status]
    admin = key.can(Right.ADMIN)
    return JSON({"data": [shown(j, admin=admin) for j in journeys]})


@router.get("/{journey_id}", summary="Get a journey", response_model=JourneyOut)
async def get_journey(journey_id: str, runtime: RuntimeDep, key: KeyDep) -> JSON:
    journey = await _journey(_store(runtime), journey_id, key)
    return JSON(shown(journey, admin=key.can(Right.ADMIN)))


@router.put(
    "/{journey_id}",
    summary="Replace a journey (a new version if it has run)",
    response_model=JourneyOut,
)
async def replace_journey(
    journey_id: str, body: JourneyIn, runtime: RuntimeDep, key: KeyDep
) -> JSON:
    current = await _journey(_store(runtime), journey_id, key)
    may_own(key, body.ext_brand_id)
    definition = keeping_secrets(_definition(body.model_dump()), current.definition)
    journey = Journey(
        id=journey_id,
        name=body.name,
        description=body.description,
        status=JourneyStatus(body.status),
        definition=definition,
        ext_brand_id=body.ext_brand_id,
        created_at=current.created_at,
        updated_at=later_than(current.updated_at),
        version=_next_version(current, definition),
    )
    return JSON(shown(await _save(runtime, key, journey, current), admin=True))


@router.patch(
    "/{journey_id}",
    summary="Change some fields of a journey (e.g. status)",
    response_model=JourneyOut,
)
async def patch_journey(
    journey_id: str, body: JourneyPatch, runtime: RuntimeDep, key: KeyDep
) -> JSON:
    current = await _journey(_store(runtime), journey_id, key)
    given = {k: getattr(body, k) for k in body.model_fields_set}
    if "ext_brand_id" in given:
        may_own(key, given["ext_brand_id"])
    definition = dict(current.definition)
    for name in DEFINITION_KEYS:
        if name in given:
            if given[name] is None:
                definition.pop(name, None)
            else:
                definition[name] = given[name]
    if "blocks" in given:
        definition = keeping_secrets(definition, current.definition)
    status = given.get("status") or current.status.value
    journey = Journey(
        id=journey_id,
        name=given.get("name") or current.name,
        description=given.get("description", current.description) or "",
        status=JourneyStatus(status),
        definition=definition,
        ext_brand_id=given.get("ext_brand_id", current.ext_brand_id),
        created_at=current.created_at,
        updated_at=later_than(current.updated_at),
        version=_next_version(current, definition),
    )
    return JSON(shown(await _save(runtime, key, journey, current), admin=True))


@router.post(
    "/{journey_id}/rotate-secret",
    summary="New signing secret for the inline webhook blocks; the old one signs for 24 h more",
    response_model=JourneyOut,
)
async def rotate_secret(journey_id: str, runtime: RuntimeDep, key: KeyDep) -> JSON:
    """Both secrets sign every request for 24 hours (two signatures, space-separated), so
    the receiver can switch to the new one without refusing a delivery; then only the new.
    Blocks that use a saved webhook sign with that webhook's secret: rotate it there.
    """
    current = await _journey(_store(runtime), journey_id, key)
    keyring = runtime.catalog.keyring
    signing = current.signing or Signing.new()
    rotated = replace(
        current,
        signing=signing.rotated(keyring.clock()),
        updated_at=later_than(current.updated_at),
    )
    return JSON(shown(await _save(runtime, key, rotated, current), admin=True))


@router.delete("/{journey_id}", status_code=204, summary="Delete a journey and its instances")
async def delete_journey(journey_id: str, runtime: RuntimeDep, key: KeyDep) -> Response:
    store = _store(runtime)
    await _journey(store, journey_id, key)
    await runtime.engine.stop_journey(journey_id)  # campaign_finished for those inside
    async with runtime.engine.rules_lock:
        await store.delete_journey(journey_id)
        runtime.engine.journeys.remove(journey_id)
        runtime.catalog.keyring.remove(journey_id)
    return Response(status_code=204)


@router.get(
    "/{journey_id}/instances", summary="Where users are in a journey", response_model=InstanceList
)
async def list_instances(
    journey_id: str,
    runtime: RuntimeDep,
    key: KeyDep,
    user_ext_id: str | None = Query(default=None, max_length=MAX_ID_LENGTH),
    ext_brand_id: BrandQuery = None,
    status: InstanceStatus | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
) -> JSON:
    """With ``user_ext_id``, the user is (``ext_brand_id``, user): absent, the one of no brand."""
    store = _store(runtime)
    await _journey(store, journey_id, key)
    found = await store.list_instances(
        journey_id=journey_id,
        user_ext_id=user_ext_id,
        ext_brand_id=ext_brand_id,
        status=status,
        limit=limit,
    )
    return JSON({"data": [i.as_dict() for i in found]})


@router.get(
    "/{journey_id}/stats",
    summary="Entered, active, finished, converted, per block",
    response_model=JourneyStats,
)
async def journey_stats(journey_id: str, runtime: RuntimeDep, key: KeyDep) -> JSON:
    store = _store(runtime)
    journey = await _journey(store, journey_id, key)
    stats = await store.stats(journey_id)
    return JSON({"journey_id": journey.id, "version": journey.version, **stats})


@users_router.get(
    "/{user_ext_id:path}/journeys",
    summary="The journeys a user is or was in",
    response_model=InstanceList,
)
async def user_journeys(
    user_ext_id: UserId,
    runtime: RuntimeDep,
    key: KeyDep,
    ext_brand_id: BrandQuery = None,
    status: InstanceStatus | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
) -> JSON:
    """The user is (``ext_brand_id``, ``user_ext_id``); absent, the user of no brand."""
    missing = f"no user {user_ext_id!r}"
    require_visible(key, ext_brand_id, missing, "user_ext_id")
    found = await _store(runtime).list_instances(
        user_ext_id=user_ext_id, ext_brand_id=ext_brand_id, status=status, limit=limit
    )
    return JSON({"data": [i.as_dict() for i in found]})
