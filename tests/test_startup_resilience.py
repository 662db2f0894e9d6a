"""Nothing stored may stop hookline: what cannot be loaded is skipped, reported, deletable.

A rule saved with ``"retry_schedule": [NaN]`` by an older hookline (stored as ``[null]``) used
to make every start exit, so the rule could not even be deleted.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import orjson

from hookline.supervision import supervised
from tests.helpers import Hookline, Receiver, example_rule, spin_event
from tests.test_api_errors import assert_error

MakeHookline = Callable[..., Coroutine[Any, Any, Hookline]]


def _write(db: Path, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
    """Change rows behind hookline's back, as a hand edit or another version would."""
    conn = sqlite3.connect(db)
    try:
        for sql, params in statements:
            assert conn.execute(sql, params).rowcount == 1, sql
        conn.commit()
    finally:
        conn.close()


async def test_unloadable_rules_and_webhooks_are_skipped_reported_and_deletable(
    make_hookline: MakeHookline, receiver: Receiver, tmp_path: Path
) -> None:
    first = await make_hookline()
    url = receiver.url()
    good = await first.create_rule(name="good", activity={"url": url}, conditions=None)
    ids = {
        name: (await first.create_rule(name=name, activity={"url": url}))["id"]
        for name in ("null-schedule", "nan-text", "corrupt", "null-timeout")
    }
    webhook = (await first.post("/api/v1/webhooks", {"name": "hook", "url": url})).json()
    uses = example_rule(name="uses-hook")
    uses["activity"] = {"type": "webhook", "webhook_id": webhook["id"]}
    ids["uses-hook"] = (await first.post("/api/v1/rules", uses)).json()["id"]
    spec = orjson.loads(orjson.dumps({"url": url, "method": "POST", "body": '{"a": 1}'}))
    await first.stop()

    _write(
        tmp_path / "data" / "hookline.db",
        [
            # What hookline stored for [NaN]: orjson writes NaN as null.
            (
                "UPDATE rules SET webhook = ? WHERE id = ?",
                (orjson.dumps({**spec, "retry_schedule": [None]}), ids["null-schedule"]),
            ),
            # NaN as Python's json writes it: not JSON orjson reads.
            (
                "UPDATE rules SET webhook = ? WHERE id = ?",
                (b'{"url": "%s", "retry_schedule": [NaN]}' % url.encode(), ids["nan-text"]),
            ),
            ("UPDATE rules SET conditions = ? WHERE id = ?", (b'{"all": [', ids["corrupt"])),
            (
                "UPDATE rules SET webhook = ? WHERE id = ?",
                (orjson.dumps({**spec, "timeout": "soon"}), ids["null-timeout"]),
            ),
            ("UPDATE webhooks SET spec = ? WHERE id = ?", (b"\xff", webhook["id"])),
        ],
    )

    h = await make_hookline()  # used to exit at start-up
    health = await h.client.get("/healthz")
    assert health.status_code == 200, health.text
    assert health.json()["status"] == "ok"
    problems = {(p["kind"], p["id"]): p["detail"] for p in health.json()["problems"]}
    assert set(problems) == {("rule", i) for i in ids.values()} | {("webhook", webhook["id"])}
    assert "retry_schedule" in problems[("rule", ids["null-schedule"])]
    assert "cannot be read" in problems[("rule", ids["corrupt"])]
    assert webhook["id"] in problems[("rule", ids["uses-hook"])]

    # Listed and readable, each broken one saying what is wrong with it.
    listed = await h.client.get("/api/v1/rules")
    assert listed.status_code == 200, listed.text
    by_name = {r["name"]: r for r in listed.json()["data"]}
    assert set(by_name) == {"good", *ids}
    assert "problem" not in by_name["good"]
    for name in ("nan-text", "corrupt"):
        assert "cannot be read" in by_name[name]["problem"]
        one = await h.client.get(f"/api/v1/rules/{ids[name]}")
        assert one.status_code == 200 and one.json()["problem"] == by_name[name]["problem"]
    hooks = (await h.client.get("/api/v1/webhooks")).json()["data"]
    assert "cannot be read" in hooks[0]["problem"]

    # The good rule still serves; the skipped ones create nothing.
    resp = await h.post("/api/v1/events", spin_event())
    assert resp.status_code == 202, resp.text
    assert len(resp.json()["events"][0]["deliveries"]) == 1
    [received] = await receiver.wait_for(1)
    assert received.json()["saw_template_id"] == "12"
    assert (
        good["id"]
        == (
            await h.client.get(f"/api/v1/deliveries/{resp.json()['events'][0]['deliveries'][0]}")
        ).json()["rule_id"]
    )

    # What cannot be read cannot be patched or previewed, only replaced or deleted.
    resp = await h.client.patch(f"/api/v1/rules/{ids['corrupt']}", json={"enabled": False})
    assert_error(resp, 409, says="replace")
    resp = await h.post("/api/v1/webhooks/preview", {"webhook_id": webhook["id"]})
    assert_error(resp, 409, field="webhook_id")
    assert (await h.client.delete(f"/api/v1/rules/{ids['corrupt']}")).status_code == 204
    fixed = await h.client.put(
        f"/api/v1/rules/{ids['nan-text']}", json=example_rule(name="nan-text")
    )
    assert fixed.status_code == 200, fixed.text
    assert "problem" not in fixed.json()
    for name in ("null-schedule", "null-timeout", "uses-hook"):
        assert (await h.client.delete(f"/api/v1/rules/{ids[name]}")).status_code == 204
    assert (await h.client.delete(f"/api/v1/webhooks/{webhook['id']}")).status_code == 204
    assert (await h.client.get("/healthz")).json()["problems"] == []


async def test_healthz_lists_no_problems_when_all_loads(hookline: Hookline) -> None:
    await hookline.create_rule()
    health = (await hookline.client.get("/healthz")).json()
    assert health["status"] == "ok"
    assert health["problems"] == []


async def test_healthz_is_503_naming_a_background_loop_that_ended(
    hookline: Hookline, caplog: Any
) -> None:
    """A loop that ends while hookline serves (a bug) is logged and named by /healthz, so a
    liveness probe restarts the process rather than leave events nothing moves on."""
    engine, dispatcher = hookline.runtime.engine, hookline.runtime.dispatcher
    timer = engine.journey_timer
    assert timer is not None and timer.task is not None
    assert (await hookline.client.get("/healthz")).json()["failing"] == []

    async def boom() -> None:
        raise RuntimeError("a bug")

    # The recorder ends by a bug; the journey timer is cancelled (as a stray cancel would).
    recorder = dispatcher._recorder
    assert recorder is not None
    recorder.cancel()
    dispatcher._recorder = supervised(boom(), "hookline-recorder")
    timer.task.cancel()
    await asyncio.gather(recorder, timer.task, dispatcher._recorder, return_exceptions=True)
    health = await hookline.client.get("/healthz")
    assert health.status_code == 503, health.text
    assert health.json()["status"] == "failing"
    assert sorted(health.json()["failing"]) == ["hookline-journey-timer", "hookline-recorder"]
    assert "hookline-recorder ended by a bug: RuntimeError('a bug')" in caplog.text
    dispatcher._recorder = supervised(dispatcher._record_loop(), "hookline-recorder")
