"""Issue 8 ("Safe to expose") attacked as a hostile user and as a careless newcomer.

Each test is one attack; those that once broke hookline name the fix in their docstring.
Names resolve through stubs and every connection stays on 127.0.0.1 (tests/netsafety).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest

from hookline.deliveries import Delivery, DeliveryStatus
from hookline.keys import Role
from hookline.netguard import DestinationBlocked, NetworkPolicy, resolve_checked
from hookline.redaction import hide_url_credentials
from tests.helpers import Hookline, Receiver, example_rule, spin_event
from tests.test_guard import _only_delivery, stub
from tests.test_serve import SERVE, _free_port, _wait_healthy

MakeHookline = Callable[..., Coroutine[Any, Any, Hookline]]
NOTHING_ALLOWED: tuple[Any, ...] = ()
SECRET = "s3cr3t-value-never-shown"
CLI = [sys.executable, "-c", "from hookline.cli import main; main()"]


def _auth(text: str) -> dict[str, str]:
    return {"authorization": f"Bearer {text}"}


def _journey(url: str, **overrides: Any) -> dict[str, Any]:
    journey: dict[str, Any] = {
        "name": "jr",
        "status": "active",
        "entry": {"trigger": {"event_type": "spin"}},
        "start": "hello",
        "blocks": {"hello": {"type": "webhook", "activity": {"url": url}}},
    }
    journey.update(overrides)
    return journey


# --- the gate: methods, paths and headers the role matrix does not try ---------------------


async def test_head_and_options_need_a_key_like_get(make_hookline: MakeHookline) -> None:
    h = await make_hookline()
    _, read = await h.runtime.keys.create(Role.READ, (), "")
    for method in ("HEAD", "OPTIONS"):
        for path in ("/api/v1/rules", "/api/v1/keys", "/openapi.json", "/docs"):
            resp = await h.client.request(method, path)
            assert resp.status_code == 401, (method, path)
    # HEAD of a read route is read; HEAD of the keys list is still admin-only.
    assert (await h.client.head("/api/v1/rules", headers=_auth(read))).status_code != 401
    assert (await h.client.head("/api/v1/keys", headers=_auth(read))).status_code == 403


async def test_a_brand_admin_cannot_reach_the_keys_routes_by_any_spelling(
    make_hookline: MakeHookline,
) -> None:
    h = await make_hookline()
    _, root = await h.runtime.keys.create(Role.ADMIN, (), "root")
    other, _ = await h.runtime.keys.create(Role.READ, ("b2",), "b2 reader")
    _, brand_admin = await h.runtime.keys.create(Role.ADMIN, ("b1",), "b1 admin")
    auth = _auth(brand_admin)
    attempts = [
        ("POST", "/api/v1/keys", {"role": "admin"}),
        ("POST", "/api/v1/keys/", {"role": "admin"}),
        ("POST", "/api/v1/keys", {"role": "admin", "brands": ["b1"]}),
        ("GET", "/api/v1/keys", None),
        ("GET", "/api/v1/keys/", None),
        ("HEAD", "/api/v1/keys", None),
        ("DELETE", f"/api/v1/keys/{other.id}", None),
        ("DELETE", f"/api/v1/keys/{other.id}/", None),
    ]
    for method, path, body in attempts:
        resp = await h.client.request(method, path, json=body, headers=auth)
        assert resp.status_code == 403, (method, path, resp.status_code)
    listed = (await h.client.get("/api/v1/keys", headers=_auth(root))).json()["data"]
    assert len(listed) == 3 and all(k["revoked_at"] is None for k in listed)


async def test_only_the_first_authorization_header_counts_and_a_query_key_is_ignored(
    make_hookline: MakeHookline,
) -> None:
    h = await make_hookline()
    _, read = await h.runtime.keys.create(Role.READ, (), "")
    _, admin = await h.runtime.keys.create(Role.ADMIN, (), "")
    # A read key first, an admin key second: the request is the read key's.
    two = [("authorization", f"Bearer {read}"), ("authorization", f"Bearer {admin}")]
    resp = await h.client.post("/api/v1/rules", json={}, headers=two)
    assert resp.status_code == 403
    wrong_first = [("authorization", "Bearer hlk_nope"), ("authorization", f"Bearer {admin}")]
    assert (await h.client.get("/api/v1/rules", headers=wrong_first)).status_code == 401
    for name in ("api_key", "key", "access_token", "token"):
        resp = await h.client.get("/api/v1/rules", params={name: admin})
        assert resp.status_code == 401, name
    # Another header that carries keys elsewhere is not read either.
    assert (await h.client.get("/api/v1/rules", headers={"x-api-key": admin})).status_code == 401


async def test_revoking_the_last_key_does_not_open_hookline_again(
    make_hookline: MakeHookline, caplog: pytest.LogCaptureFixture
) -> None:
    """Broke: with no active key left, loopback ran open and the revoked key was an admin's.

    Revoking every key is what an operator does when a key leaks. hookline now stays
    closed once any key was made (KeyRing.made counts revoked ones), at once and after a
    restart, until a new key is made.
    """
    h = await make_hookline()
    record, text = await h.runtime.keys.create(Role.INGEST, (), "")
    assert (await h.post("/api/v1/events", spin_event(), headers=_auth(text))).status_code == 202
    await h.runtime.keys.revoke(record.id)
    for headers in (_auth(text), {}):
        resp = await h.post("/api/v1/events", spin_event(user="after"), headers=headers)
        assert resp.status_code == 401, resp.text
        assert (await h.client.post("/api/v1/keys", json={"role": "admin"})).status_code == 401
    await h.stop()
    caplog.clear()
    caplog.set_level(logging.WARNING, logger="hookline.auth")
    again = await make_hookline()
    assert (await again.client.get("/api/v1/rules")).status_code == 401
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "hookline.auth"]
    assert warning.startswith("no active API keys, and keys are required")


# --- SSRF: a journey block is a webhook too ------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:9/x",
        "http://[::ffff:10.0.0.1]/",
    ],
)
async def test_a_journeys_inline_block_with_a_literal_blocked_url_is_refused_when_saved(
    make_hookline: MakeHookline, url: str
) -> None:
    h = await make_hookline(allowed_networks=NOTHING_ALLOWED)
    for path in ("/api/v1/journeys", "/api/v1/journeys/validate"):
        resp = await h.post(path, _journey(url))
        assert resp.status_code == 422, (path, resp.text)
        assert resp.json()["field"] == "blocks.hello.activity.url", resp.text
        assert "HOOKLINE_ALLOWED_NETWORKS=" in resp.json()["detail"]
    ok = await h.post("/api/v1/journeys", _journey("https://api.example.test/x"))
    assert ok.status_code == 201, ok.text
    moved = await h.client.put(f"/api/v1/journeys/{ok.json()['id']}", json=_journey(url))
    assert moved.status_code == 422, moved.text


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1./x",  # a rooted name: the resolver takes it as the literal
        "http://169.254.169.254./latest/meta-data/",
        "http://\uff11\uff12\uff17.0.0.1/x",  # full-width digits: yarl sends to 127.0.0.1
        "http://\u2460\u2461\u2466.0.0.1/x",  # circled digits
        "http://[fe80::1%25eth0]/",
        "http://[::ffff:127.0.0.1]/",
        "http://0177.0.0.1/",
        "http://2130706433/",
    ],
)
async def test_a_literal_in_any_spelling_the_sender_takes_is_refused_when_saved(
    make_hookline: MakeHookline, url: str
) -> None:
    """Broke for the trailing dot and for non-ASCII digits: saved, then blocked only when
    sent. The save now judges the host as the sender parses it (netguard.sent_host)."""
    h = await make_hookline(allowed_networks=NOTHING_ALLOWED)
    resp = await h.post("/api/v1/webhooks", {"name": "w", "url": url})
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"] == "url"
    assert "HOOKLINE_ALLOWED_NETWORKS=" in resp.json()["detail"]


async def test_a_rooted_literal_is_judged_as_the_literal_without_a_lookup() -> None:
    """A row saved before the check is blocked at once, as 127.0.0.1 is, not by DNS."""
    lookup = stub({})
    for host in ("127.0.0.1.", "169.254.169.254."):
        with pytest.raises(DestinationBlocked, match=r"^destination_blocked: "):
            await resolve_checked(host, 80, NetworkPolicy(), lookup)
    assert lookup.calls == []  # type: ignore[attr-defined]


async def test_the_own_echo_exemption_follows_the_parser_that_connects(
    make_hookline: MakeHookline,
) -> None:
    """urlsplit reads ``evil.test\\@127.0.0.1`` as 127.0.0.1, so the save takes it as the
    own echo; the sender decides on the URL as aiohttp parses it, which refuses it. The
    unguarded own-echo session is never used for another host."""
    lookup = stub({"evil.test": [["127.0.0.1"]]})
    h = await make_hookline(allowed_networks=NOTHING_ALLOWED, lookup=lookup)
    port = h.base_url.rsplit(":", 1)[1]
    for url in (
        f"http://evil.test\\@127.0.0.1:{port}/echo-send/attack-echo-2/",
        f"http://127.0.0.1:{port}@evil.test:{port}/echo-send/attack-echo-2/",
    ):
        rule = await h.post("/api/v1/rules", example_rule(name=url, activity={"url": url}))
        if rule.status_code == 422:
            continue  # refused when saved: as good
        assert rule.status_code == 201, rule.text
        detail = await _only_delivery(h, await h.post("/api/v1/events", spin_event()))
        assert detail["status"] == "dead", detail
        await h.client.delete(f"/api/v1/rules/{rule.json()['id']}")
    assert (await h.client.get("/echo-list/attack-echo-2/")).json()["requests"] == []


async def test_a_redirect_is_not_followed_even_to_an_allowed_place(
    make_hookline: MakeHookline, receiver: Receiver
) -> None:
    h = await make_hookline(retry_schedule=(0,))
    receiver.script["/hook"] = [302]
    receiver.extra_headers["/hook"] = {"Location": f"{h.base_url}/echo-send/attack-echo-3/"}
    await h.create_rule(activity={"url": receiver.url()})
    detail = await _only_delivery(h, await h.post("/api/v1/events", spin_event()))
    assert detail["status"] == "dead"
    assert detail["attempt_log"][0]["error"] == "HTTP 302 (redirects are not followed)"
    assert len(receiver.requests) == 1
    assert (await h.client.get("/echo-list/attack-echo-3/")).json()["requests"] == []


# --- secrets --------------------------------------------------------------------------------


async def test_a_url_with_a_password_is_refused_so_no_answer_shows_it(
    make_hookline: MakeHookline,
) -> None:
    h = await make_hookline()
    url = f"https://crm:{SECRET}@api.example.test/hook"
    for path, body in (
        ("/api/v1/rules", example_rule(activity={"url": url})),
        ("/api/v1/webhooks", {"name": "w", "url": url}),
        ("/api/v1/journeys", _journey(url)),
        ("/api/v1/webhooks/preview", {"webhook": {"url": url}}),
    ):
        resp = await h.post(path, body)
        assert resp.status_code == 422, (path, resp.text)
        assert SECRET not in resp.text
        assert "Authorization" in resp.json()["detail"]


def test_a_delivery_stored_with_a_password_in_its_url_shows_and_logs_none() -> None:
    """A row from before the save check: its answer and its logged destination hide it."""
    url = f"https://crm:{SECRET}@api.example.test:8443/hook?x=1"
    delivery = Delivery(
        "dlv_1", None, "rule_1", None, "u", DeliveryStatus.DEAD, "POST", url, (), None,
        1.0, (0.0,), 1, 0, None, 0,
    )  # fmt: skip
    assert delivery.destination == "api.example.test:8443"
    assert delivery.as_dict()["request"]["url"] == "https://***@api.example.test:8443/hook?x=1"
    assert hide_url_credentials("https://api.example.test/a@b") == "https://api.example.test/a@b"


async def test_an_invalid_secret_header_value_is_not_echoed_in_the_error(
    make_hookline: MakeHookline,
) -> None:
    h = await make_hookline()
    for value in (f"Bearer {SECRET}\r\nX-Evil: 1", f"{SECRET}\x00", f"{SECRET}\n"):
        for headers in ({"Authorization": value}, {"X-Token": value}):
            activity = {"url": "https://api.example.test/x", "headers": headers}
            if "X-Token" in headers:
                activity["secret_headers"] = ["X-Token"]
            resp = await h.post("/api/v1/rules", example_rule(activity=activity))
            assert resp.status_code == 422, resp.text
            assert SECRET not in resp.text, resp.text
            bad = {"headers": {"X-Api-Key": 5}}
            resp = await h.post("/api/v1/rules", example_rule(activity=bad))
            assert resp.status_code == 422


# --- the careless newcomer: "Going to production", literally ------------------------------


async def _serve_exposed(
    tmp_path: Path, env_extra: dict[str, str], *args: str
) -> tuple[asyncio.subprocess.Process, int, Path]:
    """`hookline serve --host 0.0.0.0` in a subprocess; only ever reached on 127.0.0.1."""
    port = _free_port()
    env = {**os.environ, "HOOKLINE_DATA_DIR": str(tmp_path / "d"), **env_extra}
    env.pop("HOOKLINE_API_KEY", None)
    if "HOOKLINE_AUTH" not in env_extra:
        env.pop("HOOKLINE_AUTH", None)
    log_path = tmp_path / f"serve-{port}.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *SERVE, "--host", "0.0.0.0", "--port", str(port), *args, env=env, stdout=log, stderr=log
        )
    return proc, port, log_path


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)


@pytest.mark.timeout(90)
async def test_going_to_production_literally_on_a_fresh_copy(tmp_path: Path) -> None:
    """Step 3 with and without a key, and HOOKLINE_AUTH=off, as the README tells it."""
    # No key, exposed: refused before listening, saying what to do.
    proc, _, log_path = await _serve_exposed(tmp_path, {})
    assert await asyncio.wait_for(proc.wait(), 60) == 2
    said = log_path.read_text()
    assert "hookline keys create --role admin --data-dir" in said and "HOOKLINE_AUTH=off" in said

    # HOOKLINE_AUTH=off: starts, open, and warns.
    proc, port, log_path = await _serve_exposed(tmp_path, {"HOOKLINE_AUTH": "off"})
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            await _wait_healthy(client, proc)
            assert (await client.get("/api/v1/rules")).status_code == 200
    finally:
        await _stop(proc)
    assert "HOOKLINE_AUTH=off: the API is open to anyone" in log_path.read_text()

    # Step 1, then step 3: the first admin key on the data directory, then keys are required.
    made = await asyncio.create_subprocess_exec(
        *CLI, "keys", "create", "--role", "admin", "--name", "ops", "--data-dir",
        str(tmp_path / "d"), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(made.communicate(), 60)
    assert made.returncode == 0, err
    admin = out.decode().strip()
    proc, port, log_path = await _serve_exposed(tmp_path, {})
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            await _wait_healthy(client, proc)
            assert (await client.get("/api/v1/rules")).status_code == 401
            assert (await client.get("/openapi.json")).status_code == 401
            ok = await client.get("/api/v1/rules", headers=_auth(admin))
            assert ok.status_code == 200
    finally:
        await _stop(proc)
    assert admin not in log_path.read_text()


# --- brands through indirect routes ---------------------------------------------------------


async def test_a_brand_key_reaches_no_other_brand_through_filters_and_validations(
    hookline: Hookline, receiver: Receiver
) -> None:
    h = hookline
    _, root = await h.runtime.keys.create(Role.ADMIN, (), "root")
    _, b1_admin = await h.runtime.keys.create(Role.ADMIN, ("b1",), "")
    _, b1_read = await h.runtime.keys.create(Role.READ, ("b1",), "")
    secret_rule = example_rule(
        name="b2-secret",
        ext_brand_id="b2",
        activity={"url": receiver.url("/b2"), "headers": {"X-Api-Key": SECRET}},
    )
    b2_rule = (await h.post("/api/v1/rules", secret_rule, headers=_auth(root))).json()
    b2_event = spin_event(ext_brand_id="b2")
    resp = await h.post("/api/v1/events", b2_event, headers=_auth(root))
    (b2_delivery,) = resp.json()["events"][0]["deliveries"]
    await h.idle()
    for params in (
        {"ext_brand_id": "b2"},
        {"rule_id": b2_rule["id"]},
        {"event_id": resp.json()["events"][0]["id"]},
        {"user_ext_id": "u-1", "ext_brand_id": "b2"},
    ):
        listed = await h.client.get("/api/v1/deliveries", params=params, headers=_auth(b1_read))
        assert listed.status_code == 200 and listed.json()["data"] == [], params
    # validate with compare_to of another brand's rule: judged as if there were none.
    mine = example_rule(
        name="b2-secret",
        ext_brand_id="b1",
        activity={"url": receiver.url("/b1"), "headers": {"X-Api-Key": "***"}},
    )
    checked = await h.client.post(
        "/api/v1/rules/validate",
        params={"compare_to": b2_rule["id"]},
        json=mine,
        headers=_auth(b1_admin),
    )
    assert checked.status_code == 422, checked.text  # no stored *** to keep: not b2's
    assert SECRET not in checked.text and "b2" not in checked.text
    # Replaying another brand's delivery by id, or a test send of its rule: not there.
    retry = await h.post(f"/api/v1/deliveries/{b2_delivery}/retry", headers=_auth(b1_admin))
    assert retry.status_code == 404
    sent = await h.post(
        "/api/v1/webhooks/test", {"rule_id": b2_rule["id"]}, headers=_auth(b1_admin)
    )
    assert sent.status_code == 404
    assert len(receiver.on("/b2")) == 1


async def test_the_openapi_document_holds_no_key_or_secret(hookline: Hookline) -> None:
    _, read = await hookline.runtime.keys.create(Role.READ, (), "")
    doc = await hookline.client.get("/openapi.json", headers=_auth(read))
    assert doc.status_code == 200
    # Placeholders only (hlk_..., hlk_AbCdEfGh): nothing as long as a real key or secret.
    assert re.search(r"hlk_[A-Za-z0-9_-]{20,}", doc.text) is None
    assert re.search(r"whsec_[A-Za-z0-9+/=]{20,}", doc.text) is None
    assert read not in doc.text
