"""An attempt's error says what failed and where, in plain words, not the client library's."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey

from hookline.netguard import NetworkPolicy
from hookline.sender import Request, Sender, local_sender
from hookline.sender_errors import describe
from hookline.settings import SENDERS
from tests.conftest import LOOPBACK, each_sender
from tests.helpers import Hookline, spin_event


@pytest.fixture(params=SENDERS)
def sender_kind(request: pytest.FixtureRequest) -> str:
    """Contract tests: every test here runs with each sender (reqwest and aiohttp)."""
    return each_sender(request)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def sender(sender_kind: str) -> AsyncIterator[Sender]:
    # The servers here listen on loopback, which the guard blocks unless allowed.
    s = local_sender(sender_kind, 4, 4, NetworkPolicy(LOOPBACK))
    await s.start()
    yield s
    await s.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _error(sender: Sender, url: str) -> str | None:
    ex = await sender.exchange(Request("POST", url, (), b"{}", 5.0, "dlv_test"))
    return ex.error


async def _server(handler: Handler) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_connection_refused_names_the_address(sender: Sender) -> None:
    port = _closed_port()
    error = await _error(sender, f"http://127.0.0.1:{port}/hook")
    assert error == f"cannot connect to 127.0.0.1:{port}: connection refused"


async def test_connection_reset_names_the_address(sender: Sender) -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # linger 0: the close sends RST

    server, port = await _server(reset)
    async with server:
        error = await _error(sender, f"http://127.0.0.1:{port}/hook")
    assert error == f"connection reset by 127.0.0.1:{port}"


async def test_a_close_without_an_answer_says_so(sender: Sender) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server, port = await _server(hang_up)
    async with server:
        error = await _error(sender, f"http://127.0.0.1:{port}/hook")
    assert error == f"127.0.0.1:{port} closed the connection without an answer"


def test_dns_failure_names_the_host() -> None:
    # Built by hand: a real lookup would leave 127.0.0.1.
    key = ConnectionKey("crm.invalid", 443, True, True, None, None, None, None)
    gai = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    exc = aiohttp.ClientConnectorDNSError(key, gai)
    assert describe(exc, "https://crm.invalid/hook") == (
        "cannot resolve host crm.invalid: name or service not known"
    )


def test_other_client_errors_stay_short_and_name_the_destination() -> None:
    payload = aiohttp.ClientPayloadError("Response payload is not completed\nmore detail")
    assert describe(payload, "http://127.0.0.1:8/x") == (
        "the answer from 127.0.0.1:8 broke off: Response payload is not completed"
    )
    assert describe(aiohttp.ClientError("x" * 1000), "http://h/") == ("ClientError: " + "x" * 287)


async def test_the_attempt_record_carries_the_plain_wording(hookline: Hookline) -> None:
    port = _closed_port()
    await hookline.create_rule(
        activity={"url": f"http://127.0.0.1:{port}/closed", "retry_schedule": [0]}
    )
    resp = await hookline.post("/api/v1/events", spin_event())
    (delivery_id,) = resp.json()["events"][0]["deliveries"]
    await hookline.idle()
    detail = (await hookline.client.get(f"/api/v1/deliveries/{delivery_id}")).json()
    assert detail["status"] == "dead"
    assert detail["last_error"] == f"cannot connect to 127.0.0.1:{port}: connection refused"
    assert detail["attempt_log"][0]["error"] == detail["last_error"]
    assert "ssl:default" not in str(detail)
