"""Times as hookline keeps them (milliseconds since the epoch) and as people read them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso_ms(ms: int) -> str:
    """ISO-8601 in UTC to the millisecond: ``2026-11-29T10:15:30.123Z``."""
    # Integer arithmetic: a float of seconds could round the last millisecond.
    moment = _EPOCH + timedelta(milliseconds=ms)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
