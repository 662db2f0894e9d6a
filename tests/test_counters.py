"""The counting of rules (hookline.counters): limits as written, and the pure state machine."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hookline.counters import (
    MAX_FIRES,
    NO_LIMITS,
    Counter,
    Limits,
    advance,
    counting_time,
    limits_from_dict,
    parse_limits,
)
from hookline.errors import InvalidInput

HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 1_700_000_000_000


def limits(once: bool = False, frequency: Any = None, accumulate: Any = None) -> Limits:
    return parse_limits(once, frequency, accumulate)


def run(
    lim: Limits,
    times: list[int],
    events: list[dict[str, Any]] | None = None,
    counter: Counter | None = None,
    epoch: int = 0,
) -> tuple[list[bool], Counter]:
    """Feed events at ``times`` through one user's counter; which fired, and the counter."""
    counter = counter or Counter()
    fired = []
    for i, at in enumerate(times):
        fire, counter = advance(
            lim, counter, epoch=epoch, at=at, event=(events[i] if events else {})
        )
        fired.append(fire)
    return fired, counter


# --- limits as written -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("once", "frequency", "accumulate", "field"),
    [
        ("yes", None, None, "once_per_user"),
        (False, {"max": 0, "per": "1d"}, None, "frequency.max"),
        (False, {"max": MAX_FIRES + 1, "per": "1d"}, None, "frequency.max"),
        (False, {"max": 2.5, "per": "1d"}, None, "frequency.max"),
        (False, {"max": True, "per": "1d"}, None, "frequency.max"),
        (False, {"per": "1d"}, None, "frequency.max"),
        (False, {"max": 2}, None, "frequency.per"),
        (False, {"max": 2, "per": "0s"}, None, "frequency.per"),
        (False, {"max": 2, "per": -5}, None, "frequency.per"),
        (False, {"max": 2, "per": "1y"}, None, "frequency.per"),
        (False, {"max": 2, "per": True}, None, "frequency.per"),
        (False, {"max": 2, "per": "1d", "every": 1}, None, "frequency.every"),
        (False, [2, "1d"], None, "frequency"),
        (False, None, {}, "accumulate"),
        (False, None, {"window": "1d"}, "accumulate"),
        (False, None, {"count": 3, "sum": "event.amount", "reach": 5}, "accumulate.sum"),
        (False, None, {"count": 0}, "accumulate.count"),
        (False, None, {"count": 3.0}, "accumulate.count"),
        (False, None, {"count": 3, "reach": 5}, "accumulate.reach"),
        (False, None, {"sum": "event.amount"}, "accumulate.reach"),
        (False, None, {"sum": "state.balance", "reach": 5}, "accumulate.sum"),
        (False, None, {"sum": "event.a b", "reach": 5}, "accumulate.sum"),
        (False, None, {"sum": "event.", "reach": 5}, "accumulate.sum"),
        (False, None, {"sum": 5, "reach": 5}, "accumulate.sum"),
        (False, None, {"sum": "event.amount", "reach": 0}, "accumulate.reach"),
        (False, None, {"sum": "event.amount", "reach": -1}, "accumulate.reach"),
        (False, None, {"sum": "event.amount", "reach": float("inf")}, "accumulate.reach"),
        (False, None, {"sum": "event.amount", "reach": "100"}, "accumulate.reach"),
        (False, None, {"sum": "event.amount", "reach": 10**16}, "accumulate.reach"),
        (False, None, {"count": 3, "window": "soon"}, "accumulate.window"),
        (False, None, {"count": 3, "window": 0}, "accumulate.window"),
        (False, None, {"count": 3, "total": 1}, "accumulate.total"),
    ],
)
def test_limits_that_cannot_run_are_refused_naming_the_field(
    once: Any, frequency: Any, accumulate: Any, field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_limits(once, frequency, accumulate)
    assert caught.value.field == field


def test_limits_keep_what_was_written_and_read_back_from_their_stored_form() -> None:
    lim = limits(
        True, {"max": 2, "per": "1d"}, {"sum": "event.amount", "reach": 99.5, "window": 600}
    )
    assert lim.frequency is not None and lim.frequency.per_ms == DAY
    assert lim.accumulate is not None and lim.accumulate.window_ms == 600_000
    stored = lim.as_dict()
    assert stored == {
        "once_per_user": True,
        "frequency": {"max": 2, "per": "1d"},
        "accumulate": {"sum": "event.amount", "reach": 99.5, "window": 600},
    }
    assert limits_from_dict(stored) == lim
    assert limits_from_dict(None) == NO_LIMITS
    assert not NO_LIMITS.counting and lim.counting
    assert limits(accumulate={"count": 3}).as_dict()["accumulate"] == {"count": 3}


def test_only_a_change_of_frequency_or_accumulate_by_meaning_restarts_counts() -> None:
    daily = limits(frequency={"max": 2, "per": "1d"})
    assert not daily.restarts(limits(True, {"max": 2, "per": 86400}))  # 1d is 86400 s
    assert daily.restarts(limits(frequency={"max": 3, "per": "1d"}))
    assert daily.restarts(limits(frequency={"max": 2, "per": "2d"}))
    assert daily.restarts(NO_LIMITS)
    three = limits(accumulate={"count": 3})
    assert not three.restarts(limits(True, accumulate={"count": 3}))
    assert three.restarts(limits(accumulate={"count": 3, "window": "1h"}))
    assert three.restarts(limits(accumulate={"count": 4}))
    assert not NO_LIMITS.restarts(limits(True))


# --- the state machine -------------------------------------------------------------------


def test_once_per_user_fires_once_then_counts_nothing() -> None:
    fired, counter = run(limits(True), [T0 + i for i in range(5)])
    assert fired == [True, False, False, False, False]
    assert counter.fired
    same, again = advance(limits(True), counter, epoch=0, at=T0 + DAY, event={})
    assert not same and again is counter  # nothing counted: nothing to write


def test_frequency_fires_max_within_any_window_then_again_once_it_passed() -> None:
    lim = limits(frequency={"max": 2, "per": "1d"})
    times = [T0, T0 + HOUR, T0 + 2 * HOUR, T0 + 3 * HOUR, T0 + 4 * HOUR]
    fired, counter = run(lim, times)
    assert fired == [True, True, False, False, False]
    # The first fire leaves the window a day after it happened, not a day after the last event.
    later, counter = run(
        lim, [T0 + DAY - 1, T0 + DAY, T0 + DAY + HOUR, T0 + DAY + HOUR + 1], None, counter
    )
    assert later == [False, True, True, False]


def test_accumulate_count_fires_on_every_nth_event() -> None:
    fired, counter = run(limits(accumulate={"count": 3}), [T0 + i for i in range(7)])
    assert fired == [False, False, True, False, False, True, False]
    assert counter.count == 1


def test_accumulate_sum_fires_when_the_total_reaches_then_starts_over() -> None:
    lim = limits(accumulate={"sum": "event.amount", "reach": 100})
    events = [{"amount": a} for a in (30, 50, 40, 30, 50, 20)]
    fired, counter = run(lim, [T0 + i for i in range(6)], events)
    assert fired == [False, False, True, False, False, True]
    assert counter.total == 0 and counter.since is None


def test_sum_adds_decimals_as_written() -> None:
    lim = limits(accumulate={"sum": "event.x", "reach": 0.9})
    fired, _ = run(lim, [T0, T0 + 1, T0 + 2], [{"x": 0.3}, {"x": 0.3}, {"x": 0.3}])
    assert 0.3 + 0.3 + 0.3 < 0.9  # as binary floats it would not fire
    assert fired == [False, False, True]


def test_sum_reads_nested_fields_and_negative_amounts_subtract() -> None:
    lim = limits(accumulate={"sum": "event.deposit.amount", "reach": 100})
    events = [
        {"deposit": {"amount": 80}},
        {"deposit": {"amount": -30}},
        {"deposit": {"amount": 40}},
    ]
    fired, counter = run(lim, [T0, T0 + 1, T0 + 2], events)
    assert fired == [False, False, False]
    assert counter.total == Decimal(90)


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"amount": None},
        {"amount": "50"},
        {"amount": True},
        {"amount": [50]},
        {"amount": float("nan")},
        {"amount": float("inf")},
    ],
)
def test_an_event_whose_sum_field_is_not_a_finite_number_neither_counts_nor_fires(
    event: dict[str, Any],
) -> None:
    lim = limits(True, {"max": 1, "per": "1d"}, {"sum": "event.amount", "reach": 1})
    start = Counter(count=1, total=Decimal(0), since=T0, clock=T0)
    fire, after = advance(lim, start, epoch=0, at=T0 + 1, event=event)
    assert not fire
    assert after is start


def test_the_accumulation_window_restarts_counting_from_the_first_counted_event() -> None:
    lim = limits(accumulate={"count": 3, "window": "1h"})
    # Two within the hour, the third after it: the third starts a new count.
    fired, counter = run(lim, [T0, T0 + 30 * 60_000, T0 + HOUR])
    assert fired == [False, False, False]
    assert (counter.count, counter.since) == (1, T0 + HOUR)
    more, _ = run(lim, [T0 + HOUR + 1, T0 + 2 * HOUR - 1], None, counter)
    assert more == [False, True]


def test_a_late_event_counts_at_the_latest_time_seen_and_cannot_reopen_a_window() -> None:
    lim = limits(frequency={"max": 1, "per": "1d"})
    fired, counter = run(lim, [T0 + 2 * DAY])
    # Dated two days earlier, it arrives after: it counts at T0 + 2d, inside the window.
    late, counter = run(lim, [T0], None, counter)
    assert fired == [True] and late == [False]
    assert counter.clock == T0 + 2 * DAY
    window = limits(accumulate={"count": 2, "window": "1h"})
    fired, counter = run(window, [T0 + 5 * HOUR, T0])  # the late one is in the same hour
    assert fired == [False, True]


def test_an_event_dated_after_its_arrival_counts_at_its_arrival() -> None:
    assert counting_time(event_date=T0 + DAY, received_at=T0) == T0
    assert counting_time(event_date=T0 - DAY, received_at=T0) == T0 - DAY


def test_once_per_user_with_accumulate_fires_once_at_the_first_threshold() -> None:
    fired, _ = run(limits(True, accumulate={"count": 2}), [T0 + i for i in range(6)])
    assert fired == [False, True, False, False, False, False]


def test_once_per_user_with_frequency_fires_once() -> None:
    fired, _ = run(limits(True, {"max": 3, "per": "1h"}), [T0, T0 + 1, T0 + 2 * HOUR])
    assert fired == [True, False, False]


def test_a_threshold_the_frequency_holds_back_is_not_kept_for_later() -> None:
    lim = limits(frequency={"max": 1, "per": "1d"}, accumulate={"count": 2})
    fired, counter = run(lim, [T0 + i * HOUR for i in range(6)])
    # The 2nd event fires; the 4th and 6th reach the threshold within the day: held back.
    assert fired == [False, True, False, False, False, False]
    assert counter.count == 0
    # After the day, the next threshold fires; no held-back threshold fires early.
    more, _ = run(lim, [T0 + DAY + HOUR, T0 + DAY + 2 * HOUR], None, counter)
    assert more == [False, True]


def test_all_three_together_fire_once_at_the_first_threshold() -> None:
    lim = limits(True, {"max": 5, "per": "1d"}, {"count": 2})
    fired, _ = run(lim, [T0 + i for i in range(8)])
    assert fired == [False, True] + [False] * 6


def test_a_counter_of_another_epoch_keeps_only_already_fired() -> None:
    old = Counter(epoch=1, clock=T0, fired=True, fires=(T0,), since=T0, count=2, total=Decimal(5))
    assert old.under(1) is old
    assert old.under(2) == Counter(epoch=2, clock=T0, fired=True)
    fired, counter = run(limits(accumulate={"count": 3}), [T0 + 1], counter=old, epoch=2)
    assert fired == [False] and counter.count == 1 and counter.epoch == 2
    once, _ = run(limits(True), [T0 + 1], counter=old, epoch=2)
    assert once == [False]


def test_counters_read_back_what_they_wrote_and_refuse_what_they_cannot_read() -> None:
    counter = Counter(3, T0, True, (T0, T0 + 1), T0, 2, Decimal("0.30"))
    assert Counter.from_json(3, counter.as_json()) == counter
    for bad, problem in (
        ([], "object"),
        ({"clock": -1}, "clock"),
        ({"fires": [1.5]}, "fires"),
        ({"fires": "x"}, "fires"),
        ({"count": True}, "count"),
        ({"fired": 1}, "fired"),
        ({"total": "abc"}, "total"),
        ({"total": "NaN"}, "total"),
        ({"since": "yesterday"}, "since"),
    ):
        with pytest.raises(ValueError, match=problem):
            Counter.from_json(0, bad)


@given(
    gaps=st.lists(st.integers(min_value=-2 * HOUR, max_value=3 * HOUR), max_size=60),
    cap=st.integers(min_value=1, max_value=4),
)
def test_frequency_never_exceeds_max_in_any_window_and_holds_back_only_at_the_cap(
    gaps: list[int], cap: int
) -> None:
    per = 2 * HOUR
    lim = limits(frequency={"max": cap, "per": per // 1000})
    counter, at = Counter(), T0
    fire_times: list[int] = []
    for gap in gaps:
        at += gap  # some go back in time: they count at the clock
        before = counter
        fire, counter = advance(lim, counter, epoch=0, at=at, event={})
        now = counter.clock
        assert now is not None and now == max(at, before.clock or at)
        recent = [t for t in fire_times if t > now - per]
        assert fire == (len(recent) < cap)
        if fire:
            fire_times.append(now)
    for i, t in enumerate(fire_times):
        assert sum(1 for u in fire_times[i:] if u < t + per) <= cap
