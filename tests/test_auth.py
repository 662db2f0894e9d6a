"""API keys at the edge: every route's right, from the app's own routes (none forgotten)."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from hookline.api import create_app
from hookline.api.auth import PUBLIC, RIGHTS, RouteRights, right_for
from hookline.keys import ApiKey, Right, Role
from hookline.runtime import build_runtime
from hookline.settings import Settings
from tests.helpers import Hookline, spin_event

MakeHookline = Callable[..., Coroutine[Any, Any, Hookline]]


def app_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path template) the app answers, schema or not, as the gate sees them."""
    return RouteRights(app.router.routes).templates()


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    return create_app(build_runtime(Settings(data_dir=tmp_path / "d")))


def test_every_route_of_the_app_is_in_the_table(app: FastAPI) -> None:
    routes = app_routes(app)
    assert ("POST", "/api/v1/events") in routes  # the walk sees included routers
    assert ("GET", "/openapi.json") in routes
    # Starlette answers HEAD wherever it answers GET; the gate does the same.
    missing = [
        r for r in routes if r not in RIGHTS and not (r[0] == "HEAD" and ("GET", r[1]) in RIGHTS)
    ]
    assert missing == [], "add these routes to hookline.api.auth.RIGHTS"
    stale = [r for r in RIGHTS if r not in routes]
    assert stale == [], "these RIGHTS entries name no route"


def test_the_gate_finds_each_route_as_the_router_does(app: FastAPI) -> None:
    rights = RouteRights(app.router.routes)
    need_of, template_of = rights.need_of, rights.template_of
    for method, template in app_routes(app):
        assert need_of(method, _url(template))[1] == template, (method, template)
    # A fixed path is not taken for a parameter, whatever the order of the table.
    assert template_of("POST", "/api/v1/webhooks/preview") == "/api/v1/webhooks/preview"
    assert template_of("PUT", "/api/v1/webhooks/preview") == "/api/v1/webhooks/{webhook_id}"
    assert template_of("GET", "/api/v1/rules/") == "/api/v1/rules"
    assert template_of("GET", "/api/v1/nothing") is None
    assert need_of("HEAD", "/openapi.json") == (Right.READ, "/openapi.json")
    assert need_of("HEAD", "/echo-send/abcdefgh/") == (PUBLIC, "/echo-send/{secret}/")
    assert need_of("GET", "/api/v1/nothing") == (Right.ADMIN, None)


# Ids as a platform may have them: a slash, several, a trailing one, spaces, dots.
AWKWARD_USER_IDS = ("a/b", "a/b/c", "x/state", "x/journeys", "a b", "..", "/lead", "ü/1")


@pytest.mark.parametrize("user_ext_id", AWKWARD_USER_IDS)
def test_a_user_id_with_slashes_needs_the_same_right_as_any_other(
    app: FastAPI, user_ext_id: str
) -> None:
    """The gate matches {user_ext_id:path} as the router does, so no route falls to admin."""
    rights = RouteRights(app.router.routes)
    for method, tail, need in (
        ("GET", "state", Right.READ),
        ("PATCH", "state", Right.INGEST),
        ("GET", "journeys", Right.READ),
    ):
        path = f"/api/v1/users/{user_ext_id}/{tail}"
        template = f"/api/v1/users/{{user_ext_id}}/{tail}"
        assert rights.need_of(method, path) == (need, template), path


def test_every_route_needs_what_the_table_says_not_admin_by_default(app: FastAPI) -> None:
    """Walk the app's routes: each has its own entry, and the gate reaches that entry."""
    rights = RouteRights(app.router.routes)
    wrong = []
    for method, template in app_routes(app):
        key = (method, template) if method != "HEAD" else ("GET", template)
        if key not in RIGHTS:
            wrong.append(f"{method} {template}: not in RIGHTS")
        elif rights.need_of(method, _url(template)) != (RIGHTS[key], template):
            wrong.append(f"{method} {template}: the gate finds another entry")
    assert wrong == []


def test_a_route_missing_from_the_table_needs_admin() -> None:
    assert right_for("POST", "/api/v1/something-new") is Right.ADMIN
    assert right_for("GET", "/healthz") is PUBLIC


async def test_a_path_missing_from_the_table_is_closed(make_hookline: MakeHookline) -> None:
    h = await make_hookline()
    app = h.server.config.app
    assert isinstance(app, FastAPI)

    @app.get("/api/v1/forgotten")
    async def forgotten() -> dict[str, str]:
        return {"secret": "data"}

    _, read = await h.runtime.keys.create(Role.READ, (), "")
    _, admin = await h.runtime.keys.create(Role.ADMIN, (), "")
    assert (await h.client.get("/api/v1/forgotten")).status_code == 401
    assert (await h.client.get("/api/v1/forgotten", headers=_headers(read))).status_code == 403
    assert (await h.client.get("/api/v1/forgotten", headers=_headers(admin))).status_code == 200
    assert (await h.client.get("/api/v1/nothing", headers=_headers(read))).status_code == 403
    assert (await h.client.get("/api/v1/nothing", headers=_headers(admin))).status_code == 404


async def test_no_body_is_read_without_a_key(make_hookline: MakeHookline) -> None:
    h = await make_hookline()
    await h.runtime.keys.create(Role.ADMIN, (), "")
    for path in ("/api/v1/rules", "/api/v1/events"):
        resp = await h.client.post(
            path, content=b"{not json", headers={"content-type": "application/json"}
        )
        assert resp.status_code == 401, path


def test_the_openapi_document_declares_the_bearer_scheme(app: FastAPI) -> None:
    doc = app.openapi()
    assert doc["components"]["securitySchemes"]["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["apiKey"]["description"],
    }
    events = doc["paths"]["/api/v1/events"]["post"]
    assert events["security"] == [{"apiKey": []}]
    assert "`ingest` right" in events["description"]
    assert {"401", "403"} <= set(events["responses"])
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    assert doc["paths"]["/echo-send/{secret}/"]["post"]["security"] == []


def _url(path: str) -> str:
    return path.replace("{", "").replace("}", "")  # /rules/{rule_id} -> /rules/rule_id


def _headers(key: str | None) -> dict[str, str]:
    return {} if key is None else {"authorization": f"Bearer {key}"}


async def _call(client: httpx.AsyncClient, method: str, path: str, key: str | None) -> Any:
    # A valid JSON body that no route acts on: every allowed call ends in a 4xx of its own
    # (or reads, or patches a throwaway user), so the matrix changes nothing that matters.
    body = b"{}" if method in ("POST", "PUT", "PATCH") else None
    return await client.request(
        method,
        _url(path),
        content=body,
        headers={**_headers(key), "content-type": "application/json"},
    )


async def test_role_by_route_matrix(make_hookline: MakeHookline) -> None:
    """Each /api/v1 route, with no key, a wrong, malformed or revoked one, and each role."""
    h = await make_hookline()
    ring = h.runtime.keys
    keys: dict[str, tuple[ApiKey, str]] = {
        role.value: await ring.create(role, (), role.value) for role in Role
    }
    keys["brand admin"] = await ring.create(Role.ADMIN, ("b1",), "brand admin")
    revoked, revoked_text = await ring.create(Role.ADMIN, (), "gone")
    await ring.revoke(revoked.id)

    app = h.server.config.app
    assert isinstance(app, FastAPI)
    routes = app_routes(app)
    api = [r for r in routes if r[1].startswith("/api/v1/")]
    assert len(api) >= 20
    wrong: list[str] = []
    for method, path in [*api, ("GET", "/docs"), ("GET", "/openapi.json")]:
        need = RIGHTS[(method, path)]
        assert need is not PUBLIC
        for label, key in [
            ("no key", None),
            ("wrong key", "hlk_" + "x" * 43),
            ("revoked key", revoked_text),
        ]:
            resp = await _call(h.client, method, path, key)
            if resp.status_code != 401 or resp.json()["code"] != "unauthorized":
                wrong.append(f"{method} {path} with {label}: {resp.status_code} {resp.text}")
            elif resp.headers.get_list("www-authenticate") != _challenges(path):
                wrong.append(f"{method} {path} with {label}: no WWW-Authenticate")
        for label, (record, text) in keys.items():
            allowed = record.can(need)
            if path.startswith("/api/v1/keys"):
                allowed = allowed and record.all_brands
            resp = await _call(h.client, method, path, text)
            # A 403 about the brand (not the key) is the brand model's: see test_brands.
            refused_key = resp.status_code == 401 or (
                resp.status_code == 403 and resp.json().get("field") == "Authorization"
            )
            if allowed and refused_key:
                wrong.append(f"{method} {path} as {label}: refused {resp.text}")
            if not allowed and (resp.status_code != 403 or resp.json()["code"] != "forbidden"):
                wrong.append(f"{method} {path} as {label}: {resp.status_code}, not 403")
    assert wrong == []


async def test_malformed_authorization_is_401(make_hookline: MakeHookline) -> None:
    h = await make_hookline()
    _, text = await h.runtime.keys.create(Role.ADMIN, (), "root")
    for header in (f"Basic {text}", "Bearer", f"Token {text}", text):
        resp = await h.client.get("/api/v1/rules", headers={"authorization": header})
        assert resp.status_code == 401, header
        assert resp.json() == {
            "code": "unauthorized",
            "detail": resp.json()["detail"],
            "field": "Authorization",
        }
        assert text not in resp.text
    resp = await h.client.get("/api/v1/rules", headers={"authorization": f"bearer {text}"})
    assert resp.status_code == 200


async def test_bearer_with_an_empty_key_says_the_key_is_missing(
    make_hookline: MakeHookline,
) -> None:
    """`-H "Authorization: Bearer $KEY"` with $KEY unset sends 'Bearer' and nothing else."""
    h = await make_hookline()
    await h.runtime.keys.create(Role.ADMIN, (), "root")
    # curl sends "Bearer " and the server reads it without the trailing space.
    for header in ("Bearer", "bearer"):
        resp = await h.client.get("/api/v1/rules", headers={"authorization": header})
        assert resp.status_code == 401, header
        assert resp.json()["field"] == "Authorization"
        assert "no key after it" in resp.json()["detail"], header
    wrong_scheme = await h.client.get("/api/v1/rules", headers={"authorization": "Basic abc"})
    assert "no key after it" not in wrong_scheme.json()["detail"]


async def test_public_routes_stay_public_with_keys(make_hookline: MakeHookline) -> None:
    h = await make_hookline()
    await h.runtime.keys.create(Role.ADMIN, (), "root")
    assert (await h.client.get("/healthz")).status_code == 200
    assert (await h.client.post("/echo-send/my-first-secret/", json={"a": 1})).status_code == 200
    listed = await h.client.get("/echo-list/my-first-secret/")
    assert listed.status_code == 200
    assert len(listed.json()["requests"]) == 1
    assert (await h.client.get("/static/swagger/swagger-ui.css")).status_code == 200
    assert (await h.client.get("/openapi.json")).status_code == 401
    assert (await h.client.get("/docs")).status_code == 401


async def test_brand_scoped_key_posts_only_its_brands(make_hookline: MakeHookline) -> None:
    h = await make_hookline()
    _, admin = await h.runtime.keys.create(Role.ADMIN, (), "root")
    made = await h.client.post(
        "/api/v1/keys",
        json={"role": "ingest", "brands": ["brand-1", 5]},
        headers=_headers(admin),
    )
    assert made.status_code == 201
    assert made.json()["brands"] == ["brand-1", "5"]
    scoped = _headers(made.json()["key"])

    own = await h.post("/api/v1/events", spin_event(ext_brand_id="brand-1"), headers=scoped)
    assert own.status_code == 202, own.text
    # Brands compare as text: the key's "5" is the event's 5.
    both = [spin_event(ext_brand_id=5), spin_event(ext_brand_id="brand-1")]
    assert (await h.post("/api/v1/events", both, headers=scoped)).status_code == 202

    batch = [spin_event(user="a"), spin_event(user="b"), spin_event(ext_brand_id="brand-2")]
    other = await h.post("/api/v1/events", batch, headers=scoped)
    assert other.status_code == 403
    assert other.json()["code"] == "forbidden"
    assert other.json()["field"] == "[2].ext_brand_id"
    single = await h.post("/api/v1/events", spin_event(ext_brand_id=None), headers=scoped)
    assert single.status_code == 403
    assert single.json()["field"] == "ext_brand_id"
    # Nothing of a refused batch was stored: events a, b came with it.
    state = await h.client.get("/api/v1/users/a/state", headers=_headers(admin))
    assert state.status_code == 404


async def test_only_an_admin_of_every_brand_manages_keys(make_hookline: MakeHookline) -> None:
    h = await make_hookline()
    _, admin = await h.runtime.keys.create(Role.ADMIN, (), "root")
    _, brand_admin = await h.runtime.keys.create(Role.ADMIN, ("b1",), "b1 admin")
    body = {"role": "admin"}
    refused = await h.client.post("/api/v1/keys", json=body, headers=_headers(brand_admin))
    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden"
    made = await h.client.post("/api/v1/keys", json=body, headers=_headers(admin))
    assert made.status_code == 201


async def test_keys_api_create_list_revoke(make_hookline: MakeHookline) -> None:
    h = await make_hookline()
    # No key yet, on loopback: open, so the first key can be made over the API too.
    first = await h.client.post("/api/v1/keys", json={"role": "admin", "name": "root"})
    assert first.status_code == 201, first.text
    admin = first.json()["key"]
    assert admin.startswith("hlk_") and first.json()["key_prefix"] == admin[:12]
    # From now on keys are required.
    assert (await h.client.get("/api/v1/keys")).status_code == 401
    auth = _headers(admin)
    read = await h.client.post("/api/v1/keys", json={"role": "read", "name": "dash"}, headers=auth)
    listed = (await h.client.get("/api/v1/keys", headers=auth)).json()["data"]
    assert [k["name"] for k in listed] == ["root", "dash"]
    assert all("key" not in k and "hash" not in k for k in listed)
    assert admin not in str(listed)
    read_id, read_key = read.json()["id"], read.json()["key"]
    assert (await h.client.get("/api/v1/rules", headers=_headers(read_key))).status_code == 200
    revoked = await h.client.delete(f"/api/v1/keys/{read_id}", headers=auth)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    assert (await h.client.get("/api/v1/rules", headers=_headers(read_key))).status_code == 401
    missing = await h.client.delete("/api/v1/keys/key_nope", headers=auth)
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"role": "root"}, "role"),
        ({}, "role"),
        ({"role": "read", "brands": [True]}, "brands[0]"),
        ({"role": "read", "brands": [""]}, "brands[0]"),
        ({"role": "read", "brands": "b1"}, "brands"),
        ({"role": "read", "name": "x" * 201}, "name"),
        ({"role": "read", "key": "hlk_mine"}, "key"),
    ],
)
async def test_bad_key_input_is_422_naming_the_field(
    make_hookline: MakeHookline, body: dict[str, Any], field: str
) -> None:
    h = await make_hookline()
    resp = await h.client.post("/api/v1/keys", json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"] == field


async def test_a_key_body_is_read_as_strictly_as_every_other(
    make_hookline: MakeHookline,
) -> None:
    h = await make_hookline()
    misspelt = await h.client.post("/api/v1/keys", json={"role": "read", "brand": ["b1"]})
    assert misspelt.status_code == 422, misspelt.text
    assert misspelt.json()["field"] == "brand"
    assert "did you mean 'brands'?" in misspelt.json()["detail"]
    # Python's json would read it exactly and the key would name a brand no event can carry.
    huge = await h.client.post("/api/v1/keys", json={"role": "read", "brands": [2**70]})
    assert huge.status_code == 422, huge.text
    assert huge.json()["field"] == "brands[0]"
    assert await h.runtime.keys.list() == []


async def test_no_keys_on_loopback_runs_open_and_warns(
    make_hookline: MakeHookline, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hookline.auth")
    h = await make_hookline()
    assert (await h.client.get("/api/v1/rules")).status_code == 200
    (warning,) = [r for r in caplog.records if r.name == "hookline.auth"]
    assert warning.levelno == logging.WARNING
    message = warning.getMessage()
    reach = f"127.0.0.1:{h.runtime.settings.port}"
    assert f"no API keys: the API is open to anyone who can reach {reach}" in message
    assert "hookline keys create --role admin --data-dir" in message


async def test_auth_on_without_keys_refuses_everyone(make_hookline: MakeHookline) -> None:
    h = await make_hookline(auth="on")
    assert (await h.client.get("/api/v1/rules")).status_code == 401
    assert (await h.client.get("/healthz")).status_code == 200


async def test_auth_off_runs_open_even_with_keys(
    make_hookline: MakeHookline, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hookline.auth")
    h = await make_hookline(auth="off")
    await h.runtime.keys.create(Role.READ, (), "")
    assert (await h.client.post("/api/v1/rules", json={})).status_code == 422
    assert any("HOOKLINE_AUTH=off" in r.getMessage() for r in caplog.records)


async def test_auto_on_a_non_loopback_setting_without_keys_is_closed(
    make_hookline: MakeHookline,
) -> None:
    """Should the start-up check be skipped (an embedding), the app itself stays closed."""
    h = await make_hookline(host="0.0.0.0")
    assert (await h.client.get("/api/v1/rules")).status_code == 401


async def test_valid_keys_cost_no_database_read(make_hookline: MakeHookline) -> None:
    h = await make_hookline()
    ring = h.runtime.keys
    _, text = await ring.create(Role.INGEST, (), "")
    await ring.refresh(0)  # just loaded: the next refresh is seconds away
    store = h.runtime.store
    reads = 0
    real = store.list_keys

    async def counted(*, active_only: bool = False) -> list[ApiKey]:
        nonlocal reads
        reads += 1
        return await real(active_only=active_only)

    store.list_keys = counted  # type: ignore[method-assign]
    for i in range(20):
        resp = await h.post("/api/v1/events", spin_event(user=f"u{i}"), headers=_headers(text))
        assert resp.status_code == 202
    assert reads == 0


async def test_keys_never_appear_in_logs(
    make_hookline: MakeHookline, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    h = await make_hookline(log_level="debug")
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "hookline"):
        caplog.set_level(logging.DEBUG, logger=name)
    made = await h.client.post("/api/v1/keys", json={"role": "admin", "name": "root"})
    admin = made.json()["key"]
    auth = _headers(admin)
    ingest = (await h.client.post("/api/v1/keys", json={"role": "ingest"}, headers=auth)).json()
    wrong = "hlk_" + "W" * 43
    await h.post("/api/v1/events", spin_event(), headers=_headers(ingest["key"]))
    await h.client.get("/api/v1/rules", headers=_headers(ingest["key"]))  # 403
    await h.client.get("/api/v1/rules", headers=_headers(wrong))  # 401
    await h.client.get("/api/v1/keys", headers=auth)
    await h.client.delete(f"/api/v1/keys/{ingest['id']}", headers=auth)
    await h.post("/api/v1/events", spin_event(), headers=_headers(ingest["key"]))  # revoked
    await h.stop()
    assert any(r.name.startswith("hookline") for r in caplog.records)
    for record in caplog.records:
        text = record.getMessage() + repr(record.args) + (record.exc_text or "")
        for secret in (admin, ingest["key"], wrong):
            assert secret not in text, record.name
            assert secret[12:] not in text, record.name


async def test_healthz_lists_load_problems_only_to_a_key_of_every_brand(
    make_hookline: MakeHookline,
) -> None:
    """/healthz is public; a problem names another brand's rule, so only its count is."""
    from hookline.rules import Problem

    h = await make_hookline()
    problem = Problem("rule", "rule_b2", "rule 'b2-secret-campaign' is skipped")
    h.runtime.engine.index.problems["rule_b2"] = problem
    opened = (await h.client.get("/healthz")).json()  # no keys: open, shows everything
    assert opened["problem_count"] == 1 and opened["problems"][0]["id"] == "rule_b2"
    _, every = await h.runtime.keys.create(Role.READ, (), "")
    _, brand = await h.runtime.keys.create(Role.ADMIN, ("b1",), "")
    for headers, listed in (
        ({}, False),
        (_headers("hlk_not-a-key"), False),
        (_headers(brand), False),
        (_headers(every), True),
    ):
        resp = await h.client.get("/healthz", headers=headers)
        assert resp.status_code == 200, resp.text
        assert resp.json()["problem_count"] == 1
        assert ("b2-secret-campaign" in resp.text) is listed, headers


def _challenges(path: str) -> list[str]:
    """What a 401 offers: Bearer, and Basic too on the pages a browser opens."""
    bearer = 'Bearer realm="hookline"'
    if path in {"/docs", "/openapi.json"}:
        return [bearer, 'Basic realm="hookline", charset="UTF-8"']
    return [bearer]


async def test_a_key_may_come_as_basic_credentials_for_browsers_and_basic_only_tools(
    make_hookline: MakeHookline,
) -> None:
    h = await make_hookline()
    _, key = await h.runtime.keys.create(Role.READ, (), "docs")

    def basic(user: str, password: str) -> dict[str, str]:
        pair = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}

    for headers in (basic("anyone", key), basic(key, "")):
        assert (await h.client.get("/api/v1/rules", headers=headers)).status_code == 200
        assert (await h.client.get("/openapi.json", headers=headers)).status_code == 200
    refused = await h.client.get("/api/v1/rules", headers=basic("anyone", "hlk_" + "x" * 43))
    assert refused.status_code == 401
    assert refused.json()["detail"] == "the API key is not valid: unknown or revoked"
    garbled = await h.client.get("/api/v1/rules", headers={"Authorization": "Basic %%%"})
    assert garbled.status_code == 401
    assert garbled.json()["field"] == "Authorization"
    assert "base64" in garbled.json()["detail"]
    # A read key sent as Basic is a read key: writing stays forbidden.
    written = await h.client.post("/api/v1/rules", json={}, headers=basic("", key))
    assert written.status_code == 403


async def test_a_change_with_basic_credentials_from_another_sites_page_is_refused(
    make_hookline: MakeHookline,
) -> None:
    """A browser sends cached Basic credentials with another site's forms: forged requests."""
    h = await make_hookline()
    _, key = await h.runtime.keys.create(Role.ADMIN, (), "docs admin")
    basic = {"Authorization": "Basic " + base64.b64encode(f"me:{key}".encode()).decode()}
    own = h.base_url.removeprefix("http://")
    event = spin_event()
    for forged in (
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "http://evil.example"},
        {"Origin": f"http://{own}.evil.example"},
    ):
        resp = await h.client.post("/api/v1/events", json=event, headers=basic | forged)
        assert resp.status_code == 403, forged
        assert resp.json()["field"] == next(iter(forged))
        assert "Bearer" in resp.json()["detail"]
    for fine in (
        {},  # curl and other tools say nothing of where they come from
        {"Sec-Fetch-Site": "same-origin", "Origin": f"http://{own}"},
        {"Origin": f"http://{own}"},
    ):
        resp = await h.client.post("/api/v1/events", json=event, headers=basic | fine)
        assert resp.status_code == 202, (fine, resp.text)
    # Reads from anywhere stay allowed (another site cannot read the answer), and a Bearer
    # key is never sent by a browser on its own, so it is never asked where it comes from.
    cross = {"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"}
    assert (await h.client.get("/api/v1/rules", headers=basic | cross)).status_code == 200
    bearer = {"Authorization": f"Bearer {key}"} | cross
    assert (await h.client.post("/api/v1/events", json=event, headers=bearer)).status_code == 202


async def test_the_echo_service_never_records_a_hookline_key_a_browser_sends_by_itself(
    make_hookline: MakeHookline,
) -> None:
    """A browser given a key for the docs page sends it to every path of hookline: a link
    to another's echo secret would hand the key to whoever reads that public list."""
    h = await make_hookline()
    _, key = await h.runtime.keys.create(Role.ADMIN, (), "docs admin")
    pair = base64.b64encode(f"me:{key}".encode()).decode()
    sent = [
        {"Authorization": f"Basic {pair}"},
        {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()},
        {"Authorization": f"Bearer {key}"},
        {"Authorization": f"Basic {base64.b64encode(b'receiver:their-password').decode()}"},
    ]
    for headers in sent:
        resp = await h.client.get("/echo-send/someone-elses-secret/", headers=headers)
        assert resp.status_code == 200
    shown = await h.client.get("/echo-list/someone-elses-secret/")
    page = await h.client.get("/echo-list/someone-elses-secret/", headers={"Accept": "text/html"})
    for text in (shown.text, page.text):
        assert key not in text and key[12:] not in text and pair not in text
    recorded = [r["headers"]["authorization"] for r in reversed(shown.json()["requests"])]
    assert recorded[:3] == ["Basic ***", "Basic ***", "Bearer ***"]
    # Other credentials are shown as a receiver would get them: testing them is its use.
    assert recorded[3] == sent[3]["Authorization"]


async def test_an_origin_of_no_host_or_a_second_cross_site_header_is_never_same_origin(
    make_hookline: MakeHookline,
) -> None:
    """'Origin: null' (a sandboxed page, a redirect) matched a request without Host; and
    only the last of two Sec-Fetch-Site or Origin headers was looked at."""
    h = await make_hookline()
    _, key = await h.runtime.keys.create(Role.ADMIN, (), "docs admin")
    basic = ("Authorization", "Basic " + base64.b64encode(f"me:{key}".encode()).decode())
    own = h.base_url.removeprefix("http://")
    for doubled in (
        [("Sec-Fetch-Site", "cross-site"), ("Sec-Fetch-Site", "same-origin")],
        [("Origin", "http://evil.example"), ("Origin", f"http://{own}")],
    ):
        resp = await h.client.post("/api/v1/events", json=spin_event(), headers=[basic, *doubled])
        assert resp.status_code == 403, doubled
    host, port = own.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /api/v1/deliveries/dlv_0/retry HTTP/1.0\r\n"
        + f"{basic[0]}: {basic[1]}\r\nOrigin: null\r\nContent-Length: 0\r\n\r\n".encode()
    )
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 403 "), answer[:200]


async def test_basic_credentials_need_only_the_key_to_be_text(make_hookline: MakeHookline) -> None:
    """A user name a browser sends in Latin-1, or base64 without its padding, still works."""
    h = await make_hookline()
    _, key = await h.runtime.keys.create(Role.READ, (), "docs")
    for pair in ("José:".encode("latin-1") + key.encode(), f"{key}:".encode()):
        for token in (base64.b64encode(pair).decode(), base64.b64encode(pair).decode().rstrip("=")):
            resp = await h.client.get("/api/v1/rules", headers={"Authorization": f"Basic {token}"})
            assert resp.status_code == 200, (pair, token, resp.text)
    bad = base64.b64encode(b"user:\xff\xfe").decode()
    refused = await h.client.get("/api/v1/rules", headers={"Authorization": f"Basic {bad}"})
    assert refused.status_code == 401
    assert "UTF-8" in refused.json()["detail"]


async def test_an_open_hookline_refuses_changes_from_another_sites_page(
    hookline: Hookline,
) -> None:
    """No keys on loopback: a page of any site the developer visits could post to it."""
    event = spin_event()
    for forged in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "http://evil.example"}):
        resp = await hookline.post("/api/v1/events", event, headers=forged)
        assert resp.status_code == 403, forged
        assert resp.json()["code"] == "forbidden"
    own = hookline.base_url.removeprefix("http://")
    for fine in (
        {},
        {"Origin": f"http://{own}"},
        # Sec-Fetch-Site alone decides when sent: a proxy may have rewritten Host.
        {"Sec-Fetch-Site": "same-origin", "Origin": "https://hooks.example.com"},
    ):
        resp = await hookline.post("/api/v1/events", event, headers=fine)
        assert resp.status_code == 202, (fine, resp.text)
