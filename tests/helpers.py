"""Test doubles that are real: a receiver on 127.0.0.1 and hookline served by uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import uvicorn
from aiohttp import web

from hookline.api import create_app
from hookline.deliveries import Delivery, DeliveryStatus
from hookline.events import now_ms
from hookline.ids import new_id
from hookline.netguard import Lookup
from hookline.runtime import Runtime, build_runtime
from hookline.settings import Settings


async def serve_aiohttp(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve an aiohttp app on a free 127.0.0.1 port; the runner (to clean up) and base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@dataclass
class Received:
    method: str
    path: str
    query: str  # exactly as on the wire, still percent-encoded
    headers: dict[str, str]
    body: bytes
    raw_path: str = ""

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that records requests and answers as scripted."""

    base_url: str = ""
    requests: list[Received] = field(default_factory=list)
    # path -> statuses to answer in order; after they run out, 200.
    script: dict[str, list[int]] = field(default_factory=dict)
    delay: dict[str, float] = field(default_factory=dict)
    extra_headers: dict[str, dict[str, str]] = field(default_factory=dict)
    inflight: dict[str, int] = field(default_factory=dict)
    max_inflight: dict[str, int] = field(default_factory=dict)
    peak_inflight: int = 0  # the most requests handled at once, over every path
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    # Set by stop(): a request still held by ``delay`` is answered at once, so a test's
    # teardown does not wait out a delay that has proved what it was for.
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    def url(self, path: str = "/hook") -> str:
        return self.base_url + path

    def on(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner, self.base_url = await serve_aiohttp(app)

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        received = Received(
            request.method,
            request.path,
            request.raw_path.partition("?")[2],
            {k.lower(): v for k, v in request.headers.items()},
            body,
            request.raw_path,
        )
        path = request.path
        self.inflight[path] = self.inflight.get(path, 0) + 1
        async with self._changed:
            self._changed.notify_all()
        self.max_inflight[path] = max(self.max_inflight.get(path, 0), self.inflight[path])
        self.peak_inflight = max(self.peak_inflight, sum(self.inflight.values()))
        pause = self.delay.get(path)
        if pause:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), pause)
        self.inflight[path] -= 1
        statuses = self.script.get(request.path)
        status = statuses.pop(0) if statuses else 200
        async with self._changed:
            self.requests.append(received)
            self._changed.notify_all()
        return web.Response(
            status=status, text="ok", headers=self.extra_headers.get(request.path, {})
        )

    async def wait_inflight(self, path: str = "/hook", timeout: float = 15.0) -> None:
        """Wait until a request on ``path`` is being handled (it may still be delayed)."""
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: self.inflight.get(path, 0) > 0), timeout
            )

    async def wait_for(
        self, count: int, path: str | None = None, timeout: float = 15.0
    ) -> list[Received]:
        """Wait until ``count`` requests (on ``path``) have arrived."""

        def enough() -> bool:
            return len(self.on(path) if path else self.requests) >= count

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(enough), timeout)
        return self.on(path) if path else list(self.requests)


class _Server(uvicorn.Server):
    """uvicorn's server, stopped as soon as a test asks rather than at its next poll.

    uvicorn looks at ``should_exit`` every 0.1 s and then waits a fixed 0.1 s for its
    connections to hear of the shutdown: a quarter of a second per test, for tests that close
    their client first. Here the stop is an event, and the shutdown waits only while a
    connection is still open; the rest (closing the sockets, waiting for requests in hand,
    the lifespan shutdown that stops the runtime) is uvicorn's own.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.exit_now = asyncio.Event()

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            # At most 0.1 s, as uvicorn's own loop, so the date header stays current.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.exit_now.wait(), 0.1)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        # A closed connection leaves the set a loop turn or two later, without uvicorn's 0.1 s.
        for _ in range(10):
            if not self.server_state.connections:
                break
            await asyncio.sleep(0)
        await self._wait_tasks_to_complete()
        await self.lifespan.shutdown()

    def exit(self) -> None:
        self.should_exit = True
        self.exit_now.set()


@dataclass
class Hookline:
    """hookline served over real HTTP on 127.0.0.1, with a client pointed at it."""

    runtime: Runtime
    base_url: str
    client: httpx.AsyncClient
    server: _Server
    task: asyncio.Task[None]

    async def post(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        if body is not None:
            kw["json"] = body
        return await self.client.post(path, **kw)

    async def create_rule(self, **overrides: Any) -> dict[str, Any]:
        rule = example_rule(**overrides)
        resp = await self.client.post("/api/v1/rules", json=rule)
        assert resp.status_code == 201, resp.text
        result: dict[str, Any] = resp.json()
        return result

    async def idle(self) -> None:
        await self.runtime.dispatcher.idle()

    async def stop(self) -> None:
        await self.client.aclose()
        self.server.exit()
        await self.task


async def serve(
    settings: Settings, *, lookup: Lookup | None = None, clock: Callable[[], int] | None = None
) -> Hookline:
    """Serve on a free 127.0.0.1 port; ``lookup`` stubs the resolver, ``clock`` signing time.

    The settings get the real port, so hookline knows its own echo address as it does when
    `hookline serve` runs.
    """
    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets that say so, and
    # without it every answer waited ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # The real port; the host stays as given (the socket is on loopback either way), so a
    # test can ask how hookline behaves when told it listens elsewhere.
    settings = dataclasses.replace(settings, port=port)
    runtime = build_runtime(settings, lookup=lookup, clock=clock)
    app = create_app(runtime)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    base = f"http://127.0.0.1:{port}"
    client = httpx.AsyncClient(base_url=base, timeout=30)
    return Hookline(runtime, base, client, server, task)


SPIN_BODY = """{"saw_template_id": "{{event.saw_template_id}}",
 "minigame_spins_count": "{{event.minigame_spins_count}}",
 "smartico_user_id": "{{state.user_id}}",
 "user_ext_id": "{{state.user_ext_id}}",
 "brand": "{{state.core_sm_brand_id}}"}"""


def example_rule(**overrides: Any) -> dict[str, Any]:
    """The issue's rule shape: spin events with at least one spin call the CRM."""
    activity = {
        "type": "webhook",
        "url": "http://127.0.0.1:9/unused",
        "method": "POST",
        "content_type": "application/json",
        "headers": {"X-Api-Key": "k-123"},
        "body": SPIN_BODY,
    }
    activity.update(overrides.pop("activity", {}))
    rule: dict[str, Any] = {
        "name": "spin-to-crm",
        "enabled": True,
        "trigger": {"event_type": "minigame_spin_issued"},
        "conditions": {"all": [{"field": "event.minigame_spins_count", "op": "gte", "value": 1}]},
        "activity": activity,
    }
    rule.update(overrides)
    return rule


def example_journey(
    name: str = "welcome", url: str = "http://127.0.0.1:9/hi", **overrides: Any
) -> dict[str, Any]:
    """An active journey on spins whose one block posts to ``url``; ``overrides`` replace."""
    journey: dict[str, Any] = {
        "name": name,
        "status": "active",
        "entry": {"trigger": {"event_type": "minigame_spin_issued"}},
        "start": "hello",
        "blocks": {"hello": {"type": "webhook", "activity": {"url": url}}},
    }
    return journey | overrides


def spin_event(user: str = "u-1", spins: int = 3, **extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_type": "minigame_spin_issued",
        "user_ext_id": user,
        "ext_brand_id": "brand-1",
        "payload": {"saw_template_id": 12, "minigame_spins_count": spins},
    }
    event.update(extra)
    return event


ServeFactory = Callable[..., Any]


def due_delivery(url: str, **changes: Any) -> Delivery:
    """A delivery due now, as a store holds it, to write without the engine."""
    now = now_ms()
    delivery = Delivery(
        id=new_id("dlv"),
        event_id=None,
        rule_id=None,
        webhook_id=None,
        user_ext_id="u-1",
        status=DeliveryStatus.PENDING,
        method="POST",
        url=url,
        headers=(),
        body=b"{}",
        timeout=5.0,
        retry_schedule=(0.0,),
        attempts=0,
        created_at=now,
        next_attempt_at=now,
        updated_at=now,
    )
    return dataclasses.replace(delivery, **changes)
