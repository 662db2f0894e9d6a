from __future__ import annotations

from typing import Any

import pytest

from hookline.errors import InvalidInput, PayloadTooLarge
from hookline.events import Event, parse_events


def _parse(data: Any, body_bytes: int = 100) -> list[Any]:
    return parse_events(data, max_events=1000, max_event_bytes=1000, body_bytes=body_bytes)


def test_single_and_batch() -> None:
    one = _parse({"event_type": "x", "user_ext_id": 5, "eid": 7, "payload": {"a": 1}})
    assert one[0].user_ext_id == "5" and one[0].eid == "7" and one[0].payload == {"a": 1}
    many = _parse([{"event_type": "x", "user_ext_id": "u"}] * 3)
    assert len(many) == 3 and many[0].payload == {}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"user_ext_id": "u"}, "event_type"),
        ({"event_type": "has space", "user_ext_id": "u"}, "event_type"),
        ({"event_type": "x"}, "user_ext_id"),
        ({"event_type": "x", "user_ext_id": True}, "user_ext_id"),
        ({"event_type": "x", "user_ext_id": "u", "payload": []}, "payload"),
        ({"event_type": "x", "user_ext_id": "u", "event_date": -1}, "event_date"),
        ({"event_type": "x", "user_ext_id": "u", "event_date": "today"}, "event_date"),
        ({"event_type": "x", "user_ext_id": "u", "paylod": {}}, "paylod"),
        (
            [{"event_type": "x", "user_ext_id": "u"}, {"event_type": 1, "user_ext_id": "u"}],
            "[1].event_type",
        ),
        ([], "body"),
        ("text", "body"),
        ([1], "[0]"),
    ],
)
def test_errors_name_the_field(data: Any, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        _parse(data)
    assert info.value.field == field


def test_limits() -> None:
    with pytest.raises(InvalidInput, match="at most 2"):
        parse_events([{}] * 3, max_events=2, max_event_bytes=10, body_bytes=10)
    big = {"event_type": "x", "user_ext_id": "u", "payload": {"s": "x" * 2000}}
    with pytest.raises(PayloadTooLarge, match="larger than 1000 bytes"):
        _parse([big], body_bytes=3000)


def test_template_scope_prefers_payload() -> None:
    event = Event("evt_1", "e", "spin", "u", "b", 1, {"event_type": "mine", "n": 1}, 2)
    scope = event.template_scope()
    assert scope["event_type"] == "mine"
    assert scope["user_ext_id"] == "u" and scope["n"] == 1 and scope["event_id"] == "evt_1"
