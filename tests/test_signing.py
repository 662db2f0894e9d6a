"""Signed webhooks: every delivery verifies with the public Standard Webhooks library.

Deliveries go to a real receiver on 127.0.0.1 and are checked with ``standardwebhooks``
(the spec's own Python library), never with hookline's own code. Rotation is tested with
an injected clock: no test waits 24 hours, or any time at all.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from hookline.errors import Conflict
from hookline.events import now_ms
from hookline.settings import SENDERS
from hookline.signing import (
    MAX_PREVIOUS_SECRETS,
    ROTATION_OVERLAP_MS,
    SecretRing,
    Signing,
    new_secret,
    secret_key,
    sign,
)
from hookline.store.sqlite import open_sqlite
from tests.conftest import each_sender
from tests.helpers import Hookline, Received, Receiver, example_rule, spin_event


@pytest.fixture(params=SENDERS)
def sender_kind(request: pytest.FixtureRequest) -> str:
    """Contract tests: every test here runs with each sender (reqwest and aiohttp)."""
    return each_sender(request)


MakeHookline = Callable[..., Coroutine[Any, Any, Hookline]]


class Clock:
    """Wall-clock time plus a shift the test controls (milliseconds)."""

    def __init__(self) -> None:
        self.shift = 0

    def __call__(self) -> int:
        return now_ms() + self.shift


def verifies(secret: str, request: Received, body: bytes | None = None) -> bool:
    """Whether the public library accepts the request with this secret."""
    try:
        Webhook(secret).verify(
            request.body if body is None else body, request.headers, json_parse=False
        )
    except WebhookVerificationError:
        return False
    return True


def signatures(request: Received) -> list[str]:
    return request.headers["webhook-signature"].split(" ")


@pytest.fixture(params=[0, 1], ids=["in-process", "sender-process"])
async def hookline(request: pytest.FixtureRequest, make_hookline: MakeHookline) -> Hookline:
    return await make_hookline(sender_processes=request.param)


# --- the pure parts --------------------------------------------------------------------------


def test_a_signature_made_here_verifies_with_the_public_library() -> None:
    secret = new_secret()
    headers = {"webhook-id": "dlv_1", "webhook-timestamp": str(now_ms() // 1000)}
    body = b'{"a": "\xc3\xa9"}'
    headers["webhook-signature"] = sign(
        [secret_key(secret)], "dlv_1", int(headers["webhook-timestamp"]), body
    )
    Webhook(secret).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"a": "\xc3\xa9 "}', headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)


def test_secrets_are_fresh_whsec_base64_of_24_bytes() -> None:
    first, second = new_secret(), new_secret()
    assert first != second
    assert first.startswith("whsec_") and len(secret_key(first)) == 24


def test_a_rotation_keeps_the_old_secret_for_the_overlap_only() -> None:
    signing = Signing.new()
    rotated = signing.rotated(1_000)
    assert rotated.secret != signing.secret
    assert rotated.secrets_at(1_000) == (rotated.secret, signing.secret)
    assert rotated.secrets_at(1_000 + ROTATION_OVERLAP_MS - 1) == (rotated.secret, signing.secret)
    assert rotated.secrets_at(1_000 + ROTATION_OVERLAP_MS) == (rotated.secret,)
    # Rotating again within the overlap keeps both older secrets until each one's end.
    again = rotated.rotated(2_000)
    assert again.secrets_at(2_000) == (again.secret, signing.secret, rotated.secret)
    assert again.secrets_at(1_000 + ROTATION_OVERLAP_MS) == (again.secret, rotated.secret)
    assert Signing.from_json(again.as_json()) == again


def test_at_most_five_replaced_secrets_sign_and_a_sixth_rotation_waits() -> None:
    """As Svix: each replaced secret adds a signature, so rotations within its overlap are
    capped, and refused (not the oldest dropped: a receiver may still hold only that one)."""
    assert MAX_PREVIOUS_SECRETS == 5
    signing = Signing.new()
    for minute in range(MAX_PREVIOUS_SECRETS):
        signing = signing.rotated(minute * 60_000)
    assert len(signing.secrets_at(MAX_PREVIOUS_SECRETS * 60_000)) == 1 + MAX_PREVIOUS_SECRETS
    with pytest.raises(Conflict) as refused:
        signing.rotated(MAX_PREVIOUS_SECRETS * 60_000)
    assert "5 times within 24 hours" in refused.value.detail
    assert "1970-01-02T00:00:00.000Z" in refused.value.detail  # when the oldest stops
    # Once the oldest stops signing, one more rotation is allowed.
    again = signing.rotated(ROTATION_OVERLAP_MS)
    assert len(again.secrets_at(ROTATION_OVERLAP_MS)) == 1 + MAX_PREVIOUS_SECRETS


def test_the_key_ring_follows_its_clock() -> None:
    clock = Clock()
    ring = SecretRing(clock)
    signing = Signing.new().rotated(clock())
    ring.put("wh_1", signing)
    assert ring.keys("wh_1") == tuple(secret_key(s) for s in signing.secrets_at(clock()))
    assert len(ring.keys("wh_1") or ()) == 2
    clock.shift = ROTATION_OVERLAP_MS
    assert ring.keys("wh_1") == (secret_key(signing.secret),)
    assert ring.keys("rule_gone") is None and ring.keys(None) is None
    ring.remove("wh_1")
    assert ring.keys("wh_1") is None


def test_keys_never_show_in_a_request_repr() -> None:
    from hookline.sender import Request

    key = secret_key(new_secret())
    assert repr(key) not in repr(Request("POST", "http://x/", (), None, 1, "dlv_1", (key,)))


# --- real deliveries -------------------------------------------------------------------------


async def test_an_inline_webhook_delivery_verifies_and_a_changed_byte_does_not(
    hookline: Hookline, receiver: Receiver
) -> None:
    rule = await hookline.create_rule(activity={"url": receiver.url()})
    secret = rule["activity"]["signing_secret"]
    assert secret.startswith("whsec_")
    resp = await hookline.post("/api/v1/events", spin_event())
    (got,) = await receiver.wait_for(1)
    assert got.headers["webhook-id"] == resp.json()["events"][0]["deliveries"][0]
    assert int(got.headers["webhook-timestamp"]) == pytest.approx(now_ms() / 1000, abs=60)
    assert signatures(got)[0].startswith("v1,") and len(signatures(got)) == 1
    assert verifies(secret, got)
    for i in range(len(got.body)):
        altered = bytearray(got.body)
        altered[i] ^= 0x01
        assert not verifies(secret, got, bytes(altered)), f"byte {i} changed, still verified"
    assert not verifies(new_secret(), got)
    forged = Received(
        got.method, got.path, got.query, {**got.headers, "webhook-id": "dlv_x"}, got.body
    )
    assert not verifies(secret, forged)


async def test_a_saved_webhook_signs_with_its_own_secret_for_every_rule(
    hookline: Hookline, receiver: Receiver
) -> None:
    saved = (
        await hookline.post("/api/v1/webhooks", {"name": "crm", "url": receiver.url("/crm")})
    ).json()
    secret = saved["signing_secret"]
    for name in ("a", "b"):
        rule = example_rule(name=name)
        rule["activity"] = {"type": "webhook", "webhook_id": saved["id"]}
        resp = await hookline.post("/api/v1/rules", rule)
        assert resp.status_code == 201, resp.text
        # The rule's own secret is not shown: it does not sign while the webhook is saved.
        assert "signing_secret" not in resp.json()["activity"]
    await hookline.post("/api/v1/events", spin_event())
    got = await receiver.wait_for(2)
    assert all(verifies(secret, r) for r in got)
    # A test send of the saved webhook is signed as well.
    test = await hookline.post("/api/v1/webhooks/test", {"webhook_id": saved["id"]})
    assert test.status_code == 200, test.text
    (*_, sent) = await receiver.wait_for(3)
    assert verifies(secret, sent)


async def test_the_secret_survives_put_and_patch_and_only_a_rotation_changes_it(
    hookline: Hookline, receiver: Receiver
) -> None:
    rule = await hookline.create_rule(activity={"url": receiver.url()})
    secret = rule["activity"]["signing_secret"]
    put = await hookline.client.put(
        f"/api/v1/rules/{rule['id']}", json=example_rule(activity={"url": receiver.url("/2")})
    )
    patch = await hookline.client.patch(f"/api/v1/rules/{rule['id']}", json={"enabled": True})
    fetched = await hookline.client.get(f"/api/v1/rules/{rule['id']}")
    for answer in (put, patch, fetched):
        assert answer.status_code == 200, answer.text
        assert answer.json()["activity"]["signing_secret"] == secret
    saved = (await hookline.post("/api/v1/webhooks", {"name": "w", "url": receiver.url()})).json()
    put = await hookline.client.put(
        f"/api/v1/webhooks/{saved['id']}", json={"name": "w", "url": receiver.url("/2")}
    )
    assert put.json()["signing_secret"] == saved["signing_secret"]
    rotated = await hookline.post(f"/api/v1/webhooks/{saved['id']}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["signing_secret"] not in (saved["signing_secret"], None)
    assert rotated.json()["version"] == put.json()["version"] + 1
    assert rotated.headers["etag"] == f'"{rotated.json()["version"]}"'


async def test_after_a_rotation_both_secrets_verify_for_24_hours_then_only_the_new(
    make_hookline: MakeHookline, receiver: Receiver
) -> None:
    clock = Clock()
    h = await make_hookline(clock=clock)
    rule = await h.create_rule(activity={"url": receiver.url(), "retry_schedule": [0, 3600]})
    old = rule["activity"]["signing_secret"]
    rotated = await h.post(f"/api/v1/rules/{rule['id']}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["activity"]["signing_secret"]
    assert new != old

    await h.post("/api/v1/events", spin_event())
    (within,) = await receiver.wait_for(1)
    assert len(signatures(within)) == 2
    assert verifies(old, within) and verifies(new, within)

    clock.shift = ROTATION_OVERLAP_MS + 1  # a day later, as far as signing can tell
    await h.post("/api/v1/events", spin_event(eid="second"))
    (_, after) = await receiver.wait_for(2)
    assert len(signatures(after)) == 1
    assert verifies(new, after) and not verifies(old, after)


async def test_rotations_beyond_five_a_day_are_refused_and_the_newest_secret_verifies(
    make_hookline: MakeHookline, receiver: Receiver
) -> None:
    h = await make_hookline()
    rule = await h.create_rule(activity={"url": receiver.url()})
    saved = await h.post("/api/v1/webhooks", {"name": "crm", "url": receiver.url()})
    journey = {
        "name": "j",
        "entry": {"trigger": {"event_type": "a"}},
        "start": "w",
        "blocks": {"w": {"type": "webhook", "activity": {"url": receiver.url()}}},
    }
    made = await h.post("/api/v1/journeys", journey)
    assert made.status_code == 201, made.text
    paths = [
        f"/api/v1/rules/{rule['id']}/rotate-secret",
        f"/api/v1/webhooks/{saved.json()['id']}/rotate-secret",
        f"/api/v1/journeys/{made.json()['id']}/rotate-secret",
    ]
    for path in paths:
        for _ in range(MAX_PREVIOUS_SECRETS):
            assert (await h.post(path)).status_code == 200
        refused = await h.post(path)
        assert refused.status_code == 409, refused.text
        assert refused.json()["code"] == "conflict"
        assert "at most 5 times within 24 hours" in refused.json()["detail"]
    newest = (await h.client.get(f"/api/v1/rules/{rule['id']}")).json()
    await h.post("/api/v1/events", spin_event())
    (got,) = await receiver.wait_for(1)
    assert len(signatures(got)) == 1 + MAX_PREVIOUS_SECRETS
    assert verifies(newest["activity"]["signing_secret"], got)
    assert verifies(rule["activity"]["signing_secret"], got)  # the first, still in its day


async def test_a_retry_after_a_rotation_carries_the_new_signature(
    hookline: Hookline, receiver: Receiver
) -> None:
    receiver.script["/hook"] = [503]
    rule = await hookline.create_rule(activity={"url": receiver.url(), "retry_schedule": [0, 3600]})
    old = rule["activity"]["signing_secret"]
    resp = await hookline.post("/api/v1/events", spin_event())
    (delivery_id,) = resp.json()["events"][0]["deliveries"]
    (first,) = await receiver.wait_for(1)
    await hookline.idle()
    rotated = await hookline.post(f"/api/v1/rules/{rule['id']}/rotate-secret")
    new = rotated.json()["activity"]["signing_secret"]
    assert (await hookline.post(f"/api/v1/deliveries/{delivery_id}/retry")).status_code == 202
    (_, second) = await receiver.wait_for(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery_id
    assert verifies(old, first) and not verifies(new, first)
    assert verifies(new, second) and verifies(old, second)  # within the overlap


async def test_a_delivery_whose_rule_was_deleted_goes_unsigned_and_says_so(
    hookline: Hookline, receiver: Receiver
) -> None:
    receiver.script["/hook"] = [503]
    rule = await hookline.create_rule(activity={"url": receiver.url(), "retry_schedule": [0, 3600]})
    resp = await hookline.post("/api/v1/events", spin_event())
    (delivery_id,) = resp.json()["events"][0]["deliveries"]
    await receiver.wait_for(1)
    await hookline.idle()
    assert (await hookline.client.delete(f"/api/v1/rules/{rule['id']}")).status_code == 204
    await hookline.post(f"/api/v1/deliveries/{delivery_id}/retry")
    (first, second) = await receiver.wait_for(2)
    assert "webhook-signature" in first.headers
    assert "webhook-signature" not in second.headers
    assert second.headers["webhook-id"] == delivery_id and "webhook-timestamp" in second.headers
    await hookline.idle()
    detail = (await hookline.client.get(f"/api/v1/deliveries/{delivery_id}")).json()
    assert detail["attempt_log"][0]["warning"] is None
    assert detail["attempt_log"][1]["warning"] == (
        f"sent unsigned: its rule {rule['id']} was deleted, and its secret with it"
    )


async def test_rotating_a_rule_that_uses_a_saved_webhook_points_to_the_webhook(
    hookline: Hookline,
) -> None:
    saved = (await hookline.post("/api/v1/webhooks", {"name": "w", "url": "http://x.test/"})).json()
    rule = example_rule()
    rule["activity"] = {"type": "webhook", "webhook_id": saved["id"]}
    rule_id = (await hookline.post("/api/v1/rules", rule)).json()["id"]
    resp = await hookline.post(f"/api/v1/rules/{rule_id}/rotate-secret")
    assert resp.status_code == 409
    assert f"/api/v1/webhooks/{saved['id']}/rotate-secret" in resp.json()["detail"]
    missing = await hookline.post("/api/v1/webhooks/wh_nope/rotate-secret")
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    stale = await hookline.post(
        f"/api/v1/webhooks/{saved['id']}/rotate-secret", headers={"If-Match": '"7"'}
    )
    assert stale.status_code == 412


# --- a database from before signing ----------------------------------------------------------


async def _old_database(path: Path, receiver_url: str) -> None:
    """A database as the previous release left it: no signing secrets, one pending delivery."""
    store = open_sqlite(path)
    await store.open()
    await store.close()
    with sqlite3.connect(path) as db:
        for table, column in (
            ("rules", "signing"),
            ("webhooks", "signing"),
            ("deliveries", "secret_headers"),
            ("journeys", "signing"),
        ):
            db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        db.execute(
            "INSERT INTO webhooks (id, name, spec, created_at, updated_at, version)"
            f" VALUES ('wh_1', 'crm', '{{\"url\": \"{receiver_url}/saved\"}}', 1, 1, 1)"
        )
        db.execute(
            "INSERT INTO rules (id, name, description, enabled, event_type, conditions,"
            " webhook, webhook_id, created_at, updated_at, version) VALUES"
            " ('rule_1', 'inline', '', 1, 't', NULL,"
            f' \'{{"url": "{receiver_url}/inline"}}\', NULL, 1, 1, 1),'
            " ('rule_2', 'saved', '', 1, 't', NULL, NULL, 'wh_1', 1, 1, 1)"
        )
        db.execute(
            "INSERT INTO deliveries (id, event_id, rule_id, webhook_id, user_ext_id, status,"
            " method, url, host, headers, body, timeout, retry_schedule, attempts, created_at,"
            " next_attempt_at, lease_until, updated_at) VALUES ('dlv_old', 'evt_1', 'rule_1',"
            f" NULL, 'u', 'pending', 'POST', '{receiver_url}/inline', 'h', '[]', X'7b7d', 5,"
            " '[0]', 0, 1, 1, NULL, 1)"
        )
        db.execute(
            "INSERT INTO journeys (id, name, description, status, version, definition,"
            " ext_brand_id, created_at, updated_at) VALUES ('jrn_1', 'j', '', 'draft', 1,"
            " X'7b7d', NULL, 1, 1)"
        )
    db.close()


async def test_an_old_database_opens_and_its_rules_and_webhooks_get_secrets(
    tmp_path: Path,
) -> None:
    path = tmp_path / "hookline.db"
    await _old_database(path, "http://127.0.0.1:9")
    store = open_sqlite(path)
    await store.open()
    try:
        secrets = await store.list_signing()
        delivery = await store.get_delivery("dlv_old")
    finally:
        await store.close()
    assert sorted(secrets) == ["jrn_1", "rule_1", "rule_2", "wh_1"]
    assert len({s.secret for s in secrets.values()}) == 4
    assert delivery is not None and delivery.secret_headers == ()
    # Opening again keeps them: a receiver that learnt one is not locked out by a restart.
    store = open_sqlite(path)
    await store.open()
    try:
        assert await store.list_signing() == secrets
    finally:
        await store.close()


async def test_an_upgraded_server_signs_what_the_old_one_left_pending(
    make_hookline: MakeHookline, receiver: Receiver, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    await _old_database(data / "hookline.db", receiver.base_url)
    h = await make_hookline(data_dir=data)
    (got,) = await receiver.wait_for(1, "/inline")
    assert got.headers["webhook-id"] == "dlv_old"
    rule = (await h.client.get("/api/v1/rules/rule_1")).json()
    assert verifies(rule["activity"]["signing_secret"], got)
    saved = (await h.client.get("/api/v1/webhooks/wh_1")).json()
    await h.post("/api/v1/events", {"event_type": "t", "user_ext_id": "u"})
    (from_saved,) = await receiver.wait_for(1, "/saved")
    assert verifies(saved["signing_secret"], from_saved)


# --- the README's receiver -----------------------------------------------------------------


def _readme_receiver() -> str:
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = text[text.index("### Verifying signatures") :]
    (code,) = re.findall(r"```python\n(.*?)```", section[: section.index("\n### ")], re.S)
    return str(code)


async def test_the_readme_receiver_fits_in_five_lines_and_verifies_a_real_delivery(
    hookline: Hookline, receiver: Receiver
) -> None:
    code = _readme_receiver()
    assert len([line for line in code.splitlines() if line.strip()]) <= 5
    rule = await hookline.create_rule(activity={"url": receiver.url()})
    await hookline.post("/api/v1/events", spin_event())
    (got,) = await receiver.wait_for(1)
    scope: dict[str, Any] = {}
    exec(code.replace("whsec_...", rule["activity"]["signing_secret"]), scope)
    scope["receive"](got.body, got.headers)
    with pytest.raises(WebhookVerificationError):
        scope["receive"](got.body + b" ", got.headers)


# --- journeys: inline blocks sign with the journey's secret, saved ones with the webhook's ---


def _journey(activity: dict[str, Any], name: str = "jr") -> dict[str, Any]:
    return {
        "name": name,
        "status": "active",
        "entry": {"trigger": {"event_type": "minigame_spin_issued"}},
        "start": "hello",
        "blocks": {"hello": {"type": "webhook", "activity": activity}},
    }


async def test_a_journeys_inline_block_signs_with_the_journeys_secret_kept_until_rotated(
    make_hookline: MakeHookline, receiver: Receiver
) -> None:
    clock = Clock()
    h = await make_hookline(clock=clock)
    created = await h.post("/api/v1/journeys", _journey({"url": receiver.url()}))
    assert created.status_code == 201, created.text
    journey = created.json()
    old = journey["signing_secret"]
    assert old.startswith("whsec_")
    path = f"/api/v1/journeys/{journey['id']}"
    # A new version and a PATCH keep it: receivers already hold it.
    changed = {**_journey({"url": receiver.url(), "body": '{"v": 2}'}), "status": "active"}
    assert (await h.client.put(path, json=changed)).json()["signing_secret"] == old
    assert (await h.client.patch(path, json={"description": "x"})).json()["signing_secret"] == old
    await h.post("/api/v1/events", spin_event(user="u-1"))
    (first,) = await receiver.wait_for(1)
    assert len(signatures(first)) == 1 and verifies(old, first)

    rotated = await h.post(f"{path}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["signing_secret"]
    assert new != old and new.startswith("whsec_")
    await h.post("/api/v1/events", spin_event(user="u-2"))
    (_, within) = await receiver.wait_for(2)
    assert len(signatures(within)) == 2 and verifies(old, within) and verifies(new, within)

    clock.shift = ROTATION_OVERLAP_MS + 1  # a day later, as far as signing can tell
    await h.post("/api/v1/events", spin_event(user="u-3"))
    (_, _, after) = await receiver.wait_for(3)
    assert verifies(new, after) and not verifies(old, after)


async def test_a_journey_block_on_a_saved_webhook_signs_with_the_webhooks_secret(
    hookline: Hookline, receiver: Receiver
) -> None:
    h = hookline
    saved = (await h.post("/api/v1/webhooks", {"name": "crm", "url": receiver.url()})).json()
    created = await h.post("/api/v1/journeys", _journey({"webhook_id": saved["id"]}))
    assert created.status_code == 201, created.text
    await h.post("/api/v1/events", spin_event())
    (request,) = await receiver.wait_for(1)
    assert verifies(saved["signing_secret"], request)
    assert not verifies(created.json()["signing_secret"], request)


async def test_a_journeys_secret_shows_to_admins_only_and_leaves_with_the_journey(
    hookline: Hookline, receiver: Receiver
) -> None:
    from hookline.keys import Role

    h = hookline
    journey = (await h.post("/api/v1/journeys", _journey({"url": receiver.url()}))).json()
    _, reader = await h.runtime.keys.create(Role.READ, (), "")
    _, admin = await h.runtime.keys.create(Role.ADMIN, (), "")
    path = f"/api/v1/journeys/{journey['id']}"
    reads: list[tuple[str, Callable[[Any], dict[str, Any]]]] = [
        (path, lambda a: a),
        ("/api/v1/journeys", lambda a: a["data"][0]),
    ]
    for url, pick in reads:
        as_reader = pick((await h.client.get(url, headers=_bearer(reader))).json())
        as_admin = pick((await h.client.get(url, headers=_bearer(admin))).json())
        assert as_admin["signing_secret"] == journey["signing_secret"], url
        assert as_reader["signing_secret"] == "***", url
    refused = await h.client.post(f"{path}/rotate-secret", headers=_bearer(reader))
    assert refused.status_code == 403
    assert journey["id"] in h.runtime.catalog.keyring
    assert (await h.client.delete(path, headers=_bearer(admin))).status_code == 204
    assert journey["id"] not in h.runtime.catalog.keyring


def _bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}
