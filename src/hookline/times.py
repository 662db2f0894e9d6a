"""Times as hookline keeps them (milliseconds since the epoch) and as people read them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson

from hookline.errors import InvalidInput

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso_ms(ms: int) -> str:
    """ISO-8601 in UTC to the millisecond: ``2026-11-29T10:15:30.123Z``."""
    # Integer arithmetic: a float of seconds could round the last millisecond.
    moment = _EPOCH + timedelta(milliseconds=ms)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


MAX_DURATION_MS: Final = 10 * 366 * 86_400_000  # ten years: anything longer is a typo
# A number and a unit; no unit is seconds, as a number is ("3600" from a quoted YAML value).
_DURATION: Final = re.compile(r"([0-9]{1,9})(?:\.([0-9]{1,6}))?(ms|s|m|h|d|w)?")
_UNIT_MS: Final = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_UNIT_MS["w"] = 7 * _UNIT_MS["d"]


def parse_duration(value: Any, field: str) -> int:
    """Milliseconds from seconds (a number) or text such as ``90s``, ``5m``, ``2h``, ``7d``,
    ``1.5h`` or ``3600`` (seconds)."""
    ms: int | None = None
    if isinstance(value, int | float) and not isinstance(value, bool) and value == value:
        ms = int(value * 1000) if 0 <= value < 1e12 else None
    elif isinstance(value, str) and (m := _DURATION.fullmatch(value.strip())):
        unit = _UNIT_MS[m[3] or "s"]
        fraction = m[2] or ""
        # In integers: 1.5h is 5,400,000 ms exactly; a part of a millisecond is dropped.
        ms = (int(m[1]) * 10 ** len(fraction) + int(fraction or 0)) * unit // 10 ** len(fraction)
    if ms is None or not 0 < ms <= MAX_DURATION_MS:
        raise InvalidInput(
            "a duration is a positive number of seconds or text such as '90s', '5m', '2h', "
            f"'7d' (at most ten years); got {short_value(value)}",
            field=field,
        )
    return ms


def short_value(value: Any) -> str:
    """A value as an error message quotes it: its JSON, cut to 40 characters."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."
