"""Crash safety: SIGKILL ``hookline serve`` mid-stream, restart it, lose nothing answered 202.

The server runs as a real subprocess on 127.0.0.1 with its SQLite file in a temporary data
dir. Eight concurrent senders post batches of events; every event causes exactly one
delivery to a receiver in this test's event loop. Once about a third of the events are
accepted, the server is killed with SIGKILL while requests (and deliveries) are in flight.
After a restart on the same data dir and port, the test checks that every event that got a
202 was delivered at least once, and that every request for one event carried the delivery
id the 202 returned as its ``webhook-id``.

Then it does what a well-behaved client does: it sends again, with the same ``eid``, every
batch whose answer it never got. Each of those events is either accepted now or reported as a
duplicate of one committed just before the kill; either way it must be delivered too, once
per event (one delivery per eid), however often the request itself arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import orjson
import pytest
from aiohttp import web

from tests.helpers import example_rule, serve_aiohttp

EVENT_TYPE = "crash_test"
TOTAL_EVENTS = 4000
SENDERS = 8
MAX_BATCH = 50
KILL_AFTER = TOTAL_EVENTS // 3
USERS = 40
# The receiver holds each request this long, so deliveries are in flight at the kill.
RECEIVER_DELAY = 0.002
RETRY_SCHEDULE = "0,0.05,0.1,0.2,0.5,1,1,1,1,1"
BODY_TEMPLATE = '{"event": "{{event.seq}}", "user": "{{state.user_ext_id}}"}'
HEALTH_TIMEOUT = 30.0
DELIVERY_TIMEOUT = 60.0


# --------------------------------------------------------------------------- the receiver


@dataclass
class Seen:
    """Every request the receiver got for one event (one ``seq``)."""

    webhook_ids: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)


@dataclass
class SeqReceiver:
    """An HTTP server on 127.0.0.1 that records ``webhook-id`` and body of every request."""

    delay: float = 0.0
    base_url: str = ""
    seen: dict[int, Seen] = field(default_factory=dict)
    requests: int = 0
    in_flight: int = 0
    bad: list[str] = field(default_factory=list)
    # The seqs a waiter still needs; each arrival removes its seq, then notifies.
    missing: set[int] = field(default_factory=set)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner, self.base_url = await serve_aiohttp(app)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        try:
            body = await request.read()
            if self.delay:
                await asyncio.sleep(self.delay)
            webhook_id = request.headers.get("webhook-id", "")
            try:
                data = orjson.loads(body)
                seq = int(data["event"])
                user = str(data["user"])
            except (ValueError, KeyError, TypeError) as exc:
                self.bad.append(f"{webhook_id}: {exc!r} in {body[:200]!r}")
                return web.Response(status=200, text="ok")
            async with self.changed:
                seen = self.seen.setdefault(seq, Seen())
                seen.webhook_ids.append(webhook_id)
                seen.users.append(user)
                self.requests += 1
                self.missing.discard(seq)
                self.changed.notify_all()
            return web.Response(status=200, text="ok")
        finally:
            self.in_flight -= 1

    async def wait_for_seqs(self, seqs: set[int], timeout: float) -> None:
        """Wait until every seq in ``seqs`` has arrived at least once (bounded)."""
        async with self.changed:
            self.missing = set(seqs) - self.seen.keys()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait_for(lambda: not self.missing), timeout)


@pytest.fixture
async def seq_receiver() -> AsyncIterator[SeqReceiver]:
    r = SeqReceiver(delay=RECEIVER_DELAY)
    await r.start()
    yield r
    await r.stop()


# --------------------------------------------------------------------------- the server


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _serve_command(port: int, data_dir: Path) -> list[str]:
    args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)]
    beside = Path(sys.executable).parent / "hookline"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside), *args]
    found = shutil.which("hookline")
    if found:
        return [found, *args]
    return [sys.executable, "-c", "from hookline.cli import main; main()", *args]


class Server:
    """``hookline serve`` as a subprocess; output goes to a log file, never to a pipe."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = _free_port()
        self.data_dir = tmp_path / "data"
        self.log_path = tmp_path / "server.log"
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        env = dict(os.environ)
        for key in [k for k in env if k.startswith("HOOKLINE_")]:
            del env[key]
        env["HOOKLINE_RETRY_SCHEDULE"] = RETRY_SCHEDULE
        env["HOOKLINE_ALLOWED_NETWORKS"] = "127.0.0.0/8"  # the receiver is on loopback
        env["HOOKLINE_LOG_LEVEL"] = "info"
        env["PYTHONUNBUFFERED"] = "1"
        if self._log is None:
            self._log = self.log_path.open("ab")
        self.starts += 1
        self._log.write(f"===== start {self.starts} =====\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            _serve_command(self.port, self.data_dir),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flush, nothing graceful."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)

    async def wait_exit(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        return await asyncio.to_thread(self.proc.wait, timeout)

    async def wait_healthy(self, timeout: float = HEALTH_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2.0) as client:
            while True:
                assert self.proc is not None
                code = self.proc.poll()
                assert code is None, f"hookline serve exited with {code} while starting"
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/healthz")).status_code == 200:
                        return
                assert time.monotonic() < deadline, f"no healthy /healthz within {timeout} s"
                await asyncio.sleep(0.05)

    def close(self) -> None:
        """Stop the process if it still runs (SIGTERM, then SIGKILL) and close the log."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def log_tail(self, lines: int = 80) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no server log: {exc})"
        return "\n".join(text.splitlines()[-lines:])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path)
    ok = False
    try:
        yield srv
        ok = True
    finally:
        srv.close()
        if not ok:
            print(f"----- tail of {srv.log_path} -----\n{srv.log_tail()}")


# --------------------------------------------------------------------------- the senders


def _event(seq: int) -> dict[str, Any]:
    return {
        "eid": f"crash-{seq}",
        "event_type": EVENT_TYPE,
        "user_ext_id": f"u-{seq % USERS}",
        "ext_brand_id": "brand-1",
        "payload": {"seq": seq},
    }


def _batches(seqs: range, rng: random.Random) -> list[list[int]]:
    out: list[list[int]] = []
    i = seqs.start
    while i < seqs.stop:
        size = rng.randint(1, MAX_BATCH)
        out.append(list(range(i, min(i + size, seqs.stop))))
        i += size
    return out


@dataclass
class Ledger:
    """What the client knows: which events were acknowledged, with which delivery ids."""

    acked: dict[int, str] = field(default_factory=dict)  # seq -> delivery id from the 202
    event_ids: dict[int, str] = field(default_factory=dict)  # seq -> event id from the 202
    duplicates: set[int] = field(default_factory=set)  # acked as a duplicate on a resend
    unanswered: list[list[int]] = field(default_factory=list)  # batches with no answer
    problems: list[str] = field(default_factory=list)
    in_flight: int = 0

    def record(self, batch: list[int], body: dict[str, Any], *, resend: bool) -> None:
        events = body.get("events")
        if not isinstance(events, list) or len(events) != len(batch):
            self.problems.append(f"202 for {len(batch)} events had body {body!r:.300}")
            return
        for seq, ev in zip(batch, events, strict=True):
            if ev.get("eid") != f"crash-{seq}":
                self.problems.append(f"seq {seq}: answered eid {ev.get('eid')!r}")
            self.event_ids[seq] = ev["id"]
            if ev.get("duplicate"):
                # Only a resend can meet a duplicate: the first try was committed.
                if not resend:
                    self.problems.append(f"seq {seq}: duplicate on its first send")
                self.duplicates.add(seq)
            # A duplicate names the delivery its first, unanswered send caused.
            deliveries = ev.get("deliveries")
            if not isinstance(deliveries, list) or len(deliveries) != 1:
                self.problems.append(f"seq {seq}: expected one delivery, got {deliveries!r}")
                continue
            self.acked[seq] = deliveries[0]


async def _send_all(
    client: httpx.AsyncClient,
    batches: list[list[int]],
    ledger: Ledger,
    *,
    resend: bool,
    progress: asyncio.Condition,
    stop: asyncio.Event,
) -> None:
    """``SENDERS`` tasks post the batches; a batch without an answer goes to ``unanswered``."""
    todo = iter(batches)

    async def sender() -> None:
        for batch in todo:
            if stop.is_set():
                ledger.unanswered.append(batch)
                continue
            body = orjson.dumps([_event(s) for s in batch])
            ledger.in_flight += 1
            try:
                resp = await client.post(
                    "/api/v1/events", content=body, headers={"content-type": "application/json"}
                )
            except httpx.TransportError as exc:
                if not stop.is_set():
                    ledger.problems.append(f"request failed before the kill: {exc!r}")
                ledger.unanswered.append(batch)
                continue
            finally:
                ledger.in_flight -= 1
            if resp.status_code != 202:
                ledger.problems.append(f"status {resp.status_code}: {resp.text[:300]}")
                ledger.unanswered.append(batch)
                continue
            ledger.record(batch, resp.json(), resend=resend)
            async with progress:
                progress.notify_all()

    await asyncio.gather(*(sender() for _ in range(SENDERS)))
    async with progress:
        progress.notify_all()


async def _list_deliveries(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    """Every delivery matching ``params``, following ``next_cursor`` (bounded)."""
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(10 * TOTAL_EVENTS // 500 + 10):
        query = {**params, "limit": 500, **({"cursor": cursor} if cursor else {})}
        resp = await client.get("/api/v1/deliveries", params=query)
        assert resp.status_code == 200, resp.text
        page = resp.json()
        out.extend(page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            return out
    raise AssertionError("paging /api/v1/deliveries did not end")


async def _wait_settled(client: httpx.AsyncClient, timeout: float) -> None:
    """Wait until no delivery is pending or retrying (every outcome is on record)."""
    deadline = time.monotonic() + timeout
    while True:
        active = 0
        for status in ("pending", "retrying"):
            resp = await client.get("/api/v1/deliveries", params={"status": status, "limit": 1})
            assert resp.status_code == 200, resp.text
            active += len(resp.json()["data"])
        if not active:
            return
        assert time.monotonic() < deadline, "deliveries still pending or retrying"
        await asyncio.sleep(0.1)


# --------------------------------------------------------------------------- the test


@pytest.mark.timeout(300)
async def test_sigkill_mid_stream_loses_no_accepted_event(
    server: Server, seq_receiver: SeqReceiver
) -> None:
    t0 = time.monotonic()
    server.start()
    await server.wait_healthy()

    limits = httpx.Limits(max_connections=SENDERS, max_keepalive_connections=SENDERS)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30.0, limits=limits) as api:
        rule = example_rule(
            name="crash-test",
            trigger={"event_type": EVENT_TYPE},
            conditions=None,
            activity={"url": seq_receiver.base_url + "/hook", "body": BODY_TEMPLATE},
        )
        resp = await api.post("/api/v1/rules", json=rule)
        assert resp.status_code == 201, resp.text

        ledger = Ledger()
        progress = asyncio.Condition()
        killed = asyncio.Event()
        kill_state: dict[str, int] = {}

        async def killer() -> None:
            async with progress:
                await progress.wait_for(
                    lambda: (
                        (len(ledger.acked) >= KILL_AFTER and ledger.in_flight > 0)
                        or sender_task.done()
                    )
                )
            assert not sender_task.done(), "every batch was answered before the kill"
            # Not in step with an answer: sometimes a group is committed but not yet answered.
            await asyncio.sleep(random.uniform(0.0, 0.03))
            assert not sender_task.done(), "every batch was answered before the kill"
            killed.set()  # first, so the senders count the failures that follow as expected
            server.kill()
            kill_state.update(
                acked=len(ledger.acked),
                requests_in_flight=ledger.in_flight,
                deliveries_in_flight=seq_receiver.in_flight,
                received=seq_receiver.requests,
            )

        batches = _batches(range(TOTAL_EVENTS), random.Random(20240917))
        sender_task = asyncio.create_task(
            _send_all(api, batches, ledger, resend=False, progress=progress, stop=killed)
        )
        try:
            await asyncio.wait_for(asyncio.gather(sender_task, killer()), 120)
        finally:
            sender_task.cancel()
            await asyncio.gather(sender_task, return_exceptions=True)
        assert await server.wait_exit() == -signal.SIGKILL
        t_kill = time.monotonic()

    assert not ledger.problems, ledger.problems[:10]
    acked_before_kill = dict(ledger.acked)
    unanswered = ledger.unanswered
    ledger.unanswered = []
    unanswered_seqs = {s for b in unanswered for s in b}
    assert len(acked_before_kill) + len(unanswered_seqs) == TOTAL_EVENTS
    assert len(acked_before_kill) >= KILL_AFTER

    server.start()
    await server.wait_healthy()
    t_restart = time.monotonic()

    # Polling uses fresh connections: a kept-alive one idle for uvicorn's 5 s keep-alive
    # timeout can be closed by the server just as a request goes out on it.
    no_keepalive = httpx.Limits(max_keepalive_connections=0)
    async with (
        httpx.AsyncClient(base_url=server.base_url, timeout=30.0, limits=limits) as api,
        httpx.AsyncClient(base_url=server.base_url, timeout=30.0, limits=no_keepalive) as ctl,
    ):
        # 1. Every event answered 202 before the kill arrives, with its own webhook-id.
        await seq_receiver.wait_for_seqs(set(acked_before_kill), DELIVERY_TIMEOUT)
        missing = sorted(set(acked_before_kill) - seq_receiver.seen.keys())
        assert not missing, (
            f"{len(missing)} of {len(acked_before_kill)} events answered 202 were never "
            f"delivered, e.g. seqs {missing[:10]}"
        )
        t_recovered = time.monotonic()

        # 2. The client sends again, same eids, whatever got no answer (and what was never sent).
        await _send_all(
            api, unanswered, ledger, resend=True, progress=progress, stop=asyncio.Event()
        )
        assert not ledger.problems, ledger.problems[:10]
        assert not ledger.unanswered, f"{len(ledger.unanswered)} batches failed after restart"
        every_seq = set(range(TOTAL_EVENTS))
        assert ledger.acked.keys() | ledger.duplicates == every_seq
        # A duplicate can only be an event committed just before the kill, answer lost.
        assert not ledger.duplicates & acked_before_kill.keys()
        assert ledger.duplicates <= unanswered_seqs

        await seq_receiver.wait_for_seqs(every_seq, DELIVERY_TIMEOUT)
        missing = sorted(every_seq - seq_receiver.seen.keys())
        assert not missing, f"{len(missing)} events never delivered, e.g. seqs {missing[:10]}"

        # 3. Server side: everything settled, one succeeded delivery per event.
        await _wait_settled(ctl, DELIVERY_TIMEOUT)
        succeeded = await _list_deliveries(ctl, status="succeeded")
        dead = await _list_deliveries(ctl, status="dead")
    t_done = time.monotonic()

    assert not seq_receiver.bad, seq_receiver.bad[:10]
    assert not dead, [d["id"] + ": " + str(d["last_error"]) for d in dead[:10]]
    by_id = {d["id"]: d for d in succeeded}
    assert len(by_id) == len(succeeded) == TOTAL_EVENTS

    duplicated = 0
    for seq in range(TOTAL_EVENTS):
        seen = seq_receiver.seen[seq]
        # Every request for one event carries one webhook-id: its one delivery's id.
        assert len(set(seen.webhook_ids)) == 1, f"seq {seq}: webhook-ids {seen.webhook_ids}"
        webhook_id = seen.webhook_ids[0]
        if seq in ledger.acked:
            assert webhook_id == ledger.acked[seq], (
                f"seq {seq}: 202 said delivery {ledger.acked[seq]}, requests carried {webhook_id}"
            )
        # No webhook-id we never heard of: each is a recorded, succeeded delivery of the
        # event the 202 (or the duplicate answer) named.
        assert webhook_id in by_id, f"seq {seq}: webhook-id {webhook_id} is not on record"
        assert by_id[webhook_id]["event_id"] == ledger.event_ids[seq], f"seq {seq}"
        assert set(seen.users) == {f"u-{seq % USERS}"}, f"seq {seq}: {seen.users}"
        duplicated += len(seen.webhook_ids) > 1
    assert {w for s in seq_receiver.seen.values() for w in s.webhook_ids} == by_id.keys()
    assert seq_receiver.seen.keys() == set(range(TOTAL_EVENTS))

    print(
        f"\ncrash test: {TOTAL_EVENTS} events; killed at {kill_state}; "
        f"{len(unanswered_seqs)} unanswered, {len(ledger.duplicates)} of them committed "
        f"before the kill; {seq_receiver.requests} requests received, {duplicated} events "
        f"delivered more than once; phases: send+kill {t_kill - t0:.1f} s, restart "
        f"{t_restart - t_kill:.1f} s, recovery {t_recovered - t_restart:.1f} s, "
        f"resend+settle {t_done - t_recovered:.1f} s"
    )
