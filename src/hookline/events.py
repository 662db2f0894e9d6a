"""The event envelope of the original platform, validated at the edge.

``{"eid", "event_type", "user_ext_id", "event_date" (ms), "ext_brand_id", "payload"}``
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Final

import orjson

from hookline.brands import check_brand
from hookline.errors import InvalidInput, PayloadTooLarge, closest
from hookline.values import check_depth

UPDATE_PROFILE: Final = "update_profile"
ENVELOPE_KEYS: Final = frozenset(
    {"eid", "event_type", "user_ext_id", "event_date", "ext_brand_id", "payload"}
)
_EVENT_TYPE = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")
# One limit for every id a caller gives: user_ext_id (in events, paths and filters) and eid.
MAX_ID_LENGTH: Final = 256
# 9999-12-31T23:59:59.999Z: later dates are typos (seconds sent as microseconds, say).
MAX_EVENT_DATE: Final = 253_402_300_799_999
# 2000-01-01T00:00:00Z: an earlier date in milliseconds is almost surely seconds (any
# date in seconds until the year 33658 is below it), a mistake better refused than kept.
MIN_EVENT_DATE: Final = 946_684_800_000


@dataclass(frozen=True, slots=True)
class Event:
    """One validated event, as stored."""

    id: str
    eid: str | None
    event_type: str
    user_ext_id: str
    ext_brand_id: str | int | None
    event_date: int
    payload: dict[str, Any]
    received_at: int

    def template_scope(self) -> dict[str, Any]:
        """What ``{{event.x}}`` sees: the payload, with envelope fields where it has none."""
        scope: dict[str, Any] = {
            "eid": self.eid,
            "event_id": self.id,
            "event_type": self.event_type,
            "user_ext_id": self.user_ext_id,
            "ext_brand_id": self.ext_brand_id,
            "event_date": self.event_date,
        }
        scope.update(self.payload)
        return scope

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "eid": self.eid,
            "event_type": self.event_type,
            "user_ext_id": self.user_ext_id,
            "ext_brand_id": self.ext_brand_id,
            "event_date": self.event_date,
            "payload": self.payload,
            "received_at": self.received_at,
        }


@dataclass(frozen=True, slots=True)
class EventInput:
    """An event as the caller sent it, checked but not yet given an id."""

    eid: str | None
    event_type: str
    user_ext_id: str
    ext_brand_id: str | int | None
    event_date: int | None
    payload: dict[str, Any]


def now_ms() -> int:
    return int(time.time() * 1000)


def later_than(updated_at: int) -> int:
    """A change's time: now, but never before the last change (ids and answers order them)."""
    return max(now_ms(), updated_at + 1)


def parse_events(
    data: Any, *, max_events: int, max_event_bytes: int, body_bytes: int
) -> list[EventInput]:
    """Validate one event or a JSON array of events; errors name the index and field."""
    if isinstance(data, dict):
        items, prefix = [data], ""
    elif isinstance(data, list):
        if not data:
            raise InvalidInput("the array of events is empty", field="body")
        if len(data) > max_events:
            raise InvalidInput(
                f"at most {max_events} events per request, got {len(data)}; split the batch",
                field="body",
            )
        items, prefix = data, "[{}]."
    else:
        raise InvalidInput("expected an event object or an array of events", field="body")
    # Only measure events one by one when the whole body could hold an oversized one.
    measure = body_bytes > max_event_bytes
    return [
        _parse_one(item, prefix.format(i), max_event_bytes if measure else None)
        for i, item in enumerate(items)
    ]


def _parse_one(raw: Any, where: str, max_bytes: int | None) -> EventInput:
    if not isinstance(raw, dict):
        raise InvalidInput("an event must be a JSON object", field=where.rstrip(".") or "body")
    unknown = raw.keys() - ENVELOPE_KEYS
    if unknown:
        name = sorted(unknown)[0]
        guess = closest(name, ENVELOPE_KEYS)
        hint = f"did you mean {guess!r}? " if guess else ""
        raise InvalidInput(
            f"unknown envelope field {name!r}; {hint}event data goes in 'payload', "
            f"allowed fields: {', '.join(sorted(ENVELOPE_KEYS))}",
            field=where + name,
        )
    event_type = raw.get("event_type")
    if not isinstance(event_type, str) or not _EVENT_TYPE.fullmatch(event_type):
        raise InvalidInput(
            "event_type is required: 1-128 characters of letters, digits, '_', '-', '.', ':'",
            field=where + "event_type",
        )
    user = _identifier(raw.get("user_ext_id"), where + "user_ext_id", required=True)
    assert user is not None
    eid = _identifier(raw.get("eid"), where + "eid", required=False)
    brand = check_brand(raw.get("ext_brand_id"), where + "ext_brand_id")
    event_date = raw.get("event_date")
    if event_date is not None and (
        isinstance(event_date, bool)
        or not isinstance(event_date, int)
        or not 0 <= event_date <= MAX_EVENT_DATE
    ):
        raise InvalidInput(
            "event_date must be milliseconds since the epoch, from 0 to year 9999",
            field=where + "event_date",
        )
    if event_date is not None and event_date < MIN_EVENT_DATE:
        raise InvalidInput(seconds_not_milliseconds(event_date), field=where + "event_date")
    payload = raw.get("payload", {})
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise InvalidInput("payload must be a JSON object", field=where + "payload")
    check_depth(payload, where + "payload")  # before the size: orjson stops at 255 levels
    if max_bytes is not None and len(orjson.dumps(raw)) > max_bytes:
        raise PayloadTooLarge(
            f"the event is larger than {max_bytes} bytes", field=where.rstrip(".") or "body"
        )
    return EventInput(eid, event_type, user, brand, event_date, payload)


def seconds_not_milliseconds(event_date: int) -> str:
    """Why an event_date before the year 2000 is refused, with what was likely meant."""
    return (
        f"event_date {event_date} is before the year 2000 as milliseconds since the epoch; "
        f"it looks like seconds: send milliseconds (likely {event_date * 1000})"
    )


def _identifier(value: Any, field: str, *, required: bool) -> str | None:
    if value is None:
        if required:
            raise InvalidInput(f"{field.rsplit('.', 1)[-1]} is required", field=field)
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidInput("must be a string or an integer", field=field)
    text = str(value)
    if not text or len(text) > MAX_ID_LENGTH:
        raise InvalidInput(f"must be 1-{MAX_ID_LENGTH} characters", field=field)
    return text
