"""Rows changed behind hookline's back (a hand edit, another version) must not stop it.

Found by attacking the merged hardening: one pending delivery whose ``headers`` were not JSON
made every claim of due deliveries fail, so no retry and nothing left from before a restart
was ever sent again, while ``/healthz`` said ok; reading the delivery answered 500.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from tests.helpers import Hookline, Receiver, spin_event

MakeHookline = Callable[..., Coroutine[Any, Any, Hookline]]

# Each: a column and what a hand edit left in it.
POISON: dict[str, tuple[str, Any]] = {
    "dlv_00000000000000000000000001": ("retry_schedule", b"[null]"),
    "dlv_00000000000000000000000002": ("headers", b"not json"),
    "dlv_00000000000000000000000003": ("headers", b'{"a": 1}'),
    "dlv_00000000000000000000000004": ("headers", b'[["a"]]'),
    "dlv_00000000000000000000000005": ("retry_schedule", b'[5, "x"]'),
    "dlv_00000000000000000000000006": ("timeout", -5.0),
    "dlv_00000000000000000000000007": ("status", "weird"),
    "dlv_00000000000000000000000008": ("timeout", float("inf")),
    # Finite, but past what an integer column holds once made milliseconds: the claim's lease
    # (every claim failed, so nothing due was sent again), and the next attempt's time (every
    # recording of its batch failed, so the others in it were sent again too).
    "dlv_00000000000000000000000009": ("timeout", 1e300),
    "dlv_00000000000000000000000010": ("retry_schedule", b"[1e300]"),
}


def _poison(db: Path, good_id: str) -> None:
    """Copy the good delivery once per poison, due now, and make the good one due again."""
    conn = sqlite3.connect(db)
    try:
        conn.execute(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = 0, lease_until = NULL, "
            "attempts = 0 WHERE id = ?",
            (good_id,),
        )
        columns = [row[1] for row in conn.execute("PRAGMA table_info(deliveries)")]
        listed = ", ".join(columns)
        for bad_id, (column, value) in POISON.items():
            picks = ", ".join("?" if c in ("id", column) else c for c in columns)
            params = [bad_id if c == "id" else value for c in columns if c in ("id", column)]
            conn.execute(
                f"INSERT INTO deliveries ({listed}) SELECT {picks} FROM deliveries WHERE id = ?",
                [*params, good_id],
            )
        # The poisoned ones are due before the good one.
        conn.execute("UPDATE deliveries SET next_attempt_at = 1 WHERE id = ?", (good_id,))
        conn.commit()
    finally:
        conn.close()


async def test_unreadable_pending_deliveries_are_dead_and_the_rest_still_sent(
    make_hookline: MakeHookline, receiver: Receiver, tmp_path: Path
) -> None:
    first = await make_hookline()
    await first.create_rule(activity={"url": receiver.url()})
    resp = await first.post("/api/v1/events", spin_event())
    [good_id] = resp.json()["events"][0]["deliveries"]
    await receiver.wait_for(1)
    await first.idle()
    await first.stop()

    _poison(tmp_path / "data" / "hookline.db", good_id)

    h = await make_hookline()
    # The good delivery, due again, is claimed and sent although the poisoned ones come first.
    await receiver.wait_for(2)
    await h.idle()
    assert len(receiver.requests) == 2
    for bad_id, (column, _) in POISON.items():
        one = await h.client.get(f"/api/v1/deliveries/{bad_id}")
        assert one.status_code == 200, one.text
        assert one.json()["status"] == "dead", (column, one.json())
        assert "cannot read this stored delivery" in one.json()["last_error"], column
    listed = await h.client.get("/api/v1/deliveries", params={"limit": 50})
    assert listed.status_code == 200, listed.text
    assert {d["id"] for d in listed.json()["data"]} == {good_id, *POISON}

    # And the dispatcher keeps claiming: a new event is delivered too.
    await h.post("/api/v1/events", spin_event(user="u-2"))
    await receiver.wait_for(3)


async def test_a_user_state_that_cannot_be_read_counts_as_empty_and_is_replaced(
    make_hookline: MakeHookline, receiver: Receiver, tmp_path: Path
) -> None:
    first = await make_hookline()
    await first.create_rule(activity={"url": receiver.url()}, conditions=None)
    for user in ("u-text", "u-list", "u-nan", "u-ok"):
        resp = await first.client.patch(f"/api/v1/users/{user}/state", json={"k": 1})
        assert resp.status_code == 200, resp.text
    await first.stop()
    conn = sqlite3.connect(tmp_path / "data" / "hookline.db")
    for user, raw in (("u-text", b"not json"), ("u-list", b"[1, 2]"), ("u-nan", b'{"k": NaN}')):
        conn.execute("UPDATE users SET state = ? WHERE user_ext_id = ?", (raw, user))
    conn.commit()
    conn.close()

    h = await make_hookline()
    for user in ("u-text", "u-list", "u-nan"):
        # Each used to answer 500 here, and 503 to its every event and patch.
        got = await h.client.get(f"/api/v1/users/{user}/state")
        assert got.status_code == 200 and got.json() == {}, got.text
        resp = await h.post("/api/v1/events", spin_event(user=user))
        assert resp.status_code == 202, resp.text
        patched = await h.client.patch(f"/api/v1/users/{user}/state", json={"k": 2})
        assert patched.status_code == 200, patched.text
        assert patched.json()["k"] == 2
    resp = await h.post("/api/v1/events", spin_event(user="u-ok"))
    assert resp.status_code == 202, resp.text
    await receiver.wait_for(4)


async def test_an_event_whose_payload_cannot_be_read_is_still_shown(
    hookline: Hookline, tmp_path: Path
) -> None:
    resp = await hookline.post("/api/v1/events", spin_event())
    event_id = resp.json()["events"][0]["id"]
    conn = sqlite3.connect(tmp_path / "data" / "hookline.db")
    conn.execute(
        "UPDATE events SET payload = ?, ext_brand_id = ? WHERE id = ?", (b"no", b"{", event_id)
    )
    conn.commit()
    conn.close()
    got = await hookline.client.get(f"/api/v1/events/{event_id}")  # was a 500
    assert got.status_code == 200, got.text
    assert got.json()["payload"] == {} and got.json()["ext_brand_id"] is None


async def test_an_attempt_whose_response_headers_cannot_be_read_is_still_shown(
    hookline: Hookline, receiver: Receiver, tmp_path: Path
) -> None:
    await hookline.create_rule(activity={"url": receiver.url()})
    resp = await hookline.post("/api/v1/events", spin_event())
    (delivery_id,) = resp.json()["events"][0]["deliveries"]
    await hookline.idle()
    shown: dict[bytes, dict[str, str]] = {}
    for stored in (b"not json", b"null", b'{"a": "b"}', b'"ab"', b'[["a"], ["x", "1"], [1, "b"]]'):
        conn = sqlite3.connect(tmp_path / "data" / "hookline.db")
        conn.execute("UPDATE attempts SET response_headers = ?", (stored,))
        conn.commit()
        conn.close()
        got = await hookline.client.get(f"/api/v1/deliveries/{delivery_id}")  # was a 500
        assert got.status_code == 200, (stored, got.text)
        shown[stored] = got.json()["attempt_log"][0]["response_headers"]
    # What can be read is shown; the rest is left out (and logged).
    assert list(shown.values()) == [{}, {}, {}, {}, {"x": "1"}]
