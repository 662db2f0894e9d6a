"""Brands: a user is (ext_brand_id, user_ext_id), and a brand-scoped key sees only its brands."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi import FastAPI

from hookline.api.auth import right_for
from hookline.keys import ApiKey, Role
from hookline.store.schema import SCHEMA_VERSION
from hookline.store.sqlite import open_sqlite
from tests.helpers import Hookline, Receiver, example_journey, example_rule, spin_event
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
            "version": str(journey["version"]),
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
        ("POST", "/api/v1/journeys/{journey_id}/rotate-secret"): None,
        ("PATCH", "/api/v1/users/{user_ext_id}/state"): {"tag": "stolen"},
    }


def _url(template: str, ids: dict[str, str]) -> str:
    url = template
    for name, value in {**ids, "user_ext_id": "same", "version": "1"}.items():
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
            # Another brand's object is not there for a brand key: 404, ids do not leak.
            expected = {200} if record.all_brands else {404}
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


# --- which saved webhook an object of a brand may use: one rule for rules and journeys ---

# (object's brand, webhook's brand, key's brands) -> status of the create.
USE_CASES: list[tuple[str | None, str | None, tuple[str, ...], int]] = [
    ("b1", "b1", (), 201),
    ("b1", None, (), 201),  # a webhook of no brand serves every brand
    ("b1", "b2", (), 409),  # another brand's credentials and signing secret
    (None, "b1", (), 409),  # an object of no brand runs for every brand
    (None, None, (), 201),
    ("b1", "b1", ("b1",), 201),
    ("b1", "b2", ("b1",), 422),  # not there for this key: as an unknown id
    ("b1", None, ("b1",), 422),  # a brand key does not see objects of no brand either
]


def _user_of(kind: str, name: str, brand: str | None, webhook_id: str) -> dict[str, Any]:
    activity = {"type": "webhook", "webhook_id": webhook_id}
    if kind == "rule":
        return {
            "name": name,
            "ext_brand_id": brand,
            "trigger": {"event_type": "spin"},
            "activity": activity,
        }
    return {
        "name": name,
        "status": "active",
        "ext_brand_id": brand,
        "entry": {"trigger": {"event_type": "spin"}},
        "start": "hello",
        "blocks": {"hello": {"type": "webhook", "activity": activity}},
    }


@pytest.mark.parametrize("kind", ["rule", "journey"])
async def test_an_object_may_use_a_saved_webhook_of_its_brand_or_of_none(
    hookline: Hookline, receiver: Receiver, kind: str
) -> None:
    h = hookline
    webhooks = {}
    for brand in BRANDS:
        wh = {"name": f"wh-{_tag(brand)}", "url": receiver.url(), "ext_brand_id": brand}
        webhooks[brand] = (await h.post("/api/v1/webhooks", wh)).json()["id"]
    keys: dict[tuple[str, ...], str] = {
        brands: (await h.runtime.keys.create(Role.ADMIN, brands, ""))[1] for brands in ((), ("b1",))
    }
    path = f"/api/v1/{kind}s"
    unknown = await h.post(path, _user_of(kind, "x", "b1", "wh_nope"), headers=_auth(keys[()]))
    for i, (brand, wh_brand, scope, status) in enumerate(USE_CASES):
        body = _user_of(kind, f"{kind}-{i}", brand, webhooks[wh_brand])
        resp = await h.post(path, body, headers=_auth(keys[scope]))
        case = (brand, wh_brand, scope)
        assert resp.status_code == status, (case, resp.text)
        if status == 409:
            assert resp.json()["field"].endswith("ext_brand_id") or resp.json()["field"].endswith(
                "webhook_id"
            ), case
        if status == 422:
            # Word for word what an id that does not exist gets: nothing tells it is taken.
            got = resp.json()
            want = unknown.json()
            assert got["field"] == want["field"], case
            assert got["detail"].replace(webhooks[wh_brand], "?") == want["detail"].replace(
                "wh_nope", "?"
            ), case


async def test_a_journey_cannot_be_changed_to_use_another_brands_webhook(
    hookline: Hookline, receiver: Receiver
) -> None:
    h = hookline
    world = await _world(h, receiver)
    _, b1 = await h.runtime.keys.create(Role.ADMIN, ("b1",), "")
    _, every = await h.runtime.keys.create(Role.ADMIN, (), "")
    h.client.headers["authorization"] = f"Bearer {every}"  # keys are needed from now on
    journey_id = world["b1"]["journey_id"]
    foreign = {"hello": {"type": "webhook", "activity": {"webhook_id": world["b2"]["webhook_id"]}}}
    path = f"/api/v1/journeys/{journey_id}"
    as_every = await h.client.patch(path, json={"blocks": foreign})
    assert as_every.status_code == 409, as_every.text
    as_b1 = await h.client.patch(path, json={"blocks": foreign}, headers=_auth(b1))
    assert as_b1.status_code == 422, as_b1.text
    assert as_b1.json()["field"] == "blocks.hello.activity.webhook_id"
    # Its own brand's webhook, then a move to another brand: refused while it uses it.
    own = {"hello": {"type": "webhook", "activity": {"webhook_id": world["b1"]["webhook_id"]}}}
    assert (await h.client.patch(path, json={"blocks": own})).status_code == 200
    moved = await h.client.patch(path, json={"ext_brand_id": "b2"})
    assert moved.status_code == 409, moved.text
    # Nor can the webhook move to another brand under the journey that uses it.
    webhook_id = world["b1"]["webhook_id"]
    rule_id = world["b1"]["rule_id"]
    assert (await h.client.delete(f"/api/v1/rules/{rule_id}")).status_code == 204
    wh = {"name": "wh-b1", "url": receiver.url("/b1"), "ext_brand_id": "b2"}
    resp = await h.client.put(f"/api/v1/webhooks/{webhook_id}", json=wh)
    assert resp.status_code == 409, resp.text
    assert "journey" in resp.json()["detail"]


def test_compiling_a_journey_checks_the_brand_so_a_stored_one_is_skipped_at_start() -> None:
    """Start-up compiles stored journeys with this check: one saved before it does not run."""
    from hookline.errors import Conflict
    from hookline.journeys import DEFINITION_KEYS, Journey, JourneyStatus, compile_journey
    from hookline.rules import SavedWebhook
    from hookline.webhooks import WebhookSpec

    webhook = SavedWebhook("wh_1", "w", WebhookSpec(url="http://127.0.0.1:9/x"), 0, 0)
    body = _user_of("journey", "j", "b1", "wh_1")
    definition = {k: v for k, v in body.items() if k in DEFINITION_KEYS}
    for brand, wh_brand, fails in (("b1", "b2", True), (None, "b2", True), ("b1", None, False)):
        journey = Journey("jrn_1", "j", JourneyStatus.ACTIVE, definition, 0, 0, ext_brand_id=brand)
        saved = replace(webhook, ext_brand_id=wh_brand)
        if fails:
            with pytest.raises(Conflict, match="belongs to brand 'b2'") as refused:
                compile_journey(journey, {"wh_1": saved})
            assert refused.value.field == "blocks.hello.activity.webhook_id"
        else:
            assert compile_journey(journey, {"wh_1": saved}).webhook_ids == {"wh_1"}


# --- "" is not a brand: refused, naming the field, wherever a brand comes in --------------

EMPTY_BRAND: list[tuple[str, str, dict[str, Any], Any, str]] = [
    (
        "POST",
        "/api/v1/events",
        {},
        {"event_type": "t", "user_ext_id": "u", "ext_brand_id": ""},
        "ext_brand_id",
    ),
    (
        "POST",
        "/api/v1/events",
        {},
        [{"event_type": "t", "user_ext_id": "u", "ext_brand_id": ""}],
        "[0].ext_brand_id",
    ),
    ("GET", "/api/v1/users/u/state", {"ext_brand_id": ""}, None, "ext_brand_id"),
    ("PATCH", "/api/v1/users/u/state", {"ext_brand_id": ""}, {"a": 1}, "ext_brand_id"),
    ("GET", "/api/v1/users/u/journeys", {"ext_brand_id": ""}, None, "ext_brand_id"),
    ("GET", "/api/v1/deliveries", {"ext_brand_id": ""}, None, "ext_brand_id"),
    ("POST", "/api/v1/rules", {}, example_rule(ext_brand_id=""), "ext_brand_id"),
    (
        "POST",
        "/api/v1/webhooks",
        {},
        {"name": "w", "url": "http://127.0.0.1:9/x", "ext_brand_id": ""},
        "ext_brand_id",
    ),
    (
        "POST",
        "/api/v1/journeys",
        {},
        {**_journey(Receiver("http://127.0.0.1:9"), None), "ext_brand_id": ""},
        "ext_brand_id",
    ),
    (
        "POST",
        "/api/v1/webhooks/preview",
        {},
        {"webhook": {"url": "http://127.0.0.1:9/x"}, "event": {"ext_brand_id": ""}},
        "event.ext_brand_id",
    ),
    ("POST", "/api/v1/keys", {}, {"role": "read", "brands": [""]}, "brands[0]"),
]


@pytest.mark.parametrize(
    ("method", "path", "params", "body", "field"),
    EMPTY_BRAND,
    ids=[f"{m} {p} {f}" for m, p, _, _, f in EMPTY_BRAND],
)
async def test_an_empty_ext_brand_id_is_refused_naming_the_field(
    hookline: Hookline, method: str, path: str, params: dict[str, Any], body: Any, field: str
) -> None:
    resp = await hookline.client.request(method, path, params=params, json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"] == field


def test_keys_create_refuses_an_empty_brand_before_anything_is_made() -> None:
    from hookline.errors import InvalidInput
    from hookline.keys import check_brands

    with pytest.raises(InvalidInput) as refused:
        check_brands(["b1", ""])
    assert refused.value.field == "brands[1]"


# --- previews and test sends: the brand checks of the real routes ---------------------------

PREVIEWS: list[tuple[str, str, str | None, tuple[str, ...], int]] = [
    # (what is rendered, its brand, the sample event's brand, the key's brands, status)
    ("webhook_id", "b2", None, ("b1",), 404),  # another brand's webhook: not there
    ("webhook_id", "b2", "b1", ("b1",), 404),
    ("rule_id", "b2", None, ("b1",), 404),
    ("webhook_id", "b1", "b2", ("b1",), 403),  # an event of another brand: as posting one
    ("webhook", "", "b2", ("b1",), 403),
    ("webhook", "", None, ("b1",), 403),  # an event of no brand is every brand's
    ("webhook_id", "b1", None, ("b1",), 200),  # the sample takes the webhook's brand
    ("rule_id", "b1", "b1", ("b1",), 200),
    ("webhook_id", "b1", "b2", (), 409),  # never sent for another brand's event
    ("rule_id", "b1", "b2", (), 409),
    ("rule_id", "b1", None, (), 200),
]


@pytest.mark.parametrize("route", ["preview", "test"])
async def test_previews_and_test_sends_check_brands_as_the_real_routes_do(
    hookline: Hookline, receiver: Receiver, route: str
) -> None:
    h = hookline
    world = await _world(h, receiver)
    scopes: tuple[tuple[str, ...], ...] = ((), ("b1",))
    keys = {scope: (await h.runtime.keys.create(Role.ADMIN, scope, ""))[1] for scope in scopes}
    wrong = []
    for what, brand, sample_brand, scope, status in PREVIEWS:
        body: dict[str, Any] = {"event": {"event_type": "spin", **_brand(sample_brand)}}
        if what == "webhook":
            body["webhook"] = {"url": receiver.url("/inline")}
        else:
            body[what] = world[brand][what]
        resp = await h.post(f"/api/v1/webhooks/{route}", body, headers=_auth(keys[scope]))
        if resp.status_code != status:
            wrong.append(f"{what} {brand} {sample_brand} {scope}: {resp.status_code} {resp.text}")
        elif status in (403, 409):
            assert resp.json()["field"] == "event.ext_brand_id"
    assert wrong == []


async def test_a_read_key_reads_a_user_whose_id_has_slashes(hookline: Hookline) -> None:
    """{user_ext_id:path}: the gate and the router agree, so no admin key is needed."""
    h = hookline
    patch = await h.client.patch("/api/v1/users/a%2Fb%2Fc/state", json={"x": 1})
    assert patch.status_code == 200, patch.text
    _, reader = await h.runtime.keys.create(Role.READ, (), "")
    _, ingest = await h.runtime.keys.create(Role.INGEST, (), "")
    state = await h.client.get("/api/v1/users/a%2Fb%2Fc/state", headers=_auth(reader))
    assert state.status_code == 200, state.text
    assert state.json()["user_ext_id"] == "a/b/c" and state.json()["x"] == 1
    journeys = await h.client.get("/api/v1/users/a%2Fb%2Fc/journeys", headers=_auth(reader))
    assert journeys.status_code == 200, journeys.text
    again = await h.client.patch(
        "/api/v1/users/a%2Fb%2Fc/state", json={"x": 2}, headers=_auth(ingest)
    )
    assert again.status_code == 200, again.text


async def test_another_brands_user_is_404_to_a_state_patch_whether_or_not_it_exists(
    hookline: Hookline,
) -> None:
    h = hookline
    await h.client.patch("/api/v1/users/real/state", params={"ext_brand_id": "b2"}, json={"a": 1})
    _, ingest = await h.runtime.keys.create(Role.INGEST, ("b1",), "")
    for user in ("real", "never-seen"):
        resp = await h.client.patch(
            f"/api/v1/users/{user}/state",
            params={"ext_brand_id": "b2"},
            json={"a": 2},
            headers=_auth(ingest),
        )
        assert resp.status_code == 404, resp.text
        assert resp.json()["field"] == "user_ext_id"
    # Creating for another brand is what a 403 says: an event of a foreign brand.
    event = {"event_type": "t", "user_ext_id": "u", "ext_brand_id": "b2"}
    assert (await h.post("/api/v1/events", event, headers=_auth(ingest))).status_code == 403


async def test_a_journey_moves_to_another_brand_only_with_nobody_inside(
    hookline: Hookline, receiver: Receiver
) -> None:
    blocks = {
        "wait": {"type": "delay", "duration": "1h", "next": "hello"},
        "hello": {"type": "webhook", "activity": {"url": receiver.url()}},
    }
    journey = example_journey(ext_brand_id="brand-1", start="wait", blocks=blocks)
    resp = await hookline.client.post("/api/v1/journeys", json=journey)
    assert resp.status_code == 201, resp.text
    path = f"/api/v1/journeys/{resp.json()['id']}"
    assert (await hookline.post("/api/v1/events", spin_event("u-1"))).status_code == 202
    moved = await hookline.client.patch(path, json={"ext_brand_id": "brand-2"})
    assert moved.status_code == 409, moved.text
    assert moved.json()["field"] == "ext_brand_id"
    assert "1 user(s) are inside" in moved.json()["detail"]
    # Other changes go on; once everyone has left, it may move.
    assert (await hookline.client.patch(path, json={"status": "stopped"})).status_code == 200
    moved = await hookline.client.patch(path, json={"ext_brand_id": "brand-2"})
    assert moved.status_code == 200, moved.text
    assert moved.json()["ext_brand_id"] == "brand-2"
