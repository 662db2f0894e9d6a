"""`next_attempt_at` (ms) has an ISO-8601 twin wherever people read deliveries."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import orjson
from typer.testing import CliRunner

from hookline.cli import app
from hookline.times import iso_ms
from tests.helpers import Hookline, Receiver, spin_event

runner = CliRunner()


def test_iso_ms_is_utc_to_the_millisecond() -> None:
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"
    assert iso_ms(1_795_000_000_999) == "2026-11-18T11:06:40.999Z"
    ms = 1_795_000_000_123
    parsed = datetime.fromisoformat(iso_ms(ms))
    assert parsed.tzinfo is not None
    assert parsed == datetime.fromtimestamp(ms / 1000, UTC)


async def _retrying(hookline: Hookline, receiver: Receiver) -> dict[str, Any]:
    receiver.script["/hook"] = [503]
    await hookline.create_rule(activity={"url": receiver.url("/hook"), "retry_schedule": [0, 3600]})
    resp = await hookline.post("/api/v1/events", spin_event())
    (delivery_id,) = resp.json()["events"][0]["deliveries"]
    await hookline.idle()
    detail: dict[str, Any] = (await hookline.client.get(f"/api/v1/deliveries/{delivery_id}")).json()
    assert detail["status"] == "retrying"
    return detail


async def test_deliveries_answers_carry_next_attempt_at_iso(
    hookline: Hookline, receiver: Receiver
) -> None:
    detail = await _retrying(hookline, receiver)
    assert detail["next_attempt_at_iso"] == iso_ms(detail["next_attempt_at"])
    listed = (await hookline.client.get("/api/v1/deliveries")).json()["data"]
    assert listed[0]["next_attempt_at_iso"] == detail["next_attempt_at_iso"]
    retried = await hookline.post(f"/api/v1/deliveries/{detail['id']}/retry")
    assert retried.status_code == 202
    assert retried.json()["next_attempt_at_iso"] == iso_ms(retried.json()["next_attempt_at"])
    await hookline.idle()
    done = (await hookline.client.get(f"/api/v1/deliveries/{detail['id']}")).json()
    assert done["status"] == "succeeded"
    assert done["next_attempt_at"] is None
    assert done["next_attempt_at_iso"] is None


async def test_cli_shows_the_next_attempt_as_iso(hookline: Hookline, receiver: Receiver) -> None:
    detail = await _retrying(hookline, receiver)
    url = ["--url", hookline.base_url]
    table = await asyncio.to_thread(runner.invoke, app, ["deliveries", "list", *url])
    assert table.exit_code == 0, table.output
    (row,) = [line for line in table.stdout.splitlines() if line.startswith(detail["id"])]
    assert row.split()[:4] == [detail["id"], "retrying", "1", detail["next_attempt_at_iso"]]
    assert "HTTP 503" in row
    shown = await asyncio.to_thread(runner.invoke, app, ["deliveries", "show", detail["id"], *url])
    assert orjson.loads(shown.stdout)["next_attempt_at_iso"] == detail["next_attempt_at_iso"]
