"""The SSRF guard end to end: loopback blocked by default, allowed on purpose, rebinding caught.

Names resolve through a stub (``hooks.test`` -> 127.0.0.1), so no test needs DNS, and the
safety net in conftest fails any test that tries to connect beyond loopback. The resolver's
checks for every blocked range are unit-tested in test_netguard.py.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from hookline.errors import ConfigError
from hookline.netguard import IPAddress, NetworkPolicy, own_addresses, parse_networks
from hookline.sender import GuardedResolver
from hookline.settings import SENDERS, Settings
from tests.conftest import LOOPBACK, each_sender, netsafety
from tests.helpers import Hookline, Receiver, example_rule, spin_event
from tests.test_netguard import BLOCKED


@pytest.fixture(params=SENDERS)
def sender_kind(request: pytest.FixtureRequest) -> str:
    """Contract tests: every test here runs with each sender (reqwest and aiohttp)."""
    return each_sender(request)


MakeHookline = Callable[..., Coroutine[Any, Any, Hookline]]
NOTHING_ALLOWED: tuple[Any, ...] = ()


def stub(answers: dict[str, list[list[str]]]) -> Callable[[str, int], Any]:
    """A resolver giving each name its answers in turn (the last one repeats), and a log."""
    calls: list[str] = []

    async def lookup(host: str, port: int) -> list[IPAddress]:
        seq = answers[host]
        n = calls.count(host)
        calls.append(host)
        return [ipaddress.ip_address(a) for a in seq[min(n, len(seq) - 1)]]

    lookup.calls = calls  # type: ignore[attr-defined]
    return lookup


def named_url(receiver: Receiver, path: str = "/hook", name: str = "hooks.test") -> str:
    port = receiver.base_url.rsplit(":", 1)[1]
    return f"http://{name}:{port}{path}"


async def _only_delivery(h: Hookline, resp: Any) -> dict[str, Any]:
    (delivery_id,) = resp.json()["events"][0]["deliveries"]
    await h.idle()
    detail: dict[str, Any] = (await h.client.get(f"/api/v1/deliveries/{delivery_id}")).json()
    return detail


# --- by name, through the resolver -----------------------------------------------------------


async def test_a_name_resolving_to_loopback_is_blocked_by_default_and_final(
    make_hookline: MakeHookline, receiver: Receiver
) -> None:
    h = await make_hookline(
        allowed_networks=NOTHING_ALLOWED, lookup=stub({"hooks.test": [["127.0.0.1"]]})
    )
    await h.create_rule(activity={"url": named_url(receiver)})
    detail = await _only_delivery(h, await h.post("/api/v1/events", spin_event()))
    assert detail["status"] == "dead"
    (attempt,) = detail["attempt_log"]  # final: not retried
    assert attempt["error"].startswith("destination_blocked: hooks.test resolved to 127.0.0.1")
    assert "HOOKLINE_ALLOWED_NETWORKS=127.0.0.1/32" in attempt["error"]
    assert detail["last_error"] == attempt["error"]
    assert receiver.requests == []


async def test_a_name_resolving_to_an_allowed_network_arrives_with_its_own_host(
    make_hookline: MakeHookline, receiver: Receiver
) -> None:
    h = await make_hookline(lookup=stub({"hooks.test": [["127.0.0.1"]]}))
    await h.create_rule(activity={"url": named_url(receiver)})
    detail = await _only_delivery(h, await h.post("/api/v1/events", spin_event()))
    assert detail["status"] == "succeeded"
    (got,) = receiver.requests
    assert got.headers["host"] == f"hooks.test:{receiver.base_url.rsplit(':', 1)[1]}"


async def test_rebinding_is_caught_on_the_next_attempt(
    make_hookline: MakeHookline, receiver: Receiver
) -> None:
    # Allowed first (loopback, on purpose), then the name turns to the metadata address.
    lookup = stub({"rebind.test": [["127.0.0.1"], ["169.254.169.254"]]})
    h = await make_hookline(lookup=lookup, retry_schedule=(0, 0, 0))
    receiver.script["/hook"] = [503]
    # The receiver closes the connection, so the retry needs a new one, and a new answer.
    receiver.extra_headers["/hook"] = {"Connection": "close"}
    await h.create_rule(activity={"url": named_url(receiver, name="rebind.test")})
    detail = await _only_delivery(h, await h.post("/api/v1/events", spin_event()))
    assert detail["status"] == "dead"
    first, second = detail["attempt_log"]
    assert first["status_code"] == 503
    assert second["error"].startswith(
        "destination_blocked: rebind.test resolved to 169.254.169.254, which is link-local"
    )
    assert len(receiver.requests) == 1
    assert lookup.calls == ["rebind.test", "rebind.test"]  # type: ignore[attr-defined]


async def test_the_resolver_answers_only_checked_addresses_of_the_family_asked() -> None:
    lookup = stub({"two.test": [["127.0.0.1", "::1"]], "bad.test": [["127.0.0.1", "10.0.0.1"]]})
    resolver = GuardedResolver(NetworkPolicy(parse_networks("127.0.0.0/8, ::1/128")), lookup)
    v4 = await resolver.resolve("two.test", 80, socket.AF_INET)
    assert [(r["host"], r["port"], r["family"]) for r in v4] == [("127.0.0.1", 80, socket.AF_INET)]
    both = await resolver.resolve("two.test", 80, socket.AF_UNSPEC)
    assert [r["host"] for r in both] == ["127.0.0.1", "::1"]
    with pytest.raises(OSError, match=r"destination_blocked: bad\.test resolved to 10\.0\.0\.1"):
        await resolver.resolve("bad.test", 80, socket.AF_UNSPEC)


@pytest.mark.parametrize("address", BLOCKED)
async def test_every_blocked_range_is_refused_by_the_resolver_aiohttp_uses(address: str) -> None:
    resolver = GuardedResolver(NetworkPolicy(), stub({"inside.test": [[address]]}))
    with pytest.raises(OSError, match=r"^destination_blocked: inside\.test resolved to ") as err:
        await resolver.resolve("inside.test", 443, socket.AF_UNSPEC)
    assert "HOOKLINE_ALLOWED_NETWORKS=" in str(err.value)


# --- literal addresses: checked before sending, refused when saved ---------------------------


@pytest.mark.parametrize("senders", [0, 1], ids=["in-process", "sender-process"])
async def test_a_literal_loopback_url_saved_while_allowed_is_blocked_once_not(
    make_hookline: MakeHookline, receiver: Receiver, tmp_path: Path, senders: int
) -> None:
    first = await make_hookline(sender_processes=senders)
    await first.create_rule(activity={"url": receiver.url()})
    await first.stop()
    # The same data, now without the setting: the stored URL is checked at send time.
    h = await make_hookline(sender_processes=senders, allowed_networks=NOTHING_ALLOWED)
    detail = await _only_delivery(h, await h.post("/api/v1/events", spin_event()))
    assert detail["status"] == "dead"
    (attempt,) = detail["attempt_log"]
    assert attempt["error"] == (
        "destination_blocked: 127.0.0.1, which is loopback 127.0.0.0/8; "
        "allow it on purpose with HOOKLINE_ALLOWED_NETWORKS=127.0.0.1/32"
    )
    assert receiver.requests == []


@pytest.mark.parametrize("senders", [0, 1], ids=["in-process", "sender-process"])
async def test_loopback_is_reached_when_allowed_from_either_sender(
    make_hookline: MakeHookline, receiver: Receiver, senders: int
) -> None:
    h = await make_hookline(sender_processes=senders, allowed_networks=LOOPBACK)
    await h.create_rule(activity={"url": receiver.url()})
    detail = await _only_delivery(h, await h.post("/api/v1/events", spin_event()))
    assert detail["status"] == "succeeded"
    assert len(receiver.requests) == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://0x7f.1/",
    ],
)
async def test_a_literal_blocked_url_is_refused_wherever_it_is_saved(
    make_hookline: MakeHookline, url: str
) -> None:
    h = await make_hookline(allowed_networks=NOTHING_ALLOWED)

    async def refused(method: str, path: str, body: Any, field: str) -> None:
        resp = await h.client.request(method, path, json=body)
        assert resp.status_code == 422, resp.text
        assert resp.json()["code"] == "invalid_input"
        assert resp.json()["field"] == field
        assert "HOOKLINE_ALLOWED_NETWORKS=" in resp.json()["detail"]

    await refused("POST", "/api/v1/rules", example_rule(activity={"url": url}), "activity.url")
    await refused(
        "POST", "/api/v1/rules/validate", example_rule(activity={"url": url}), "activity.url"
    )
    await refused("POST", "/api/v1/webhooks", {"name": "w", "url": url}, "url")
    await refused("POST", "/api/v1/webhooks/preview", {"webhook": {"url": url}}, "webhook.url")
    await refused("POST", "/api/v1/webhooks/test", {"webhook": {"url": url}}, "webhook.url")
    # And changes: a rule or webhook saved with a good URL cannot be moved to a blocked one.
    rule = await h.create_rule(activity={"url": "https://api.example.test/x"})
    await refused(
        "PUT", f"/api/v1/rules/{rule['id']}", example_rule(activity={"url": url}), "activity.url"
    )
    await refused(
        "PATCH",
        f"/api/v1/rules/{rule['id']}",
        {"activity": {"type": "webhook", "url": url}},
        "activity.url",
    )
    saved = (await h.post("/api/v1/webhooks", {"name": "w", "url": "https://a.test/"})).json()
    await refused("PUT", f"/api/v1/webhooks/{saved['id']}", {"name": "w", "url": url}, "url")


# --- hookline's own echo service is always allowed -------------------------------------------


@pytest.mark.parametrize("senders", [0, 1], ids=["in-process", "sender-process"])
async def test_the_own_echo_service_is_reached_with_nothing_allowed(
    make_hookline: MakeHookline, senders: int
) -> None:
    h = await make_hookline(sender_processes=senders, allowed_networks=NOTHING_ALLOWED)
    await h.create_rule(activity={"url": f"{h.base_url}/echo-send/own-echo-1/"})
    detail = await _only_delivery(h, await h.post("/api/v1/events", spin_event()))
    assert detail["status"] == "succeeded", detail
    echoed = (await h.client.get("/echo-list/own-echo-1/")).json()["requests"]
    assert len(echoed) == 1


async def test_only_the_echo_routes_of_the_own_address_are_exempt(
    make_hookline: MakeHookline,
) -> None:
    h = await make_hookline(allowed_networks=NOTHING_ALLOWED)
    port = int(h.base_url.rsplit(":", 1)[1])
    for url in (
        f"{h.base_url}/api/v1/rules",
        f"{h.base_url}/echo-list/own-echo-1/",
        f"http://127.0.0.1:{port + 1}/echo-send/own-echo-1/",
        f"http://127.0.0.2:{port}/echo-send/own-echo-1/",
    ):
        resp = await h.post("/api/v1/rules", example_rule(activity={"url": url}))
        assert resp.status_code == 422, url
    # A templated echo secret is fine when saved; what it renders to is checked when sent.
    templated = example_rule(
        activity={"url": f"{h.base_url}/echo-send/{{{{state.user_ext_id}}}}-echo/"}
    )
    assert (await h.post("/api/v1/rules", templated)).status_code == 201


def test_own_addresses_cover_loopback_when_bound_to_a_wildcard_or_loopback() -> None:
    assert own_addresses("127.0.0.1", 8080) == {
        ("127.0.0.1", 8080),
        ("::1", 8080),
        ("localhost", 8080),
    }
    assert ("127.0.0.1", 8080) in own_addresses("0.0.0.0", 8080)
    assert own_addresses("10.1.2.3", 80) == {("10.1.2.3", 80)}
    policy = NetworkPolicy(own_echo=own_addresses("127.0.0.1", 8080))
    assert policy.is_own_echo("http://127.0.0.1:8080/echo-send/abcdefgh/")
    assert policy.is_own_echo("http://localhost:8080/echo-send/abcdefgh?status=503")
    assert not policy.is_own_echo("http://127.0.0.1:8080/echo-send/abcdefgh/../../api/v1/x")
    assert not policy.is_own_echo("http://127.0.0.1:8080/echo-send/%2e%2e/")
    assert not policy.is_own_echo("https://127.0.0.1:8080/echo-send/abcdefgh/")
    assert policy.is_own_echo("http://127.0.0.1:8080/echo-send/{{state.x}}-e/", saved=True)
    assert not policy.is_own_echo("http://127.0.0.1:8080/echo-send/../", saved=True)
    assert not policy.is_own_echo("http://127.0.0.1:8080/echo-send/{{state.x}}-e/")
    assert NetworkPolicy.from_json(policy.as_json()) == policy


# --- the setting -------------------------------------------------------------------------------


def test_allowed_networks_come_from_the_environment() -> None:
    settings = Settings.from_env({"HOOKLINE_ALLOWED_NETWORKS": "127.0.0.0/8, 10.1.2.0/24"})
    assert [str(n) for n in settings.allowed_networks] == ["127.0.0.0/8", "10.1.2.0/24"]
    assert Settings.from_env({}).allowed_networks == ()
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"HOOKLINE_ALLOWED_NETWORKS": "10.0.0.0/8, intranet"})
    assert err.value.field == "HOOKLINE_ALLOWED_NETWORKS"


# --- the tests' own safety net -----------------------------------------------------------------


def test_the_safety_net_refuses_a_connection_beyond_loopback() -> None:
    with socket.socket() as sock, pytest.raises(PermissionError, match=r"192\.0\.2\.1:80"):
        sock.connect(("192.0.2.1", 80))  # TEST-NET-1: never routed, and never tried
    with pytest.raises(PermissionError, match="DNS lookup"):
        socket.getaddrinfo("example.com", 80)
    assert len(netsafety.violations) == 2
    netsafety.violations.clear()  # expected here; any other test that does this fails


async def test_the_safety_net_refuses_a_reqwest_client_beyond_loopback() -> None:
    """reqwest connects from native code: its clients are judged by the address they pin."""
    from hookline.sender import Request
    from hookline.sender_reqwest import ReqwestSender

    allow_all = NetworkPolicy(allowed=parse_networks("0.0.0.0/0"))
    lookup = stub({"far.test": [["192.0.2.7"]]})
    sender = ReqwestSender(8, 8, policy=allow_all, lookup=lookup)
    await sender.start()
    try:
        for url in ("http://far.test:80/hook", "http://192.0.2.8:80/hook"):
            request = Request("POST", url, (), b"{}", timeout=5.0, webhook_id="msg_net")
            exchange = await sender.exchange(request)
            assert exchange.status_code is None and exchange.error is not None
    finally:
        await sender.close()
    assert [v for v in netsafety.violations if "192.0.2.7" in v or "192.0.2.8" in v]
    assert len(netsafety.violations) == 2
    netsafety.violations.clear()  # expected here; any other test that does this fails


_UVLOOP_PROBE = """
import asyncio, socket, sys
import uvloop
# Without the net's own loop, the tries below would really leave the machine: stop first.
if not getattr(uvloop.Loop, "_netsafety", False):
    sys.exit("uvloop's loop is not the audited one")

async def main():
    loop = asyncio.get_running_loop()
    refused = []
    tries = [
        loop.getaddrinfo("far.invalid", 80),
        asyncio.open_connection("far.invalid", 80),
        asyncio.open_connection("192.0.2.1", 80),
    ]
    for attempt in tries:
        try:
            await attempt
        except PermissionError as exc:
            refused.append(str(exc))
    sock = socket.socket()
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, ("192.0.2.2", 80))
    except PermissionError as exc:
        refused.append(str(exc))
    finally:
        sock.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", int(sys.argv[1]))
    writer.close()
    print(len(refused))

uvloop.run(main())
"""


async def test_the_safety_net_sees_through_uvloop(receiver: Receiver) -> None:
    """``hookline serve`` and the sender processes run uvloop, which resolves and connects in
    libuv without an audit event: the net gives them a loop that raises the events first."""
    port = receiver.base_url.rsplit(":", 1)[1]
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _UVLOOP_PROBE,
        port,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await child.communicate()
    assert child.returncode == 0, err.decode()
    assert out.decode().strip() == "4", err.decode()  # every try refused; loopback reached
    assert err.decode().count("test safety net") == 4
