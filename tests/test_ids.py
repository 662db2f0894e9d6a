from __future__ import annotations

import itertools

import pytest

from hookline.ids import _ALPHABET, has_kind, new_id


@pytest.fixture(autouse=True)
def fresh_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from an unused clock and leaves the process's own as it was."""
    monkeypatch.setattr("hookline.ids._last_ms", 0)
    monkeypatch.setattr("hookline.ids._last_rand", 0)


def _decode(digits: str) -> int:
    value = 0
    for char in digits:
        value = value * 32 + _ALPHABET.index(char)
    return value


def test_shape_and_time_prefix() -> None:
    ms = 1_795_915_574_929
    made = new_id("evt", ms)
    assert has_kind(made, "evt") and not has_kind(made, "dlv")
    kind, _, body = made.partition("_")
    assert (kind, len(body)) == ("evt", 26)
    assert set(body) <= set(_ALPHABET)
    assert _decode(body[:10]) == ms


def test_ids_made_in_one_millisecond_count_up() -> None:
    ms = 1_795_915_574_930
    ids = [new_id("dlv", ms) for _ in range(1000)]
    assert ids == sorted(ids) and len(set(ids)) == 1000
    numbers = [_decode(i.partition("_")[2]) for i in ids]
    assert all(b - a == 1 for a, b in itertools.pairwise(numbers))


def test_a_clock_that_steps_back_still_sorts() -> None:
    later = new_id("att", 1_795_915_574_999)
    earlier_clock = new_id("att", 1_795_915_574_000)
    assert earlier_clock > later


def test_later_milliseconds_sort_later() -> None:
    a = new_id("evt", 1_900_000_000_000)
    b = new_id("evt", 1_900_000_000_001)
    assert a < b and _decode(b[4:14]) == 1_900_000_000_001
