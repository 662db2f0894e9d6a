"""/api/v1/journeys: campaign journeys, validated when saved, versioned while active.

Secret header values of inline webhook blocks are shown as ``***`` (and a ``***`` sent back
keeps the stored value); the journey's ``signing_secret``, which its inline blocks sign
with, is shown to admins only (see :func:`hookline.redaction.show_secrets`). A body may
carry the fields only answers set (``id``, ``version``, ``revision``, ...) as read: see
:mod:`hookline.readonly`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from fastapi import Path as FastPath
from pydantic import Field

from hookline.api._etag import IfMatch, precondition, versioned, write
from hookline.api._json import JSON, JSONRoute
from hookline.api.auth import KeyDep
from hookline.api.brands import BrandQuery, may_own, only_visible, require_visible
from hookline.api.deps import RuntimeDep
from hookline.api.models import (
    BrandIn,
    ChainCutList,
    Duration,
    FreeObject,
    InstanceList,
    JourneyList,
    JourneyOut,
    JourneyStats,
    JourneyValidation,
    JourneyVersionList,
    Label,
    _Strict,
)
from hookline.api.users import UserId
from hookline.brands import brand_text
from hookline.errors import Conflict, NotFound, StoreError
from hookline.events import MAX_ID_LENGTH, later_than, now_ms
from hookline.ids import new_id
from hookline.journeys import (
    DEFINITION_KEYS,
    InstanceStatus,
    Journey,
    JourneyStatus,
    keeping_secrets,
    shown_definition,
    successor,
)
from hookline.keys import ApiKey, Right
from hookline.readonly import JOURNEY
from hookline.redaction import show_secrets
from hookline.runtime import Runtime
from hookline.store.journey_sql import JourneyStore

router = APIRouter(prefix="/api/v1/journeys", tags=["journeys"], route_class=JSONRoute)
users_router = APIRouter(prefix="/api/v1/users", tags=["journeys"], route_class=JSONRoute)

Status = Literal["draft", "active", "paused", "stopped", "archived"]
# A version is a 64-bit integer in the database; one past it names none (not a 500).
MAX_VERSION = 2**63 - 1


class JourneyIn(_Strict):
    """A journey: entry, optional control group, goal, exits, and its blocks."""

    read_only = JOURNEY.fields

    name: Label
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

    read_only = JOURNEY.fields

    name: Label | None = None
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


def _owned(key: ApiKey, journey_id: str) -> Callable[[Journey], None]:
    """Another brand's journey is, for a brand-scoped key, one that does not exist."""

    def check(current: Journey) -> None:
        require_visible(key, current.ext_brand_id, f"no journey {journey_id!r}", "journey_id")

    return check


async def _journey(store: JourneyStore, journey_id: str, key: ApiKey) -> Journey:
    """The journey, if ``key`` sees its brand (another brand's is, for it, not there)."""
    journey = await store.get_journey(journey_id)
    if journey is None:
        raise NotFound(f"no journey {journey_id!r}", field="journey_id")
    _owned(key, journey_id)(journey)
    return journey


def shown(journey: Journey, *, admin: bool) -> dict[str, Any]:
    """A journey as answers show it: secret headers masked, the signing secret for admins."""
    answer = journey.as_dict()
    answer.update(shown_definition({k: answer[k] for k in ("blocks",) if k in answer}))
    return show_secrets(answer, admin=admin)  # type: ignore[no-any-return]


def _answer(journey: Journey, key: ApiKey, status_code: int = 200) -> JSON:
    """One journey as ``key`` may see it, with its revision as the ETag."""
    return versioned(shown(journey, admin=key.can(Right.ADMIN)), journey.revision, status_code)


def _from_input(
    body: JourneyIn, journey_id: str, now: int, stored: Journey | None = None
) -> Journey:
    """The journey ``body`` describes; a ``***`` secret header keeps ``stored``'s value.

    A status left out is ``stored``'s: a definition written without one (a file applied
    again, a script that edits the blocks) replaces what the journey does, not whether it
    runs, so it cannot stop or refuse a journey someone has since activated."""
    definition = _definition(body.model_dump())
    status = JourneyStatus(body.status)
    if stored is not None and "status" not in body.model_fields_set:
        status = stored.status
    return Journey(
        id=journey_id,
        name=body.name,
        description=body.description,
        status=status,
        definition=keeping_secrets(definition, stored.definition if stored else None),
        ext_brand_id=body.ext_brand_id,
        created_at=now,
        updated_at=now,
    )


@router.post("", status_code=201, summary="Create a journey", response_model=JourneyOut)
async def create_journey(body: JourneyIn, runtime: RuntimeDep, key: KeyDep) -> JSON:
    may_own(key, body.ext_brand_id)
    await JOURNEY.check_new(body.read_only_sent(), _store(runtime).get_journey, key.sees)
    now = now_ms()
    journey = _from_input(body, new_id("jrn", now), now)
    saved = await runtime.catalog.create_journey(journey, sees=key.sees)
    return _answer(saved, key, status_code=201)


@router.get("", summary="List journeys", response_model=JourneyList)
async def list_journeys(runtime: RuntimeDep, key: KeyDep, status: Status | None = None) -> JSON:
    journeys = only_visible(key, await _store(runtime).list_journeys(), lambda j: j.ext_brand_id)
    if status is not None:
        journeys = [j for j in journeys if j.status.value == status]
    admin = key.can(Right.ADMIN)
    return JSON({"data": [shown(j, admin=admin) for j in journeys]})


@router.get("/{journey_id}", summary="Get a journey", response_model=JourneyOut)
async def get_journey(journey_id: str, runtime: RuntimeDep, key: KeyDep) -> JSON:
    return _answer(await _journey(_store(runtime), journey_id, key), key)


@router.put(
    "/{journey_id}",
    summary="Replace a journey (a new version if it has run)",
    response_model=JourneyOut,
)
async def replace_journey(
    journey_id: str, body: JourneyIn, runtime: RuntimeDep, key: KeyDep, if_match: IfMatch = None
) -> JSON:
    precondition(if_match)  # a malformed If-Match is answered before anything else
    may_own(key, body.ext_brand_id)

    def edit(current: Journey) -> Journey:
        JOURNEY.check(body.read_only_sent(), current.as_dict(), journey_id)
        new = _from_input(body, journey_id, 0, stored=current)
        later = later_than(current.updated_at)
        return replace(new, created_at=current.created_at, updated_at=later)

    saved = await _write(runtime, key, journey_id, if_match, edit)
    return _answer(saved, key)


@router.patch(
    "/{journey_id}",
    summary="Change some fields of a journey (e.g. status)",
    response_model=JourneyOut,
)
async def patch_journey(
    journey_id: str, body: JourneyPatch, runtime: RuntimeDep, key: KeyDep, if_match: IfMatch = None
) -> JSON:
    precondition(if_match)
    given = {k: getattr(body, k) for k in body.model_fields_set}
    if "ext_brand_id" in given:
        may_own(key, given["ext_brand_id"])

    def edit(current: Journey) -> Journey:
        if current.problem is not None:
            # Nothing to change field by field: only replaced (PUT) or deleted, as rules.
            raise Conflict(
                f"{current.problem}; replace it with PUT or delete it", field="journey_id"
            )
        JOURNEY.check(body.read_only_sent(), current.as_dict(), journey_id)
        # Only the fields given change, on the journey as it is now (not as first read).
        definition = dict(current.definition)
        for name in DEFINITION_KEYS:
            if name in given:
                if given[name] is None:
                    definition.pop(name, None)
                else:
                    definition[name] = given[name]
        if "blocks" in given:
            definition = keeping_secrets(definition, current.definition)
        return replace(
            current,
            name=given.get("name") or current.name,
            description=given.get("description", current.description) or "",
            status=JourneyStatus(given.get("status") or current.status.value),
            definition=definition,
            ext_brand_id=given.get("ext_brand_id", current.ext_brand_id),
            updated_at=later_than(current.updated_at),
        )

    saved = await _write(runtime, key, journey_id, if_match, edit)
    return _answer(saved, key)


@router.post(
    "/{journey_id}/rotate-secret",
    summary="New signing secret for the inline webhook blocks; the old one signs for 24 h more",
    response_model=JourneyOut,
)
async def rotate_secret(
    journey_id: str, runtime: RuntimeDep, key: KeyDep, if_match: IfMatch = None
) -> JSON:
    """Both secrets sign every request for 24 hours (two signatures, space-separated), so
    the receiver can switch to the new one without refusing a delivery; then only the new.
    At most 5 replaced secrets sign at once: a sixth rotation within 24 hours is a 409.
    Blocks that use a saved webhook sign with that webhook's secret: rotate it there.
    """
    edit = runtime.catalog.rotate_journey_secret
    return _answer(await _write(runtime, key, journey_id, if_match, edit), key)


async def _write(
    runtime: Runtime,
    key: ApiKey,
    journey_id: str,
    if_match: str | None,
    edit: Callable[[Journey], Journey],
) -> Journey:
    """A change of one journey by ``key``: its brand's journeys, its brand's webhooks."""
    change = partial(runtime.catalog.change_journey, sees=key.sees)
    return await write(change, journey_id, if_match, _owned(key, journey_id), edit)


@router.delete(
    "/{journey_id}", status_code=204, summary="Delete a journey, its instances and its chain cuts"
)
async def delete_journey(
    journey_id: str, runtime: RuntimeDep, key: KeyDep, if_match: IfMatch = None
) -> Response:
    await runtime.catalog.delete_journey(
        journey_id, precondition(if_match), _owned(key, journey_id)
    )
    return Response(status_code=204)


@router.post(
    "/validate",
    summary="Check a journey exactly as a save would, without saving it",
    response_model=JourneyValidation,
)
async def validate_journey(
    body: JourneyIn,
    runtime: RuntimeDep,
    key: KeyDep,
    compare_to: str | None = Query(
        default=None,
        description="A stored journey's id: also check that it may become this one "
        "(a journey that has run cannot go back to draft).",
    ),
) -> JSON:
    """The journey as it would be stored, or the error (422 naming the block and field).

    ``hookline journeys apply`` checks every journey of a file here before it writes any,
    and compares this answer with the stored journey to report what would change.
    """
    may_own(key, body.ext_brand_id)
    current = None
    if compare_to is not None:
        current = await _store(runtime).get_journey(compare_to)
        if current is not None and not key.sees(current.ext_brand_id):
            current = None
    if current is not None:
        JOURNEY.check(body.read_only_sent(), current.as_dict(), current.id)  # as a PUT would
    else:
        await JOURNEY.check_new(body.read_only_sent(), _store(runtime).get_journey, key.sees)
    journey = _from_input(body, "jrn_validate", 0, stored=current)
    await runtime.catalog.check_journey(journey, key.sees, current)
    if current is not None:
        successor(current, journey)
    shown_journey = shown(journey, admin=key.can(Right.ADMIN))
    stored = JOURNEY.strip(shown_journey)  # a validated journey has no id, version, ...
    return JSON({"valid": True, "journey": stored})


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
    """With ``user_ext_id``, the user is (``ext_brand_id``, user): absent, the one of no brand,
    or for a journey of a brand, the one of its brand (no other user enters it)."""
    store = _store(runtime)
    journey = await _journey(store, journey_id, key)
    if ext_brand_id is None and journey.ext_brand_id is not None:
        ext_brand_id = brand_text(journey.ext_brand_id)
    # Users of another brand may be inside (a journey whose brand was changed while they
    # were): they are not this key's to see, as at /users/{id}/journeys.
    missing = f"no users of brand {ext_brand_id!r} in journey {journey_id!r}"
    require_visible(key, ext_brand_id, missing, "ext_brand_id")
    found = await store.list_instances(
        journey_id=journey_id,
        user_ext_id=user_ext_id,
        ext_brand_id=ext_brand_id,
        status=status,
        limit=limit,
    )
    return JSON({"data": [i.as_dict() for i in found]})


@router.get(
    "/{journey_id}/versions",
    summary="Every kept version of a journey, with the users inside who walk each",
    response_model=JourneyVersionList,
)
async def list_versions(journey_id: str, runtime: RuntimeDep, key: KeyDep) -> JSON:
    store = _store(runtime)
    await _journey(store, journey_id, key)
    return JSON({"data": await store.list_versions(journey_id)})


@router.get(
    "/{journey_id}/versions/{version}",
    summary="A journey as it was at one version (what users who entered it walk)",
    response_model=JourneyOut,
)
async def get_version(
    journey_id: str,
    version: Annotated[int, FastPath(ge=1, le=MAX_VERSION)],
    runtime: RuntimeDep,
    key: KeyDep,
) -> JSON:
    """The journey's name, status and secret as they are now; its definition of ``version``."""
    store = _store(runtime)
    await _journey(store, journey_id, key)
    found = await store.get_version(journey_id, version)
    if found is None:
        raise NotFound(f"journey {journey_id!r} has no version {version}", field="version")
    return JSON(shown(found, admin=key.can(Right.ADMIN)))


@router.get(
    "/{journey_id}/stats",
    summary="Entered, active, finished, converted, per block, chain cuts",
    response_model=JourneyStats,
)
async def journey_stats(journey_id: str, runtime: RuntimeDep, key: KeyDep) -> JSON:
    store = _store(runtime)
    journey = await _journey(store, journey_id, key)
    stats = await store.stats(journey_id)
    # Every block of the journey, zeros for those nobody reached yet (the other branch).
    counted = stats["blocks"]
    blocks = journey.definition.get("blocks")
    names = list(blocks) if isinstance(blocks, dict) else []
    zero = {"entered": 0, "passed": 0, "waiting": 0}
    listed = {name: counted.get(name, zero) for name in names}
    stats["blocks"] = {**listed, **{k: v for k, v in counted.items() if k not in listed}}
    return JSON({"journey_id": journey.id, "version": journey.version, **stats})


@router.get(
    "/{journey_id}/chain-cuts",
    summary="Events the journey did not emit because their chain was too deep",
    response_model=ChainCutList,
)
async def list_chain_cuts(
    journey_id: str,
    runtime: RuntimeDep,
    key: KeyDep,
    limit: int = Query(default=100, ge=1, le=1000),
) -> JSON:
    """Journeys that trigger each other stop at depth 8 or 1,000 events: each event not
    emitted is kept."""
    store = _store(runtime)
    await _journey(store, journey_id, key)
    found = await store.list_chain_cuts(journey_id, limit=limit)
    return JSON({"data": [c.as_dict() for c in found]})


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
