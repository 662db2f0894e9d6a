"""/api/v1/deliveries: every delivery and every attempt, filterable and retryable."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from hookline.api._json import JSON
from hookline.api.auth import KeyDep
from hookline.api.brands import BrandQuery, brand_filter, require_visible
from hookline.api.deps import RuntimeDep
from hookline.api.models import DeliveryDetail, DeliveryList, DeliveryOut
from hookline.deliveries import Delivery, DeliveryStatus
from hookline.errors import Conflict, NotFound
from hookline.events import MAX_ID_LENGTH, now_ms
from hookline.store.base import DeliveryFilter
from hookline.times import iso_ms

router = APIRouter(prefix="/api/v1/deliveries", tags=["deliveries"])


def _for_people(delivery: Delivery) -> dict[str, Any]:
    """The delivery with ``next_attempt_at`` (ms) also written as ISO-8601 UTC."""
    answer = delivery.as_dict()
    due = delivery.next_attempt_at
    answer["next_attempt_at_iso"] = iso_ms(due) if due is not None else None
    return answer


@router.get("", summary="List deliveries, newest first", response_model=DeliveryList)
async def list_deliveries(
    runtime: RuntimeDep,
    key: KeyDep,
    rule_id: str | None = None,
    user_ext_id: str | None = Query(default=None, max_length=MAX_ID_LENGTH),
    event_id: str | None = None,
    status: DeliveryStatus | None = None,
    since: int | None = Query(default=None, ge=0, lt=2**63, description="created_at >= since (ms)"),
    until: int | None = Query(default=None, ge=0, lt=2**63, description="created_at < until (ms)"),
    limit: int = Query(default=50, ge=1, le=500),
    cursor: str | None = Query(default=None, description="next_cursor of the previous page"),
    journey_id: str | None = Query(default=None, description="only a journey's webhook blocks"),
    ext_brand_id: BrandQuery = None,
) -> JSON:
    """With ``user_ext_id``, the user is (``ext_brand_id``, user): absent, the one of no brand."""
    flt = DeliveryFilter(
        rule_id,
        user_ext_id,
        event_id,
        status,
        since,
        until,
        journey_id,
        ext_brand_id=ext_brand_id,
        brands=brand_filter(key),
    )
    rows = await runtime.store.list_deliveries(flt, limit + 1, cursor)
    page = rows[:limit]
    next_cursor = page[-1].id if len(rows) > limit else None
    return JSON({"data": [_for_people(d) for d in page], "next_cursor": next_cursor})


@router.get(
    "/{delivery_id}",
    summary="Get a delivery with its attempt_log (every attempt, oldest first)",
    response_model=DeliveryDetail,
)
async def get_delivery(delivery_id: str, runtime: RuntimeDep, key: KeyDep) -> JSON:
    delivery = await runtime.store.get_delivery(delivery_id)
    if delivery is None:
        raise NotFound(f"no delivery {delivery_id!r}", field="delivery_id")
    missing = f"no delivery {delivery_id!r}"
    require_visible(key, delivery.ext_brand_id, missing, "delivery_id")
    attempts = await runtime.store.list_attempts(delivery_id)
    # ``attempts`` stays the count, as in the list; the attempts themselves are the log.
    shown = [a.as_dict(delivery.secret_headers) for a in attempts]
    return JSON({**_for_people(delivery), "attempt_log": shown})


@router.post(
    "/{delivery_id}/retry",
    status_code=202,
    summary="Send again now (same webhook-id)",
    response_model=DeliveryOut,
)
async def retry_delivery(delivery_id: str, runtime: RuntimeDep, key: KeyDep) -> JSON:
    if not key.all_brands:
        seen = await runtime.store.get_delivery(delivery_id)
        missing = f"no delivery {delivery_id!r}"
        if seen is None:
            raise NotFound(missing, field="delivery_id")
        require_visible(key, seen.ext_brand_id, missing, "delivery_id")
    if runtime.dispatcher.holds(delivery_id):
        # Waiting or in flight here, perhaps past its lease: its attempt is not recorded yet.
        raise Conflict(
            "this delivery is waiting to be sent or in flight; try again shortly",
            field="delivery_id",
        )
    delivery = await runtime.store.requeue(delivery_id, now_ms())
    if delivery is None:
        raise NotFound(f"no delivery {delivery_id!r}", field="delivery_id")
    runtime.dispatcher.signal.notify()
    return JSON(_for_people(delivery), status_code=202)
