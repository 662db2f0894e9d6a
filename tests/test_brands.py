"""Brands: a user is (ext_brand_id, user_ext_id), and a brand-scoped key sees only its brands."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi import FastAPI

from hookline.api.auth import right_for
from hookline.keys import ApiKey, Role
from hookline.store.schema import SCHEMA_VERSION
from hookline.store.sqlite import open_sqlite
from tests.helpers import Hookline, Receiver, example_rule
from tests.test_auth import app_routes

BRANDS: tuple[str | None, ...] = ("b1", "b2", None)


def _tag(brand: str | None) -> str:
    return brand or "none"


def _journey(receiver: Receiver, brand: str | None) -> dict[str, Any]:
    return {
        "name": f"jr-{_tag(brand)}",
        "status": "active",
        "ext_brand_id": brand,
        "entry": {"trigger": {"event_type": "spin"}},
        "start": "hello",
        "blocks": {"hello": {"type": "webhook", "activity": {"url": receiver.url("/jr")}}},
    }


async def _world(h: Hookline, receiver: Receiver) -> dict[str | None, dict[str, str]]:
    """For each brand (and none): a saved webhook, a rule on it, a journey, an event."""
    world: dict[str | None, dict[str, str]] = {}
    for brand in BRANDS:
        tag = _tag(brand)
        wh = {"name": f"wh-{tag}", "url": receiver.url(f"/{tag}"), "ext_brand_id": brand}
        webhook = (await h.post("/api/v1/webhooks", wh)).json()
        rule_in = {
            "name": f"rule-{tag}",
            "ext_brand_id": brand,
            "trigger": {"event_type": "spin"},
            "activity": {"type": "webhook", "webhook_id": webhook["id"]},
        }
        rule = (await h.post("/api/v1/rules", rule_in)).json()
        journey = (await h.post("/api/v1/journeys", _journey(receiver, brand))).json()
        world[brand] = {
            "webhook_id": webhook["id"],
            "rule_id": rule["id"],
            "journey_id": journey["id"],
        }
    for brand in BRANDS:
        event = {"event_type": "spin", "user_ext_id": "same", "ext_brand_id": brand}
        resp = await h.post("/api/v1/events", event)
        assert resp.status_code == 202, resp.text
        world[brand]["event_id"] = resp.json()["events"][0]["id"]
        patch = await h.client.patch(
            "/api/v1/users/same/state", params=_brand(brand), json={"tag": _tag(brand)}
        )
        assert patch.status_code == 200, patch.text
    await h.idle()
    for brand in BRANDS:
        rule_id = world[brand]["rule_id"]
        found = await h.client.get("/api/v1/deliveries", params={"rule_id": rule_id})
        (delivery,) = [d for d in found.json()["data"] if d["ext_brand_id"] == brand]
        world[brand]["delivery_id"] = delivery["id"]
    return world


def _brand(brand: str | None) -> dict[str, str]:
    return {} if brand is None else {"ext_brand_id": brand}


def _auth(text: str) -> dict[str, str]:
    return {"authorization": f"Bearer {text}"}


# What a write sends: valid, and of the writer's own brand, so only the target's brand refuses.
def _bodies(receiver: Receiver) -> dict[tuple[str, str], Any]:
    rule = example_rule(name="mine", ext_brand_id="b1", activity={"url": receiver.url()})
    journey = {**_journey(receiver, "b1"), "name": "mine"}
    return {
        ("PUT", "/api/v1/rules/{rule_id}"): rule,
        ("PATCH", "/api/v1/rules/{rule_id}"): {"enabled": False},
        ("DELETE", "/api/v1/rules/{rule_id}"): None,
        ("PUT", "/api/v1/webhooks/{webhook_id}"): {
            "name": "mine",
            "url": receiver.url(),
            "ext_brand_id": "b1",
        },
        ("DELETE", "/api/v1/webhooks/{webhook_id}"): None,
        ("PUT", "/api/v1/journeys/{journey_id}"): journey,
        ("PATCH", "/api/v1/journeys/{journey_id}"): {"status": "paused"},
        ("DELETE", "/api/v1/journeys/{journey_id}"): None,
        ("POST", "/api/v1/deliveries/{delivery_id}/retry"): None,
        ("POST", "/api/v1/rules/{rule_id}/rotate-secret"): None,
        ("POST", "/api/v1/webhooks/{webhook_id}/rotate-secret"): None,
        ("PATCH", "/api/v1/users/{user_ext_id}/state"): {"tag": "stolen"},
    }


def _url(template: str, ids: dict[str, str]) -> str:
    url = template
    for name, value in {**ids, "user_ext_id": "same"}.items():
        url = url.replace("{" + name + "}", value)
    assert "{" not in url, f"no brand-2 object for {template}: add it to _world"
    return url


async def test_brand_matrix_role_by_brand_scope_by_route(
    hookline: Hookline, receiver: Receiver
) -> None:
    """Every route naming an object, brand-2's object, as each key: visible, hidden, refused."""
    h = hookline
    world = await _world(h, receiver)
    ring = h.runtime.keys
    keys: dict[str, tuple[ApiKey, str]] = {
        f"{role.value} {scope}": await ring.create(role, brands, "")
        for role in Role
        for scope, brands in (("b1", ("b1",)), ("all", ()))
    }
    app = h.server.config.app
    assert isinstance(app, FastAPI)
    bodies = _bodies(receiver)
    routes = [
        (m, p)
        for m, p in app_routes(app)
        if p.startswith("/api/v1/")
        and "{" in p
        and not p.startswith("/api/v1/keys")
        and m != "HEAD"
    ]
    assert len(routes) >= 18
    wrong: list[str] = []
    for method, template in routes:
        url = _url(template, world["b2"])
        params = {"ext_brand_id": "b2"} if "{user_ext_id}" in template else {}
        need = right_for(method, template)
        assert need is not None
        for label, (record, text) in keys.items():
            if not record.can(need):
                continue  # the role matrix of test_auth
            if method != "GET" and record.all_brands:
                continue  # a key of every brand may write; the b1 keys must not
            body = bodies.get((method, template)) if method != "GET" else None
            if method != "GET":
                assert (method, template) in bodies, f"add a body for {method} {template}"
            resp = await h.client.request(
                method, url, params=params, headers=_auth(text), json=body
            )
            if record.all_brands:
                expected = {200}
            elif (method, template) == ("PATCH", "/api/v1/users/{user_ext_id}/state"):
                expected = {403}  # ingest names the brand itself: refused as an event is
            else:
                expected = {404}  # another brand's object is not there (ids do not leak)
            if resp.status_code not in expected:
                wrong.append(f"{method} {template} as {label}: {resp.status_code} {resp.text}")
    assert wrong == []
    # Nothing of brand 2 changed under the refused writes.
    rule = (
        await h.client.get(
            f"/api/v1/rules/{world['b2']['rule_id']}", headers=_auth(keys["admin all"][1])
        )
    ).json()
    assert rule["enabled"] is True and rule["name"] == "rule-b2"
    state = await h.client.get(
        "/api/v1/users/same/state",
        params={"ext_brand_id": "b2"},
        headers=_auth(keys["read all"][1]),
    )
    assert state.json()["tag"] == "b2"


async def test_lists_show_a_brand_key_only_its_brands(
    hookline: Hookline, receiver: Receiver
) -> None:
    h = hookline
    world = await _world(h, receiver)
    _, b1 = await h.runtime.keys.create(Role.READ, ("b1",), "")
    _, every = await h.runtime.keys.create(Role.READ, (), "")
    for path, field in (
        ("/api/v1/rules", "rule_id"),
        ("/api/v1/webhooks", "webhook_id"),
        ("/api/v1/journeys", "journey_id"),
        ("/api/v1/deliveries?rule_id=" + world["b1"]["rule_id"], "delivery_id"),
    ):
        seen = {x["id"] for x in (await h.client.get(path, headers=_auth(b1))).json()["data"]}
        assert world["b1"][field] in seen, path
        assert world["b2"][field] not in seen and world[None][field] not in seen, path
    everything = (await h.client.get("/api/v1/deliveries", headers=_auth(every))).json()["data"]
    mine = (await h.client.get("/api/v1/deliveries", headers=_auth(b1))).json()["data"]
    assert {d["ext_brand_id"] for d in everything} == {"b1", "b2", None}
    assert mine and {d["ext_brand_id"] for d in mine} == {"b1"}


async def test_a_brand_admin_makes_objects_of_its_brands_only(hookline: Hookline) -> None:
    h = hookline
    _, admin = await h.runtime.keys.create(Role.ADMIN, ("b1",), "")
    for brand, status in (("b2", 403), (None, 403), ("b1", 201)):
        rule = example_rule(name=f"r-{brand}", **_brand(brand))
        resp = await h.client.post("/api/v1/rules", json=rule, headers=_auth(admin))
        assert resp.status_code == status, resp.text
        if status == 403:
            assert resp.json()["field"] == "ext_brand_id"
        wh = {"name": f"w-{brand}", "url": "http://127.0.0.1:9/x", **_brand(brand)}
        resp = await h.client.post("/api/v1/webhooks", json=wh, headers=_auth(admin))
        assert resp.status_code == status, resp.text


async def test_the_same_user_id_in_two_brands_is_two_users(
    hookline: Hookline, receiver: Receiver
) -> None:
    h = hookline
    world = await _world(h, receiver)
    for brand in BRANDS:
        state = (await h.client.get("/api/v1/users/same/state", params=_brand(brand))).json()
        assert state["tag"] == _tag(brand) and state["ext_brand_id"] == brand
        mine = (await h.client.get("/api/v1/users/same/journeys", params=_brand(brand))).json()
        # Its own brand's journey and the journey of every brand; never another brand's.
        assert {i["journey_id"] for i in mine["data"]} == {
            world[brand]["journey_id"],
            world[None]["journey_id"],
        }
        assert {i["ext_brand_id"] for i in mine["data"]} == {brand}
    # 5 and "5" are one brand.
    await h.post(
        "/api/v1/events",
        {
            "event_type": "update_profile",
            "user_ext_id": "n",
            "ext_brand_id": 5,
            "payload": {"a": 1},
        },
    )
    state = (await h.client.get("/api/v1/users/n/state", params={"ext_brand_id": "5"})).json()
    assert state["a"] == 1
    assert (await h.client.get("/api/v1/users/n/state")).status_code == 404


async def test_a_rule_of_one_brand_fires_for_that_brand_only(
    hookline: Hookline, receiver: Receiver
) -> None:
    h = hookline
    world = await _world(h, receiver)
    for brand in BRANDS:
        event_id = world[brand]["event_id"]
        found = (await h.client.get("/api/v1/deliveries", params={"event_id": event_id})).json()
        rules = {d["rule_id"] for d in found["data"] if d["rule_id"] is not None}
        expected = {world[brand]["rule_id"], world[None]["rule_id"]}
        assert rules == expected, brand


V2_USERS = """
CREATE TABLE hookline_meta (key VARCHAR(64) PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO hookline_meta VALUES ('schema_version', '2');
CREATE TABLE users (
    user_ext_id VARCHAR(256) PRIMARY KEY, state BLOB NOT NULL, updated_at INTEGER NOT NULL
);
"""


async def test_an_old_database_keys_its_users_by_the_brand_in_their_state(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    with sqlite3.connect(path) as db:
        db.executescript(V2_USERS)
        for user, brand in (("u-int", 5), ("u-text", "b1"), ("u-none", None)):
            state = {"user_ext_id": user, "ext_brand_id": brand, "x": user}
            db.execute("INSERT INTO users VALUES (?, ?, 1)", (user, orjson.dumps(state)))
    store = open_sqlite(path)
    await store.open()
    try:
        assert (await store.get_state("u-int", "5") or {}).get("x") == "u-int"
        assert (await store.get_state("u-text", "b1") or {}).get("x") == "u-text"
        assert (await store.get_state("u-none") or {}).get("x") == "u-none"
        assert await store.get_state("u-int") is None
        assert await store.get_state("u-text", "b2") is None
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        version = db.execute("SELECT value FROM hookline_meta").fetchone()
        assert version == (str(SCHEMA_VERSION),)
        assert "users_v2" not in {r[0] for r in db.execute("SELECT name FROM sqlite_master")}


@pytest.mark.parametrize("brand", ["b1", 7])
def test_the_rule_index_checks_brands_only_where_a_rule_has_one(brand: Any) -> None:
    from hookline.rules import Rule, RuleIndex, compile_rule
    from hookline.webhooks import WebhookSpec

    def rule(rule_id: str, event_type: str, brand_of: str | None) -> Rule:
        spec = WebhookSpec(url="http://127.0.0.1:9/x")
        return Rule(
            rule_id, rule_id, True, event_type, None, spec, None, 0, 0, ext_brand_id=brand_of
        )

    index = RuleIndex()
    index.rebuild([rule("a", "t", None), rule("b", "t", str(brand)), rule("c", "u", None)], {})
    assert index.branded == frozenset({"t"})
    assert [c.rule.id for c in index.match("t", brand)] == ["a", "b"]
    assert [c.rule.id for c in index.match("t", "other")] == ["a"]
    assert [c.rule.id for c in index.match("t", None)] == ["a"]
    index.remove("b")
    assert index.branded == frozenset()
    index.put(compile_rule(rule("d", "u", "b1"), {}))
    assert index.branded == frozenset({"u"})
    assert [c.rule.id for c in index.match("u", None)] == ["c"]


async def test_only_admins_see_signing_secrets(hookline: Hookline, receiver: Receiver) -> None:
    """A read key (a dashboard) must not be able to forge signed webhooks."""
    h = hookline
    world = await _world(h, receiver)
    _, reader = await h.runtime.keys.create(Role.READ, (), "")
    _, admin = await h.runtime.keys.create(Role.ADMIN, (), "")
    webhook_id = world["b1"]["webhook_id"]
    inline = example_rule(name="inline", activity={"url": receiver.url()})
    created = await h.client.post("/api/v1/rules", json=inline, headers=_auth(admin))
    rule_id = created.json()["id"]

    def first(rows: list[dict[str, Any]], wanted: str) -> dict[str, Any]:
        return next(r for r in rows if r["id"] == wanted)

    reads: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
        f"/api/v1/rules/{rule_id}": lambda a: a["activity"],
        "/api/v1/rules": lambda a: first(a["data"], rule_id)["activity"],
        f"/api/v1/webhooks/{webhook_id}": lambda a: a,
        "/api/v1/webhooks": lambda a: first(a["data"], webhook_id),
    }
    for path, where in reads.items():
        as_reader = where((await h.client.get(path, headers=_auth(reader))).json())
        as_admin = where((await h.client.get(path, headers=_auth(admin))).json())
        assert str(as_admin.get("signing_secret", "")).startswith("whsec_"), path
        assert not str(as_reader.get("signing_secret") or "").startswith("whsec_"), path
