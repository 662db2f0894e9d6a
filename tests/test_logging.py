"""Logs a person can follow: a line per request, a line per dead delivery or failing host."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest

from hookline.api.access import loggable_path
from hookline.dispatcher import FAILING_STREAK
from tests.helpers import Hookline, Receiver, spin_event
from tests.test_sender_errors import _closed_port
from tests.test_serve import SERVE, _free_port, _wait_healthy

MakeHookline = Callable[..., Coroutine[Any, Any, Hookline]]


def _messages(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger]


async def test_one_line_per_request_without_query_body_or_authorization(
    hookline: Hookline, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hookline")
    secret_token = "Bearer s3cr3t-t0ken"
    resp = await hookline.post(
        "/api/v1/events",
        spin_event(payload={"card": "4111-1111"}),
        headers={"authorization": secret_token},
    )
    assert resp.status_code == 202
    await hookline.client.get("/api/v1/deliveries?limit=5&api_key=q-secret")
    await hookline.client.get("/api/v1/rules/rule_missing")
    await hookline.client.post("/echo-send/my-echo-secret-1/?x=1", json={"a": 1})
    lines = _messages(caplog, "hookline.access")
    assert len(lines) == 4, lines
    method_path_status = [line.rsplit(" ", 2)[0] for line in lines]
    assert method_path_status == [
        "POST /api/v1/events 202",
        "GET /api/v1/deliveries 200",
        "GET /api/v1/rules/rule_missing 404",
        "POST /echo-send/***/ 200",
    ]
    for line in lines:
        assert line.endswith(" ms")
        float(line.rsplit(" ", 2)[1])  # the duration in milliseconds
    everything = caplog.text
    for secret in ("s3cr3t", "4111", "q-secret", "my-echo-secret-1"):
        assert secret not in everything


def test_echo_secrets_are_masked_in_paths() -> None:
    assert loggable_path("/echo-send/abcdefgh/") == "/echo-send/***/"
    assert loggable_path("/echo-list/abcdefgh/") == "/echo-list/***/"
    assert loggable_path("/echo-list/abcdefgh") == "/echo-list/***"
    assert loggable_path("/api/v1/users/u-1/state") == "/api/v1/users/u-1/state"


async def test_a_dead_delivery_is_one_warning_and_its_retries_log_nothing_at_info(
    hookline: Hookline, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hookline")
    port = _closed_port()
    # Every retry due at once: idle() then means all three attempts are recorded (a retry
    # due later would count as idle, and the check below would race the last attempt).
    activity = {"url": f"http://127.0.0.1:{port}/x", "retry_schedule": [0, 0, 0]}
    await hookline.create_rule(activity=activity)
    resp = await hookline.post("/api/v1/events", spin_event())
    (delivery_id,) = resp.json()["events"][0]["deliveries"]
    await hookline.idle()
    assert (await hookline.client.get(f"/api/v1/deliveries/{delivery_id}")).json()[
        "status"
    ] == "dead"
    assert _messages(caplog, "hookline.dispatcher") == [
        f"delivery {delivery_id} is dead after 3 attempt(s) to 127.0.0.1:{port}: "
        f"cannot connect to 127.0.0.1:{port}: connection refused"
    ]


async def test_a_failing_destination_is_logged_once_per_streak(
    hookline: Hookline, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hookline.dispatcher")
    host = receiver.base_url.removeprefix("http://")
    failures = FAILING_STREAK + 2
    receiver.script["/hook"] = [400] * failures  # final at once: one attempt, dead
    await hookline.create_rule(activity={"url": receiver.url("/hook")})
    resp = await hookline.post("/api/v1/events", [spin_event(f"u{i}") for i in range(failures)])
    assert resp.status_code == 202
    await hookline.idle()
    await hookline.post("/api/v1/events", spin_event("u-ok"))
    await hookline.idle()
    # Fewer failures than a streak afterwards: nothing more about the destination.
    receiver.script["/hook"] = [400] * (FAILING_STREAK - 1)
    await hookline.post("/api/v1/events", [spin_event(f"v{i}") for i in range(FAILING_STREAK - 1)])
    await hookline.idle()
    about_host = [
        m for m in _messages(caplog, "hookline.dispatcher") if m.startswith("destination")
    ]
    assert about_host == [
        f"destination {host} failed {FAILING_STREAK} attempts in a row (last: HTTP 400); "
        "logged again when it answers",
        f"destination {host} answers again after {failures} failed attempts",
    ]
    dead = [m for m in _messages(caplog, "hookline.dispatcher") if " is dead after " in m]
    assert len(dead) == failures + FAILING_STREAK - 1


async def test_successful_deliveries_log_nothing_but_their_requests_at_info(
    hookline: Hookline, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    await hookline.create_rule(activity={"url": receiver.url()})
    caplog.set_level(logging.INFO)
    await hookline.post("/api/v1/events", [spin_event(f"u{i}") for i in range(20)])
    await hookline.idle()
    await receiver.wait_for(20)
    ours = [r for r in caplog.records if r.name.startswith("hookline")]
    assert {r.name for r in ours} == {"hookline.access"}
    assert len(ours) == 1  # the one request


async def test_shutdown_says_what_it_waits_for(
    make_hookline: MakeHookline, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hookline")
    h = await make_hookline()
    receiver.delay["/slow"] = 0.5
    await h.create_rule(activity={"url": receiver.url("/slow")})
    await h.post("/api/v1/events", spin_event())
    await receiver.wait_inflight("/slow")
    await h.stop()
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("hookline")]
    assert "stopping: committing the events already accepted, then finishing sends" in lines
    assert "waiting up to 10 s for 1 delivery in flight" in lines
    assert lines[-1] == "stopped"
    assert len(receiver.on("/slow")) == 1  # the send in flight was let finish


@pytest.mark.timeout(90)
async def test_debug_shows_hookline_decisions_not_driver_traces(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "HOOKLINE_PORT": str(port),
        "HOOKLINE_DATA_DIR": str(tmp_path / "d"),
        "HOOKLINE_LOG_LEVEL": "debug",
        "HOOKLINE_RETRY_SCHEDULE": "0,0.05",
        "HOOKLINE_ALLOWED_NETWORKS": "127.0.0.0/8",  # the closed port is on loopback
    }
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(*SERVE, env=env, stdout=out, stderr=out)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            await _wait_healthy(client, proc)
            rule = {
                "name": "to-nowhere",
                "trigger": {"event_type": "e"},
                "activity": {"url": f"http://127.0.0.1:{_closed_port()}/x"},
            }
            assert (await client.post("/api/v1/rules", json=rule)).status_code == 201
            resp = await client.post("/api/v1/events", json={"event_type": "e", "user_ext_id": "u"})
            (delivery_id,) = resp.json()["events"][0]["deliveries"]
            for _ in range(200):
                detail = (await client.get(f"/api/v1/deliveries/{delivery_id}")).json()
                if detail["status"] == "dead":
                    break
                await asyncio.sleep(0.05)  # a separate process: no event to await
            assert detail["status"] == "dead"
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = log_path.read_text()
    assert "DEBUG hookline.dispatcher: delivery " in text  # a retry decision
    assert "INFO hookline.access: POST /api/v1/events 202" in text
    for line in ("starting: opening", "hookline ready: 0 enabled rules", "stopping:", "stopped"):
        assert line in text
    assert 'HTTP/1.1"' not in text  # uvicorn's own access log is off: one line per request
    # uvicorn's start-up lines share hookline's format, not uvicorn's "INFO:     ..." one.
    assert "INFO:     " not in text
    assert "INFO uvicorn.error: Application startup complete" in text
    for library in ("aiosqlite", "sqlalchemy", "asyncio"):
        assert f" {library}" not in text, library
