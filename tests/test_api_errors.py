"""Bad input anywhere gets a 4xx JSON `{code, detail, field}` saying what to fix, never a 5xx."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import Hookline, example_rule, spin_event

MIB = 1024 * 1024
JSON_HEADERS = {"content-type": "application/json"}


def assert_error(
    resp: httpx.Response,
    status: int | None = None,
    *,
    field: str | None = None,
    code: str | None = None,
    says: str | None = None,
) -> dict[str, Any]:
    """A JSON error answer: 4xx (or exactly ``status``) with ``{code, detail, field}``."""
    if status is None:
        assert 400 <= resp.status_code < 500, f"{resp.status_code} {resp.text}"
    else:
        assert resp.status_code == status, f"{resp.status_code} {resp.text}"
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    body: dict[str, Any] = resp.json()
    assert set(body) == {"code", "detail", "field"}, body
    assert isinstance(body["code"], str) and body["code"], body
    assert isinstance(body["detail"], str) and body["detail"], body
    if field is not None:
        assert body["field"] == field, body
    if code is not None:
        assert body["code"] == code, body
    if says is not None:
        assert says in body["detail"], body
    return body


async def saved_webhook(h: Hookline, name: str = "crm") -> dict[str, Any]:
    resp = await h.post("/api/v1/webhooks", {"name": name, "url": "http://127.0.0.1:9/x"})
    assert resp.status_code == 201, resp.text
    result: dict[str, Any] = resp.json()
    return result


# --- malformed JSON -----------------------------------------------------------------------

MALFORMED = [b"{", b'{"event_type": "a",}', b"{'single': 1}", b"\xff\xfe{}", b"[1, 2", b"nul"]
ENDPOINTS = [
    ("POST", "/api/v1/events"),
    ("POST", "/api/v1/rules"),
    ("POST", "/api/v1/webhooks"),
    ("POST", "/api/v1/webhooks/preview"),
    ("PATCH", "/api/v1/users/x/state"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_malformed_json_is_400_malformed_json(
    hookline: Hookline, method: str, path: str
) -> None:
    for raw in MALFORMED:
        resp = await hookline.client.request(method, path, content=raw, headers=JSON_HEADERS)
        assert_error(resp, 400, code="malformed_json", says="JSON")


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_an_empty_body_is_400_missing_body_on_every_route(
    hookline: Hookline, method: str, path: str
) -> None:
    # The events and state routes read their body themselves; the README has one code for it.
    for raw in (b"", b" \n"):
        resp = await hookline.client.request(method, path, content=raw, headers=JSON_HEADERS)
        assert_error(resp, 400, code="missing_body", field="body", says="JSON body is required")


async def test_malformed_json_in_rule_replace_and_patch(hookline: Hookline) -> None:
    rule = await hookline.create_rule()
    for method in ("PUT", "PATCH"):
        resp = await hookline.client.request(
            method, f"/api/v1/rules/{rule['id']}", content=b"{", headers=JSON_HEADERS
        )
        assert_error(resp, 400, code="malformed_json")
    webhook = await saved_webhook(hookline)
    resp = await hookline.client.put(
        f"/api/v1/webhooks/{webhook['id']}", content=b"{", headers=JSON_HEADERS
    )
    assert_error(resp, 400, code="malformed_json")


async def _json_operations(h: Hookline) -> list[tuple[str, str]]:
    """Every operation whose OpenAPI request body is JSON, path parameters filled in."""
    spec = (await h.client.get("/openapi.json")).json()
    found = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if "application/json" in operation.get("requestBody", {}).get("content", {}):
                found.append((method.upper(), re.sub(r"\{[^}]+\}", "x", path)))
    return found


async def test_every_json_route_refuses_a_body_not_sent_as_json_asking_for_it(
    hookline: Hookline,
) -> None:
    operations = await _json_operations(hookline)
    assert ("POST", "/api/v1/rules") in operations and ("POST", "/api/v1/events") in operations
    document = json.dumps(example_rule()).encode()
    for method, path in operations:
        for content_type in (None, "application/x-www-form-urlencoded", "text/plain"):
            headers = {"content-type": content_type} if content_type else {}
            resp = await hookline.client.request(method, path, content=document, headers=headers)
            assert_error(
                resp,
                415,
                code="unsupported_media_type",
                field="Content-Type",
                says="send JSON with Content-Type: application/json",
            )


async def test_json_with_parameters_or_a_json_suffix_is_json(hookline: Hookline) -> None:
    for content_type in ("application/json; charset=utf-8", "Application/JSON", "x/y+json"):
        resp = await hookline.client.post(
            "/api/v1/events",
            content=json.dumps(spin_event()).encode(),
            headers={"content-type": content_type},
        )
        expected = 415 if content_type == "x/y+json" else 202
        assert resp.status_code == expected, (content_type, resp.text)
    resp = await hookline.client.post(
        "/api/v1/rules",
        content=json.dumps(example_rule()).encode(),
        headers={"content-type": "application/vnd.hookline+json"},
    )
    assert resp.status_code == 201, resp.text


@pytest.mark.parametrize(
    ("path", "document", "field", "meant"),
    [
        (
            "/api/v1/rules",
            example_rule(activity={"url": "http://127.0.0.1:9/x", "header": {"a": "b"}}),
            "activity.header",
            "headers",
        ),
        (
            "/api/v1/rules",
            {**example_rule(), "condition": {"all": []}},
            "condition",
            "conditions",
        ),
        ("/api/v1/rules/validate", {**example_rule(), "enable": False}, "enable", "enabled"),
        (
            "/api/v1/webhooks",
            {"name": "w", "url": "http://127.0.0.1:9/x", "retry_shedule": [1]},
            "retry_shedule",
            "retry_schedule",
        ),
        (
            "/api/v1/webhooks/preview",
            {"webhok": {"url": "http://127.0.0.1:9/x"}},
            "webhok",
            "webhook",
        ),
        ("/api/v1/events", {**spin_event(), "paylod": {}}, "paylod", "payload"),
    ],
)
async def test_a_misspelt_key_is_422_naming_it_and_the_key_meant(
    hookline: Hookline, path: str, document: dict[str, Any], field: str, meant: str
) -> None:
    resp = await hookline.post(path, document)
    assert_error(resp, 422, field=field, says=f"did you mean {meant!r}?")


async def test_an_unknown_key_like_no_other_lists_the_keys_allowed(hookline: Hookline) -> None:
    resp = await hookline.post("/api/v1/rules", {**example_rule(), "zzz": 1})
    assert_error(
        resp, 422, field="zzz", says="allowed keys: accumulate, activity, conditions, description"
    )


# --- the event envelope -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "field", "says"),
    [
        ({"event_type": 5, "user_ext_id": "u"}, "event_type", "event_type"),
        ({"event_type": "", "user_ext_id": "u"}, "event_type", "event_type"),
        ({"event_type": "has space", "user_ext_id": "u"}, "event_type", "event_type"),
        ({"user_ext_id": "u"}, "event_type", "required"),
        ({"event_type": "a", "user_ext_id": "u", "payload": [1, 2]}, "payload", "object"),
        ({"event_type": "a", "user_ext_id": "u", "payload": "x"}, "payload", "object"),
        ({"event_type": "a"}, "user_ext_id", "required"),
        ({"event_type": "a", "user_ext_id": ""}, "user_ext_id", None),
        ({"event_type": "a", "user_ext_id": {"id": 1}}, "user_ext_id", None),
        ({"event_type": "a", "user_ext_id": True}, "user_ext_id", None),
        ({"event_type": "a", "user_ext_id": "u", "paylod": {}}, "paylod", "payload"),
        ({"event_type": "a", "user_ext_id": "u", "event_date": "today"}, "event_date", None),
        ({"event_type": "a", "user_ext_id": "u", "event_date": -1}, "event_date", None),
        ({"event_type": "a", "user_ext_id": "u", "event_date": 1.5}, "event_date", None),
        ({"event_type": "a", "user_ext_id": "u", "ext_brand_id": [1]}, "ext_brand_id", None),
        ({"event_type": "a", "user_ext_id": "u", "eid": {"x": 1}}, "eid", None),
    ],
)
async def test_wrong_envelope_is_422_naming_the_field(
    hookline: Hookline, event: dict[str, Any], field: str, says: str | None
) -> None:
    resp = await hookline.post("/api/v1/events", event)
    assert_error(resp, 422, field=field, says=says)
    batch = await hookline.post("/api/v1/events", [spin_event(), event])
    assert_error(batch, 422, field=f"[1].{field}")


async def test_a_refused_batch_stores_nothing(hookline: Hookline) -> None:
    resp = await hookline.post("/api/v1/events", [spin_event(user="kept-out"), {"x": 1}])
    assert_error(resp, 422)
    assert_error(await hookline.client.get("/api/v1/users/kept-out/state"), 404)


@pytest.mark.parametrize("document", [[], 5, "event", None, True, [1], [[]]])
async def test_not_an_event_is_422(hookline: Hookline, document: Any) -> None:
    resp = await hookline.client.post(
        "/api/v1/events", content=json.dumps(document).encode(), headers=JSON_HEADERS
    )
    assert_error(resp, 422)


async def test_empty_array_says_so(hookline: Hookline) -> None:
    assert_error(await hookline.post("/api/v1/events", []), 422, field="body", says="empty")


async def test_more_than_1000_events_is_refused_and_1000_accepted(hookline: Hookline) -> None:
    event = {"event_type": "bulk", "user_ext_id": "u-bulk"}
    resp = await hookline.post("/api/v1/events", [event] * 1001)
    assert_error(resp, 422, field="body", says="1000")
    ok = await hookline.post("/api/v1/events", [event] * 1000)
    assert ok.status_code == 202, ok.text
    assert ok.json()["accepted"] == 1000


async def test_one_event_over_1_mib_in_a_request_under_5_mib(hookline: Hookline) -> None:
    big = spin_event(user="big")
    big["payload"]["blob"] = "x" * MIB
    small = spin_event(user="small")
    resp = await hookline.post("/api/v1/events", [small, big])
    assert_error(resp, 413, code="payload_too_large", field="[1]", says="larger than")
    single = await hookline.post("/api/v1/events", big)
    assert_error(single, 413, code="payload_too_large", field="body", says="larger than")
    # 2 MB, as the README says: 413, not 422.
    big["payload"]["blob"] = "x" * (2 * MIB)
    assert_error(await hookline.post("/api/v1/events", big), 413, code="payload_too_large")
    # Just under the limit is fine.
    fits = spin_event(user="fits")
    fits["payload"]["blob"] = "x" * (MIB - 200)
    assert (await hookline.post("/api/v1/events", [small, fits])).status_code == 202


async def test_request_over_5_mib_is_413(hookline: Hookline) -> None:
    """A plain client posting 5 MiB + 1 must read a 413, not a reset connection."""
    body = b"[" + b" " * (5 * MIB) + b"]"
    try:
        resp = await hookline.client.post("/api/v1/events", content=body, headers=JSON_HEADERS)
    except httpx.TransportError as exc:
        pytest.fail(f"the connection broke instead of a 413 answer: {exc!r}")
    assert_error(resp, 413, code="payload_too_large", field="body")


async def test_request_over_5_mib_streamed_is_413(hookline: Hookline) -> None:
    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while streaming
        yield b"["
        for _ in range(6):
            yield b" " * MIB
        yield b"]"

    resp = await hookline.client.post("/api/v1/events", content=chunks(), headers=JSON_HEADERS)
    assert_error(resp, 413, code="payload_too_large", field="body")


async def test_request_declared_over_5_mib_is_413_before_the_body(
    hookline: Hookline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The body never comes: the 413 goes out once the drain gives up on it (2 s by default).
    monkeypatch.setattr("hookline.api.limits.DRAIN_SECONDS", 0.1)
    port = int(hookline.base_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /api/v1/events HTTP/1.1\r\nhost: hookline\r\ncontent-type: application/json\r\n"
        b"content-length: 6000000\r\n\r\n"
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    await writer.wait_closed()
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), answer
    assert json.loads(payload)["code"] == "payload_too_large"


@pytest.mark.parametrize("seconds", [1_700_000_000, 0, 946_684_799_999])
async def test_event_date_in_seconds_is_422_asking_for_milliseconds(
    hookline: Hookline, seconds: int
) -> None:
    resp = await hookline.post("/api/v1/events", spin_event(event_date=seconds))
    assert_error(resp, 422, field="event_date", says="milliseconds")
    assert f"likely {seconds * 1000}" in resp.json()["detail"]
    batch = await hookline.post("/api/v1/events", [spin_event(), spin_event(event_date=seconds)])
    assert_error(batch, 422, field="[1].event_date", says="milliseconds")
    preview = await hookline.post(
        "/api/v1/webhooks/preview",
        {"webhook": {"url": "http://127.0.0.1:9/x"}, "event": {"event_date": seconds}},
    )
    assert_error(preview, 422, field="event.event_date", says="milliseconds")
    # The first millisecond of 2000 is a date.
    ok = await hookline.post("/api/v1/events", spin_event(event_date=946_684_800_000))
    assert ok.status_code == 202, ok.text


async def test_event_date_beyond_what_can_be_stored_is_422(hookline: Hookline) -> None:
    for when in (2**63, 2**64 - 1):
        resp = await hookline.post("/api/v1/events", spin_event(event_date=when))
        assert_error(resp, 422, field="event_date")
    ok = await hookline.post("/api/v1/events", spin_event(event_date=1_700_000_000_000))
    assert ok.status_code == 202, ok.text


async def test_state_patch_must_be_an_object(hookline: Hookline) -> None:
    for patch in ([1], "x", 5, None):
        resp = await hookline.client.patch(
            "/api/v1/users/u/state", content=json.dumps(patch).encode(), headers=JSON_HEADERS
        )
        assert_error(resp, 422, field="body", says="object")


async def test_state_patch_over_1_mib_is_413(hookline: Hookline) -> None:
    resp = await hookline.client.patch("/api/v1/users/u/state", json={"blob": "x" * MIB})
    assert_error(resp, 413, field="body")


# --- unknown ids --------------------------------------------------------------------------


async def test_unknown_ids_are_404(hookline: Hookline) -> None:
    rule = example_rule(name="other")
    webhook = {"name": "w", "url": "http://127.0.0.1:9/x"}
    cases: list[tuple[str, str, Any, str]] = [
        ("GET", "/api/v1/rules/rule_nope", None, "rule_id"),
        ("PUT", "/api/v1/rules/rule_nope", rule, "rule_id"),
        ("PATCH", "/api/v1/rules/rule_nope", {"enabled": False}, "rule_id"),
        ("DELETE", "/api/v1/rules/rule_nope", None, "rule_id"),
        ("GET", "/api/v1/webhooks/wh_nope", None, "webhook_id"),
        ("PUT", "/api/v1/webhooks/wh_nope", webhook, "webhook_id"),
        ("DELETE", "/api/v1/webhooks/wh_nope", None, "webhook_id"),
        ("GET", "/api/v1/deliveries/dlv_nope", None, "delivery_id"),
        ("POST", "/api/v1/deliveries/dlv_nope/retry", None, "delivery_id"),
        ("GET", "/api/v1/events/evt_nope", None, "event_id"),
        ("GET", "/api/v1/users/nobody/state", None, "user_ext_id"),
        ("POST", "/api/v1/webhooks/preview", {"webhook_id": "wh_nope"}, "webhook_id"),
    ]
    for method, path, body, field in cases:
        resp = await hookline.client.request(method, path, json=body)
        assert_error(
            resp, 404, field=field, code="not_found", says="nope" if "nope" in path else None
        )


async def test_unknown_route_and_method_are_json(hookline: Hookline) -> None:
    assert_error(await hookline.client.get("/api/v1/nothing-here"), 404)
    assert_error(await hookline.client.put("/api/v1/events", json={}), 405)


# --- rules and their templates ------------------------------------------------------------


async def test_body_template_not_json_around_its_tags_names_line_and_column(
    hookline: Hookline,
) -> None:
    body = '{\n  "a": "{{event.x}}",\n  "b": {{event.y}} "c": 1\n}'
    resp = await hookline.post("/api/v1/rules", example_rule(activity={"body": body}))
    detail = assert_error(resp, 422, field="activity.body")["detail"]
    match = re.search(r"line (\d+), column (\d+)", detail)
    assert match, detail
    assert match.group(1) == "3"
    for broken in ('{"a": {{event.x}', '{"a": "{{event.x}}"', '{"a": 1} trailing', "{{event.x"):
        resp = await hookline.post("/api/v1/rules", example_rule(activity={"body": broken}))
        assert_error(resp, 422, field="activity.body", says="line ")


async def test_unknown_tag_scope_is_refused(hookline: Hookline) -> None:
    body = '{"name": "{{user.x}}"}'
    resp = await hookline.post("/api/v1/rules", example_rule(activity={"body": body}))
    assert_error(resp, 422, field="activity.body", says="user")
    resp = await hookline.post("/api/v1/webhooks", {"name": "w", "url": "http://a/", "body": body})
    assert_error(resp, 422, field="body", says="user")
    url = "http://127.0.0.1:9/{{users.id}}"
    resp = await hookline.post("/api/v1/rules", example_rule(activity={"url": url}))
    assert_error(resp, 422, field="activity.url")


@pytest.mark.parametrize(
    ("leaf", "field", "says"),
    [
        ({"field": "event.x", "op": "bogus", "value": 1}, "conditions.all[0].op", "bogus"),
        ({"field": "event.x", "value": 1}, "conditions.all[0].op", None),
        (
            {"field": "event.x", "op": "regex", "value": "(unclosed"},
            "conditions.all[0].value",
            None,
        ),
        ({"field": "event.x", "op": "in", "value": 1}, "conditions.all[0].value", "list"),
        ({"field": "user.x", "op": "eq", "value": 1}, "conditions.all[0].field", None),
        ({"field": "event.x", "op": "eq"}, "conditions.all[0].value", "value"),
    ],
)
async def test_bad_condition_is_422_naming_it(
    hookline: Hookline, leaf: dict[str, Any], field: str, says: str | None
) -> None:
    conditions = {"all": [leaf]}
    resp = await hookline.post("/api/v1/rules", example_rule(conditions=conditions))
    assert_error(resp, 422, field=field, says=says)


async def test_a_regex_re2_cannot_run_in_linear_time_is_422(hookline: Hookline) -> None:
    for pattern, says in ((r"(a)\1", "backreferences"), (r"a(?=b)", "lookahead")):
        conditions = {"all": [{"field": "event.note", "op": "regex", "value": pattern}]}
        resp = await hookline.post("/api/v1/rules", example_rule(conditions=conditions))
        body = assert_error(resp, 422, field="conditions.all[0].value", says=says)
        assert "RE2 does not support" in body["detail"]
        assert "linear time" in body["detail"]


async def test_a_backtracking_pattern_does_not_stall_ingest(hookline: Hookline) -> None:
    conditions = {"all": [{"field": "event.note", "op": "regex", "value": "^(a+)+$"}]}
    await hookline.create_rule(conditions=conditions)
    notes = ["a" * 30 + "!"] * 3 + ["a" * 100_000 + "!", "a" * 30]
    events = [spin_event() for _ in notes]
    for event, note in zip(events, notes, strict=True):
        # Tens of seconds per event under a backtracking engine, beyond the test timeout here.
        event["payload"]["note"] = note
    resp = await hookline.post("/api/v1/events", events)
    assert resp.status_code == 202, resp.text
    matched = [len(e["deliveries"]) for e in resp.json()["events"]]
    assert matched == [0, 0, 0, 0, 1]


async def test_bad_condition_group_is_422(hookline: Hookline) -> None:
    for conditions, field in (
        ({"all": {"field": "event.x"}}, "conditions.all"),
        ({"all": [], "any": []}, "conditions"),
        ({"all": [5]}, "conditions.all[0]"),
    ):
        resp = await hookline.post("/api/v1/rules", example_rule(conditions=conditions))
        assert_error(resp, 422, field=field)


async def test_rule_referencing_a_missing_saved_webhook(hookline: Hookline) -> None:
    rule = example_rule()
    rule["activity"] = {"type": "webhook", "webhook_id": "wh_missing"}
    resp = await hookline.post("/api/v1/rules", rule)
    assert_error(resp, field="activity.webhook_id", says="wh_missing")


async def test_both_webhook_id_and_inline_url_is_refused(hookline: Hookline) -> None:
    webhook = await saved_webhook(hookline)
    resp = await hookline.post(
        "/api/v1/rules", example_rule(activity={"webhook_id": webhook["id"]})
    )
    assert_error(resp, 422, field="activity.webhook_id", says="not both")


async def test_activity_without_url_or_webhook_id(hookline: Hookline) -> None:
    rule = example_rule()
    rule["activity"] = {"type": "webhook", "body": "{}"}
    assert_error(await hookline.post("/api/v1/rules", rule), 422, field="activity.url")


async def test_get_webhook_with_a_body_is_refused(hookline: Hookline) -> None:
    resp = await hookline.post("/api/v1/rules", example_rule(activity={"method": "GET"}))
    assert_error(resp, 422, field="activity.body", says="query")
    resp = await hookline.post(
        "/api/v1/webhooks", {"name": "g", "url": "http://a/", "method": "GET", "body": "{}"}
    )
    assert_error(resp, 422, field="body", says="query")


@pytest.mark.parametrize("name", ["Content-Length", "content-type", "Host", "webhook-id"])
async def test_reserved_header_is_refused(hookline: Hookline, name: str) -> None:
    resp = await hookline.post("/api/v1/rules", example_rule(activity={"headers": {name: "5"}}))
    assert_error(resp, 422, field=f"activity.headers.{name}", says=name)


async def test_bad_header_name_and_value(hookline: Hookline) -> None:
    resp = await hookline.post("/api/v1/rules", example_rule(activity={"headers": {"X Bad": "1"}}))
    assert_error(resp, 422, field="activity.headers.X Bad")
    resp = await hookline.post(
        "/api/v1/rules", example_rule(activity={"headers": {"X-Ok": "a\r\nX-Injected: 1"}})
    )
    assert_error(resp, 422, field="activity.headers.X-Ok")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"enabled": "maybe"}, "enabled"),
        ({"name": 5}, "name"),
        ({"name": ""}, "name"),
        ({"trigger": {"event_type": "has space"}}, "trigger.event_type"),
        ({"trigger": {}}, "trigger.event_type"),
        ({"unknown_key": 1}, "unknown_key"),
        ({"conditions": "x"}, "conditions"),
    ],
)
async def test_rule_with_wrong_types_is_422_naming_the_field(
    hookline: Hookline, change: dict[str, Any], field: str
) -> None:
    resp = await hookline.post("/api/v1/rules", {**example_rule(), **change})
    assert_error(resp, 422, field=field)


@pytest.mark.parametrize(
    ("activity", "field"),
    [
        ({"method": "TRACE"}, "activity.method"),
        ({"timeout": 0}, "activity.timeout"),
        ({"timeout": 301}, "activity.timeout"),
        ({"content_type": "json please"}, "activity.content_type"),
        ({"url": "ftp://example.com/"}, "activity.url"),
        ({"url": "http://{{state.host}}/x"}, "activity.url"),
        ({"retry_schedule": []}, "activity.retry_schedule"),
        ({"retry_schedule": [-1]}, "activity.retry_schedule"),
        ({"headers": {"X-A": 5}}, "activity.headers.X-A"),
        ({"paylod": "{}"}, "activity.paylod"),
    ],
)
async def test_bad_activity_is_422_naming_the_field(
    hookline: Hookline, activity: dict[str, Any], field: str
) -> None:
    resp = await hookline.post("/api/v1/rules", example_rule(activity=activity))
    assert_error(resp, 422, field=field)


# JSON numbers only, as everywhere in hookline: pydantic's lax mode would read true as 1 s
# and "5" as 5 s, so a typo or a quoted number would be saved as a different webhook.
NOT_NUMBERS = [True, False, "5", "1.5"]


@pytest.mark.parametrize("value", NOT_NUMBERS)
async def test_a_timeout_that_is_not_a_json_number_is_refused_everywhere(
    hookline: Hookline, value: Any
) -> None:
    rule = example_rule(activity={"timeout": value})
    assert_error(await hookline.post("/api/v1/rules", rule), 422, field="activity.timeout")
    saved = {"name": "w", "url": "http://a/", "timeout": value}
    assert_error(await hookline.post("/api/v1/webhooks", saved), 422, field="timeout")
    preview = {"webhook": {"url": "http://a/", "timeout": value}}
    resp = await hookline.post("/api/v1/webhooks/preview", preview)
    assert_error(resp, 422, field="webhook.timeout")
    journey = {
        "name": "j",
        "entry": {"trigger": {"event_type": "a"}},
        "start": "w",
        "blocks": {"w": {"type": "webhook", "activity": {"url": "http://a/", "timeout": value}}},
    }
    resp = await hookline.post("/api/v1/journeys", journey)
    assert_error(resp, 422, field="blocks.w.activity.timeout", says="number of seconds")


@pytest.mark.parametrize("value", NOT_NUMBERS)
async def test_a_retry_delay_that_is_not_a_json_number_is_refused(
    hookline: Hookline, value: Any
) -> None:
    rule = example_rule(activity={"retry_schedule": [0, value]})
    resp = await hookline.post("/api/v1/rules", rule)
    assert_error(resp, 422, field="activity.retry_schedule[1]")
    saved = {"name": "w", "url": "http://a/", "retry_schedule": [value]}
    assert_error(await hookline.post("/api/v1/webhooks", saved), 422, field="retry_schedule[0]")


async def test_numbers_stay_numbers_and_other_lax_values_are_refused(hookline: Hookline) -> None:
    rule = example_rule(activity={"timeout": 5, "retry_schedule": [0, 1.5]})
    resp = await hookline.post("/api/v1/rules", rule)
    assert resp.status_code == 201, resp.text
    assert resp.json()["activity"]["timeout"] == 5
    assert resp.json()["activity"]["retry_schedule"] == [0, 1.5]
    for change, field in (
        ({"enabled": 1}, "enabled"),
        ({"enabled": "true"}, "enabled"),
        ({"frequency": {"max": True, "per": 60}}, "frequency.max"),
        ({"frequency": {"max": 1, "per": True}}, "frequency.per"),
        ({"accumulate": {"count": "3"}}, "accumulate.count"),
    ):
        resp = await hookline.post("/api/v1/rules", example_rule(name="other", **change))
        assert_error(resp, 422, field=field)
    preview = {"webhook": {"url": "http://a/"}, "event": {"event_date": "1700000000000"}}
    resp = await hookline.post("/api/v1/webhooks/preview", preview)
    assert_error(resp, 422, field="event.event_date")
    journey = {
        "name": "j",
        "entry": {"trigger": {"event_type": "a"}},
        "start": "w",
        "max_duration": True,
        "blocks": {"w": {"type": "webhook", "activity": {"url": "http://a/"}}},
    }
    assert_error(await hookline.post("/api/v1/journeys", journey), 422, field="max_duration")
    journey["max_duration"] = None
    journey["control_group"] = {"percent": "5"}
    resp = await hookline.post("/api/v1/journeys", journey)
    assert_error(resp, 422, field="control_group.percent")


async def test_rule_body_must_be_an_object(hookline: Hookline) -> None:
    for body in ([example_rule()], "rule", 5):
        resp = await hookline.client.post(
            "/api/v1/rules", content=json.dumps(body).encode(), headers=JSON_HEADERS
        )
        assert_error(resp, 422)


async def test_integers_beyond_64_bits_in_rules_and_webhooks_are_refused(
    hookline: Hookline,
) -> None:
    """JSON allows any integer; what hookline cannot store must be a 422, not a 500."""
    huge = 2**70
    conditions = {"all": [{"field": "event.n", "op": "eq", "value": huge}]}
    cases = [
        ("/api/v1/rules", example_rule(name="c", conditions=conditions)),
        ("/api/v1/rules", example_rule(name="b", activity={"body": {"n": huge}})),
        ("/api/v1/webhooks", {"name": "w", "url": "http://a/", "body": {"n": huge}}),
    ]
    for path, document in cases:
        resp = await hookline.client.post(
            path, content=json.dumps(document).encode(), headers=JSON_HEADERS
        )
        assert_error(resp, 422)


async def test_delivery_filters_out_of_range_are_4xx(hookline: Hookline) -> None:
    for params in ({"since": 10**20}, {"until": 2**63}, {"since": "yesterday"}, {"limit": 0}):
        resp = await hookline.client.get("/api/v1/deliveries", params=params)
        assert_error(resp, 422, field=next(iter(params)))
    resp = await hookline.client.get("/api/v1/deliveries", params={"status": "lost"})
    assert_error(resp, 422, field="status", says="pending")


# --- conflicts ----------------------------------------------------------------------------


async def test_deleting_a_saved_webhook_in_use_is_409(hookline: Hookline) -> None:
    webhook = await saved_webhook(hookline)
    rule = example_rule(name="uses-it")
    rule["activity"] = {"type": "webhook", "webhook_id": webhook["id"]}
    created = await hookline.post("/api/v1/rules", rule)
    assert created.status_code == 201, created.text
    resp = await hookline.client.delete(f"/api/v1/webhooks/{webhook['id']}")
    assert_error(resp, 409, code="conflict", says="uses-it")
    assert (await hookline.client.get(f"/api/v1/webhooks/{webhook['id']}")).status_code == 200
    assert (
        await hookline.client.delete(f"/api/v1/rules/{created.json()['id']}")
    ).status_code == 204
    assert (await hookline.client.delete(f"/api/v1/webhooks/{webhook['id']}")).status_code == 204


async def test_duplicate_names_are_409(hookline: Hookline) -> None:
    await hookline.create_rule(name="first")
    second = await hookline.create_rule(name="second")
    resp = await hookline.post("/api/v1/rules", example_rule(name="first"))
    assert_error(resp, 409, field="name", says="first")
    resp = await hookline.client.patch(f"/api/v1/rules/{second['id']}", json={"name": "first"})
    assert_error(resp, 409, field="name", says="first")
    resp = await hookline.client.put(
        f"/api/v1/rules/{second['id']}", json=example_rule(name="first")
    )
    assert_error(resp, 409, field="name", says="first")
    await saved_webhook(hookline, "crm")
    resp = await hookline.post("/api/v1/webhooks", {"name": "crm", "url": "http://a/"})
    assert_error(resp, 409, field="name", says="crm")
    listed = (await hookline.client.get("/api/v1/rules")).json()["data"]
    assert sorted(r["name"] for r in listed) == ["first", "second"]


# --- nothing random is a 5xx --------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
_json_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_envelopes = st.fixed_dictionaries(
    {},
    optional={
        "eid": st.one_of(st.text(max_size=10), st.integers(), _json_values),
        "event_type": st.one_of(
            st.sampled_from(["minigame_spin_issued", "update_profile", "a.b:c-d"]), _json_values
        ),
        "user_ext_id": st.one_of(st.text(max_size=300), st.integers(), _json_values),
        "event_date": st.one_of(st.integers(), _json_values),
        "ext_brand_id": st.one_of(st.text(max_size=10), st.integers(), _json_values),
        "payload": st.one_of(st.dictionaries(st.text(max_size=8), _json_values), _json_values),
        "paylod": _json_values,
    },
)
# Integers at the edges of what JSON parsers and SQLite hold.
_edge_ints = st.sampled_from([0, -1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, -(2**63)])
_ints = st.integers() | _edge_ints
# Nearly valid events reach the engine and the store, where other bugs hide.
_nearly_valid = st.fixed_dictionaries(
    {
        "event_type": st.sampled_from(["minigame_spin_issued", "update_profile", "x"]),
        "user_ext_id": st.one_of(st.text(min_size=1, max_size=20), _ints),
    },
    optional={
        "eid": st.one_of(st.text(min_size=1, max_size=10), _ints),
        "event_date": _ints,
        "ext_brand_id": st.one_of(st.text(max_size=10), _ints),
        "payload": st.dictionaries(st.text(max_size=8), _json_values, max_size=5),
    },
)
_documents = st.one_of(
    _nearly_valid,
    st.lists(_nearly_valid, min_size=1, max_size=4),
    _envelopes,
    st.lists(_envelopes | _nearly_valid, max_size=4),
    _json_values,
)
_bodies = st.one_of(
    _documents.map(lambda doc: json.dumps(doc).encode()),
    _documents.map(lambda doc: json.dumps(doc, ensure_ascii=False).encode()[:-1]),
    st.binary(max_size=200),
)


# Hypothesis runs in a worker thread here, where a garbage collection at the wrong moment
# makes it warn about its own PRNG (register_random); that says nothing about hookline.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
async def test_random_documents_and_bytes_never_get_a_5xx(hookline: Hookline) -> None:
    """Hypothesis drives a sync client in a thread while the loop serves hookline.

    Failures are collected, not raised: examples share one server (an ``eid`` accepted by one
    example makes a later one a duplicate), so Hypothesis's replay-and-shrink would be flaky.
    """
    statuses: list[int] = []
    failures: list[tuple[bytes, int, str]] = []

    @settings(
        max_examples=50,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(body=_bodies)
    def post_anything(body: bytes) -> None:
        with httpx.Client(base_url=hookline.base_url, timeout=30) as client:
            resp = client.post("/api/v1/events", content=body, headers=JSON_HEADERS)
        statuses.append(resp.status_code)
        if resp.status_code >= 500 or resp.headers.get("content-type") != "application/json":
            failures.append((body[:300], resp.status_code, resp.text[:300]))
        elif resp.status_code != 202:
            assert_error(resp)

    await asyncio.to_thread(post_anything)
    assert not failures, f"{len(failures)} of {len(statuses)} got a 5xx, e.g. {failures[:3]}"
    assert any(400 <= s < 500 for s in statuses)
    assert 202 in statuses
