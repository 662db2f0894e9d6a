"""Row mappers derived from the dataclasses: every field goes to its column and comes back."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from hookline.deliveries import Attempt
from hookline.journeys import FinishReason, Instance, InstanceStatus, Journey, JourneyStatus
from hookline.keys import ApiKey, Role
from hookline.store import journey_sql, rows, sql
from hookline.store import schema as t
from hookline.store.rows import BOOL, RowMapper


def _as_row(columns: dict[str, Any]) -> Any:
    return SimpleNamespace(_mapping=columns)


def test_an_instance_round_trips_and_its_row_has_exactly_the_table_columns() -> None:
    inst = Instance(
        id="jri_1",
        journey_id="jrn_1",
        version=2,
        user_ext_id="u-1",
        ext_brand_id=5,
        status=InstanceStatus.FINISHED,
        block=None,
        entered_at=1,
        updated_at=2,
        entry_event={"event_type": "x", "payload": {"a": [1, "b"]}},
        last_event={},
        control_group=True,
        finish_reason=FinishReason.GOAL,
        finished_at=3,
    )
    row = journey_sql._INSTANCE.row(inst)
    assert set(row) == {c.name for c in t.journey_instances.columns}
    assert row["ext_brand_id"] == b"5" and row["status"] == "finished"
    # SQLite answers a bool as 0 or 1.
    assert journey_sql._INSTANCE.record(_as_row({**row, "control_group": 1})) == inst
    # Read by position too, from the columns the mapper selects, in their order.
    columns = [c.name for c in journey_sql._INSTANCE.columns(t.journey_instances)]
    assert columns == list(journey_sql._INSTANCE.names)
    stored = {**row, "control_group": 1}
    assert journey_sql._INSTANCE.from_tuple([stored[c] for c in columns]) == inst


def test_a_mapper_of_some_fields_refuses_to_read_by_position() -> None:
    mapper = RowMapper(Attempt, stored=frozenset({"id"}))
    with pytest.raises(TypeError, match="not columns"):
        mapper.from_tuple(["att_1"])


def test_a_journey_row_of_an_older_hookline_reads_revision_1() -> None:
    journey = Journey("jrn_1", "j", JourneyStatus.ACTIVE, {"start": "a"}, 1, 2, version=3)
    row = journey_sql._JOURNEY.row(journey)
    assert set(row) == {c.name for c in t.journeys.columns}
    assert journey_sql._JOURNEY.record(_as_row({**row, "revision": None})) == journey


def test_attempts_and_keys_round_trip() -> None:
    attempt = Attempt("att_1", "dlv_1", 1, 5, 1.5, 200, (("a", "b"),), "ok", None, True)
    row = sql._ATTEMPT.row(attempt)
    assert set(row) == {c.name for c in t.attempts.columns}
    assert sql._ATTEMPT.record(_as_row(row)) == attempt
    key = ApiKey("key_1", "k", Role.READ, ("b1", "b2"), "hl_ab", "h" * 64, 1)
    row = sql._API_KEY.row(key)
    assert set(row) == {c.name for c in t.api_keys.columns}
    assert row["brands"] == b'["b1","b2"]' and row["role"] == "read"
    assert sql._API_KEY.record(_as_row(row)) == key


def test_a_codec_for_a_field_the_dataclass_lacks_is_refused() -> None:
    with pytest.raises(TypeError, match="no fields"):
        RowMapper(Attempt, {"succeded": BOOL})


def test_an_enum_codec_reads_members_and_refuses_an_unknown_value_as_the_enum_does() -> None:
    status = rows.enum(InstanceStatus)
    reason = rows.enum(FinishReason, nullable=True)
    assert status.load("active") is InstanceStatus.ACTIVE
    assert reason.load("goal") is FinishReason.GOAL and reason.load(None) is None
    # What a hand edit leaves is refused as before (the readers catch ValueError).
    with pytest.raises(ValueError, match="'actve' is not a valid InstanceStatus"):
        status.load("actve")
    with pytest.raises(ValueError, match="None is not a valid InstanceStatus"):
        status.load(None)


def test_a_row_of_the_wrong_width_is_refused_when_read_by_position() -> None:
    columns = len(journey_sql._INSTANCE.names)
    with pytest.raises(ValueError, match=f"{columns - 1} columns"):
        journey_sql._INSTANCE.from_tuple(["x"] * (columns - 1))
