"""Rules that count: once per user, a frequency cap and accumulation, as a pure state machine.

A rule may carry :class:`Limits`; each user (brand, user_ext_id) then has a :class:`Counter`
for it, and :func:`advance` decides, for one event that passed the rule's trigger and
conditions, whether the rule fires and what the counter becomes. Nothing here does I/O: the
engine reads the counters in the ingest transaction and writes them back in the same commit
as the event and its deliveries.

Semantics (the README's "Rules that count" says the same to users):

- Time is the event's own ``event_date``, on a clock per counter that never goes back: an
  event dated before the latest one counted (it arrived late) counts at that latest time, and
  one dated after its arrival counts at its arrival. So late events cannot reopen a window
  that has passed, and one event dated in the future cannot block a user for ever.
- ``accumulate`` turns events into *occurrences*: each counted event adds 1 (``count``) or
  its field's value (``sum``); when the total reaches the threshold, that is an occurrence
  and counting starts over. With a ``window``, counting also starts over when an event comes
  ``window`` or more after the first event of the current count. Without ``accumulate``,
  every event is an occurrence. For ``sum``, an event whose field is missing or not a finite
  JSON number (a numeric string is not) does not count: the counter is left as it was.
- An occurrence fires unless ``once_per_user`` holds it back (the rule already fired for the
  user) or ``frequency`` does (``max`` fires already within the last ``per``). An occurrence
  held back is not kept for later; the accumulation starts over all the same.
- Once a ``once_per_user`` rule fired for a user, nothing more is counted for that user.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from hookline.conditions import MISSING, compile_field
from hookline.errors import ConditionError, InvalidInput
from hookline.times import parse_duration

# Bounds of what a rule may ask; beyond them it is a typo, and a counter stays small
# (a frequency counter keeps the time of each fire within its window).
MAX_FIRES: Final = 1000
MAX_COUNT: Final = 1_000_000
MAX_REACH: Final = 10**15
LIMIT_KEYS: Final = ("once_per_user", "frequency", "accumulate")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _whole(value: Any, low: int, high: int, field: str, what: str) -> int:
    if not (isinstance(value, int) and not isinstance(value, bool) and low <= value <= high):
        raise InvalidInput(f"{what} is a whole number from {low} to {high:,}", field=field)
    return value


def _object(value: Any, allowed: tuple[str, ...], field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{field} must be an object with {', '.join(allowed)}", field=field)
    for key in value:
        if key not in allowed:
            raise InvalidInput(
                f"unknown key {key!r}; {field} takes {', '.join(allowed)}", field=f"{field}.{key}"
            )
    return value


@dataclass(frozen=True, slots=True)
class Frequency:
    """At most ``max`` fires per user within any ``per`` (a sliding window)."""

    max: int
    per: int | float | str  # as written: 86400 or "1d"
    per_ms: int

    def as_dict(self) -> dict[str, Any]:
        return {"max": self.max, "per": self.per}


def parse_frequency(value: Any, field: str = "frequency") -> Frequency | None:
    """``{"max": N, "per": duration}``, or None; InvalidInput naming the field at fault."""
    if value is None:
        return None
    data = _object(value, ("max", "per"), field)
    if "max" not in data:
        raise InvalidInput("frequency needs max: how many fires within per", field=f"{field}.max")
    if "per" not in data:
        raise InvalidInput("frequency needs per: a duration such as '1d'", field=f"{field}.per")
    count = _whole(data["max"], 1, MAX_FIRES, f"{field}.max", "max")
    return Frequency(count, data["per"], parse_duration(data["per"], f"{field}.per"))


@dataclass(frozen=True, slots=True)
class Accumulate:
    """Fire when a user's count of events, or sum of an event field, reaches a threshold."""

    count: int | None = None
    sum: str | None = None  # a field of the event, as written: "event.amount"
    reach: int | float | None = None
    window: int | float | str | None = None  # as written
    window_ms: int | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = (
            {"count": self.count}
            if self.count is not None
            else {"sum": self.sum, "reach": self.reach}
        )
        if self.window is not None:
            data["window"] = self.window
        return data

    def same_counting(self, other: Accumulate | None) -> bool:
        """Counts made under ``self`` mean the same under ``other``."""
        return other is not None and (
            self.count,
            self.sum,
            self.reach,
            self.window_ms,
        ) == (other.count, other.sum, other.reach, other.window_ms)


def parse_accumulate(value: Any, field: str = "accumulate") -> Accumulate | None:
    """``{"count": N}`` or ``{"sum": "event.x", "reach": X}``, each with an optional window."""
    if value is None:
        return None
    data = _object(value, ("count", "sum", "reach", "window"), field)
    window = data.get("window")
    window_ms = parse_duration(window, f"{field}.window") if window is not None else None
    has_count, has_sum = data.get("count") is not None, data.get("sum") is not None
    if has_count == has_sum:
        raise InvalidInput(
            "accumulate takes either count (a number of events) or sum (an event field) "
            "with reach, not both",
            field=field if not has_count else f"{field}.sum",
        )
    if has_count:
        if data.get("reach") is not None:
            raise InvalidInput(
                "reach goes with sum; with count, count is the threshold", field=f"{field}.reach"
            )
        count = _whole(data["count"], 1, MAX_COUNT, f"{field}.count", "count")
        return Accumulate(count=count, window=window, window_ms=window_ms)
    path = data["sum"]
    _sum_lookup(path, f"{field}.sum")
    reach = data.get("reach")
    if reach is None:
        raise InvalidInput(
            "sum needs reach: the total at which the rule fires", field=f"{field}.reach"
        )
    if not (_is_number(reach) and math.isfinite(reach) and 0 < reach <= MAX_REACH):
        raise InvalidInput(
            f"reach is a number above 0 and at most {MAX_REACH:.0e}", field=f"{field}.reach"
        )
    return Accumulate(sum=path, reach=reach, window=window, window_ms=window_ms)


def _sum_lookup(path: Any, field: str) -> Any:
    if not (isinstance(path, str) and path.startswith("event.")):
        raise InvalidInput("sum names a field of the event, such as 'event.amount'", field=field)
    try:
        return compile_field(path, field=field, scopes=("event",))
    except ConditionError as exc:  # the same syntax as conditions; the error is this field's
        raise InvalidInput(exc.detail, field=field) from None


@dataclass(frozen=True, slots=True)
class Limits:
    """How a rule counts per user; the default counts nothing (every match fires)."""

    once_per_user: bool = False
    frequency: Frequency | None = None
    accumulate: Accumulate | None = None

    @property
    def counting(self) -> bool:
        return self.once_per_user or self.frequency is not None or self.accumulate is not None

    def as_dict(self) -> dict[str, Any]:
        """As answers show them, and as they are stored."""
        return {
            "once_per_user": self.once_per_user,
            "frequency": self.frequency.as_dict() if self.frequency else None,
            "accumulate": self.accumulate.as_dict() if self.accumulate else None,
        }

    def restarts(self, newer: Limits) -> bool:
        """Whether changing to ``newer`` starts the counts over.

        Only a change of ``frequency`` or ``accumulate`` does (by meaning: ``"1d"`` is
        ``86400``); "already fired" of ``once_per_user`` is always kept.
        """
        a, b = self.frequency, newer.frequency
        same_frequency = (a is None and b is None) or (
            a is not None and b is not None and (a.max, a.per_ms) == (b.max, b.per_ms)
        )
        c, d = self.accumulate, newer.accumulate
        same_accumulate = (c is None and d is None) or (c is not None and c.same_counting(d))
        return not (same_frequency and same_accumulate)


NO_LIMITS: Final = Limits()


def parse_limits(once_per_user: Any, frequency: Any, accumulate: Any) -> Limits:
    """Check a rule's limits as written; InvalidInput naming the field (``frequency.max``)."""
    if not isinstance(once_per_user, bool):
        raise InvalidInput("once_per_user is true or false", field="once_per_user")
    return Limits(once_per_user, parse_frequency(frequency), parse_accumulate(accumulate))


def limits_from_dict(data: Any) -> Limits:
    """Limits as stored (``as_dict``); None is none. Raises InvalidInput when unreadable."""
    if data is None:
        return NO_LIMITS
    if not isinstance(data, Mapping):
        raise InvalidInput("limits must be an object", field="limits")
    return parse_limits(
        data.get("once_per_user", False), data.get("frequency"), data.get("accumulate")
    )


@dataclass(frozen=True, slots=True)
class Counter:
    """One user's counts for one rule, made under the rule's counting ``epoch``."""

    epoch: int = 0
    clock: int | None = None  # the latest time counted (ms); counting never goes back
    fired: bool = False  # the rule fired for this user; kept across definition changes
    fires: tuple[int, ...] = ()  # times of the fires still within frequency.per
    since: int | None = None  # time of the first event of the current accumulation
    count: int = 0
    total: Decimal = Decimal(0)  # exact decimal sum: 0.7 + 0.1 + 0.2 reaches 1

    def as_json(self) -> dict[str, Any]:
        """What the store keeps (the epoch is a column of its own)."""
        return {
            "clock": self.clock,
            "fired": self.fired,
            "fires": list(self.fires),
            "since": self.since,
            "count": self.count,
            "total": str(self.total),
        }

    @classmethod
    def from_json(cls, epoch: int, data: Any) -> Counter:
        """A stored counter; ValueError when it cannot be read."""
        if not isinstance(data, Mapping):
            raise ValueError("a counter is a JSON object")
        clock, since, fires = data.get("clock"), data.get("since"), data.get("fires", [])
        count, fired = data.get("count", 0), data.get("fired", False)
        if not all(v is None or _ms(v) for v in (clock, since)):
            raise ValueError("clock and since are times in milliseconds")
        if not (isinstance(fires, list) and all(_ms(v) for v in fires)):
            raise ValueError("fires is a list of times in milliseconds")
        if not (_ms(count) and isinstance(fired, bool) and _ms(epoch)):
            raise ValueError("count and epoch are whole numbers, fired true or false")
        try:
            total = Decimal(str(data.get("total", "0")))
        except InvalidOperation:
            raise ValueError("total is a decimal number") from None
        if not total.is_finite():
            raise ValueError("total is a finite decimal number")
        return cls(epoch, clock, fired, tuple(fires), since, count, total)

    def under(self, epoch: int) -> Counter:
        """The counts as they stand for the rule's ``epoch``: from a former one, only
        ``fired`` and the clock are kept."""
        if epoch == self.epoch:
            return self
        return Counter(epoch, self.clock, self.fired)


def _ms(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def amount(accumulate: Accumulate, event: Mapping[str, Any]) -> Decimal | None:
    """What one event adds: 1 for ``count``; for ``sum``, its field if a finite number."""
    if accumulate.count is not None:
        return Decimal(1)
    value = _sum_lookup(accumulate.sum, "accumulate.sum")({"event": event})
    if value is MISSING or not _is_number(value) or not math.isfinite(value):
        return None
    return _decimal(value)


def _decimal(value: int | float) -> Decimal:
    # From the shortest text of a float, as JSON wrote it: Decimal(0.1) would be 0.1000...055.
    return Decimal(value) if isinstance(value, int) else Decimal(repr(value))


def counting_time(event_date: int, received_at: int) -> int:
    """The time an event counts at before the clock: its own date, at most its arrival."""
    return min(event_date, received_at)


def advance(
    limits: Limits,
    counter: Counter,
    *,
    epoch: int,
    at: int,
    event: Mapping[str, Any],
) -> tuple[bool, Counter]:
    """Whether the rule fires for this event, and the user's counter after it.

    ``at`` is :func:`counting_time`; ``event`` is what ``{{event.x}}`` sees. The counter
    comes back unchanged (the same object) when the event does not count.
    """
    current = counter.under(epoch)
    if limits.once_per_user and current.fired:
        return False, counter
    acc = limits.accumulate
    added = amount(acc, event) if acc is not None else None
    if acc is not None and added is None:
        return False, counter
    now = at if current.clock is None else max(current.clock, at)
    since, count, total = current.since, current.count, current.total
    occurs = True
    if acc is not None:
        assert added is not None
        if since is not None and acc.window_ms is not None and now - since >= acc.window_ms:
            since, count, total = None, 0, Decimal(0)  # the window passed: start over
        since = now if since is None else since
        count, total = count + 1, total + added
        if acc.count is not None:
            occurs = count >= acc.count
        else:
            assert acc.reach is not None
            occurs = total >= _decimal(acc.reach)
        if occurs:  # an occurrence, fired or held back: counting starts over
            since, count, total = None, 0, Decimal(0)
    fires = current.fires
    freq = limits.frequency
    if freq is not None:
        fires = tuple(t for t in fires if t > now - freq.per_ms)
    fire = occurs and not (freq is not None and len(fires) >= freq.max)
    if fire and freq is not None:
        fires = (*fires, now)
    after = replace(
        current,
        clock=now,
        fired=current.fired or fire,
        fires=fires,
        since=since,
        count=count,
        total=total,
    )
    return fire, after
