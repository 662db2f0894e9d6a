"""The echo service over real HTTP: record any request, list the last 100, per secret."""

from __future__ import annotations

import types
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import httpx
import pytest

from tests.helpers import Hookline, spin_event

MakeHookline = Callable[..., Coroutine[Any, Any, Hookline]]

MIB = 1024 * 1024
RECORD_KEYS = {"id", "received_at", "method", "path", "query", "headers", "body", "json"}
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def assert_error(resp: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    """A JSON error ``{code, detail, field}`` with this status (and field, when given)."""
    assert resp.status_code == status, f"{resp.status_code} {resp.text}"
    assert resp.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = resp.json()
    assert set(body) == {"code", "detail", "field"}, body
    assert isinstance(body["code"], str) and body["code"]
    assert isinstance(body["detail"], str) and body["detail"]
    if field is not None:
        assert body["field"] == field, body
    return body


async def listed(h: Hookline, secret: str) -> list[dict[str, Any]]:
    resp = await h.client.get(f"/echo-list/{secret}/")
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()
    assert data["secret"] == secret
    requests: list[dict[str, Any]] = data["requests"]
    return requests


async def test_any_method_is_recorded_and_acknowledged(hookline: Hookline) -> None:
    secret = "methods-1"
    acks = []
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        content = None if method == "GET" else f'{{"via": "{method}"}}'.encode()
        resp = await hookline.client.request(method, f"/echo-send/{secret}/", content=content)
        assert resp.status_code == 200, (method, resp.text)
        ack = resp.json()
        assert ack["ok"] is True
        assert ack["secret"] == secret
        assert ack["id"].startswith("echo_")
        assert len(resp.content) < 200  # a small ack, not an echo of the body
        acks.append(ack["id"])
    requests = await listed(hookline, secret)
    assert [r["method"] for r in requests] == ["DELETE", "PATCH", "PUT", "POST", "GET"]
    assert [r["id"] for r in requests] == acks[::-1]
    for r in requests:
        assert set(r) >= RECORD_KEYS
        assert r["path"] == f"/echo-send/{secret}/"
    assert requests[0]["json"] == {"via": "DELETE"}
    get = requests[-1]
    assert get["body"] == ""
    assert get["json"] is None
    assert get["json_error"]


async def test_record_keeps_query_headers_raw_body_and_parsed_json(hookline: Hookline) -> None:
    secret = "fields-01"
    raw = '{"name": "Zoë \\"Z\\"", "n": 5, "nested": {"ok": true}}'
    resp = await hookline.client.post(
        f"/echo-send/{secret}/?a=1&b=x%20y",
        content=raw.encode(),
        headers={"content-type": "application/json", "X-Trace": "t-1"},
    )
    assert resp.status_code == 200
    await hookline.client.post(f"/echo-send/{secret}/", content=b"not json {")
    broken, good = await listed(hookline, secret)
    assert good["method"] == "POST"
    assert good["path"] == f"/echo-send/{secret}/"
    assert good["query"] == "a=1&b=x%20y"
    assert good["headers"]["x-trace"] == "t-1"
    assert good["headers"]["content-type"] == "application/json"
    assert good["body"] == raw
    assert good["json"] == {"name": 'Zoë "Z"', "n": 5, "nested": {"ok": True}}
    assert good.get("json_error") is None
    assert isinstance(good["received_at"], int)
    assert broken["body"] == "not json {"
    assert broken["json"] is None
    assert isinstance(broken["json_error"], str) and broken["json_error"]
    assert broken["received_at"] >= good["received_at"]


@pytest.mark.parametrize("status", [201, 404, 503])
async def test_status_parameter_sets_the_answer_and_is_still_recorded(
    hookline: Hookline, status: int
) -> None:
    secret = f"status-{status}"
    resp = await hookline.client.post(f"/echo-send/{secret}/?status={status}", json={"x": 1})
    assert resp.status_code == status
    assert resp.json()["id"].startswith("echo_")
    (record,) = await listed(hookline, secret)
    assert record["query"] == f"status={status}"
    assert record["json"] == {"x": 1}


@pytest.mark.parametrize("status", ["abc", "99", "600", "-1", "2e2", ""])
async def test_invalid_status_is_a_json_4xx(hookline: Hookline, status: str) -> None:
    resp = await hookline.client.post(f"/echo-send/status-bad/?status={status}", json={})
    assert 400 <= resp.status_code < 500, resp.text
    body = assert_error(resp, resp.status_code, field="status")
    assert "status" in body["detail"]


async def test_exactly_the_last_100_are_kept_newest_first(hookline: Hookline) -> None:
    secret = "keep-100"
    for n in range(105):
        resp = await hookline.client.post(f"/echo-send/{secret}/", json={"n": n})
        assert resp.status_code == 200
    requests = await listed(hookline, secret)
    assert len(requests) == 100
    assert [r["json"]["n"] for r in requests] == list(range(104, 4, -1))
    times = [r["received_at"] for r in requests]
    assert times == sorted(times, reverse=True)


async def test_requests_in_the_same_millisecond_keep_their_order(
    make_hookline: MakeHookline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst (one event, several rules, one echo secret) often lands within 1 ms."""
    h = await make_hookline(echo_keep=5)
    frozen = types.SimpleNamespace(time=lambda: 1_800_000_000.123)
    monkeypatch.setattr("hookline.ids.time", frozen)
    secret = "same-millisecond"
    for n in range(12):
        assert (await h.client.post(f"/echo-send/{secret}/", json={"n": n})).status_code == 200
    requests = await listed(h, secret)
    assert [r["json"]["n"] for r in requests] == [11, 10, 9, 8, 7]


async def test_browser_gets_a_page_with_escaped_pretty_json(hookline: Hookline) -> None:
    secret = "browser-1"
    await hookline.client.post(
        f"/echo-send/{secret}/",
        json={"msg": "<script>alert(1)</script>", "n": 1},
        headers={"X-Evil": "<b>bold</b>"},
    )
    await hookline.client.post(f"/echo-send/{secret}/", content=b"<script>alert(2)</script>")
    resp = await hookline.client.get(f"/echo-list/{secret}/", headers={"accept": BROWSER_ACCEPT})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    page = resp.text
    assert "<script>alert" not in page
    assert "<b>bold" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page
    # Pretty-printed: one member per line, indented.
    assert "\n  &quot;n&quot;: 1" in page
    assert page.index("alert(2)") < page.index("alert(1)")  # newest first
    # An API client still gets JSON.
    api = await hookline.client.get(f"/echo-list/{secret}/", headers={"accept": "*/*"})
    assert api.headers["content-type"].startswith("application/json")


async def test_browser_page_for_an_empty_secret(hookline: Hookline) -> None:
    resp = await hookline.client.get("/echo-list/nothing-yet/", headers={"accept": BROWSER_ACCEPT})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    assert "/echo-send/nothing-yet/" in resp.text


async def test_delete_clears_only_that_secret(hookline: Hookline) -> None:
    for secret in ("clear-me-1", "keep-me-1"):
        for n in range(3):
            await hookline.client.post(f"/echo-send/{secret}/", json={"n": n})
    resp = await hookline.client.delete("/echo-list/clear-me-1/")
    assert resp.status_code == 200
    assert resp.json()["deleted"] == 3
    assert await listed(hookline, "clear-me-1") == []
    assert len(await listed(hookline, "keep-me-1")) == 3
    await hookline.client.post("/echo-send/clear-me-1/", json={"n": "after"})
    (after,) = await listed(hookline, "clear-me-1")
    assert after["json"] == {"n": "after"}


async def test_requests_are_kept_across_restarts(make_hookline: MakeHookline) -> None:
    first = await make_hookline()
    await first.client.post("/echo-send/restart-1/?k=v", json={"before": "restart"})
    before = await listed(first, "restart-1")
    await first.stop()
    second = await make_hookline()
    after = await listed(second, "restart-1")
    assert after == before
    assert after[0]["json"] == {"before": "restart"}
    assert after[0]["query"] == "k=v"


async def test_one_secret_never_sees_another(hookline: Hookline) -> None:
    await hookline.client.post("/echo-send/secret-aaa/", json={"for": "a"})
    await hookline.client.post("/echo-send/secret-bbb/", json={"for": "b"})
    await hookline.client.post("/echo-send/secret-aaa-longer/", json={"for": "a-longer"})
    assert [r["json"] for r in await listed(hookline, "secret-aaa")] == [{"for": "a"}]
    assert [r["json"] for r in await listed(hookline, "secret-bbb")] == [{"for": "b"}]
    assert await listed(hookline, "secret-ccc") == []
    assert await listed(hookline, "SECRET-AAA") == []  # secrets are case-sensitive


@pytest.mark.parametrize("secret", ["a" * 8, "a" * 128, "Az09_-xY", "-_-_-_-_"])
async def test_valid_secrets_are_accepted(hookline: Hookline, secret: str) -> None:
    assert (await hookline.client.post(f"/echo-send/{secret}/", json={})).status_code == 200
    assert len(await listed(hookline, secret)) == 1
    assert (await hookline.client.delete(f"/echo-list/{secret}/")).status_code == 200


INVALID_SECRETS = ["short", "a" * 7, "a" * 129, "has.dots.in.it", "with%20space", "%C3%BCnicode"]


async def test_invalid_secret_is_400_json(hookline: Hookline) -> None:
    """The issue says 400 for a bad secret, for sending, listing and clearing alike."""
    for secret in INVALID_SECRETS:
        for method, path in (
            ("POST", f"/echo-send/{secret}/"),
            ("GET", f"/echo-send/{secret}/"),
            ("GET", f"/echo-list/{secret}/"),
            ("DELETE", f"/echo-list/{secret}/"),
        ):
            resp = await hookline.client.request(method, path)
            body = assert_error(resp, 400, field="secret")
            assert "8-128" in body["detail"]


async def test_invalid_secret_is_a_json_4xx_naming_the_secret(hookline: Hookline) -> None:
    """Whatever the exact status, it is a 4xx JSON error that says what to fix."""
    for secret in INVALID_SECRETS:
        resp = await hookline.client.post(f"/echo-send/{secret}/", json={})
        assert 400 <= resp.status_code < 500, resp.text
        assert_error(resp, resp.status_code, field="secret")


async def test_invalid_secret_is_not_recorded(hookline: Hookline) -> None:
    resp = await hookline.client.post("/echo-send/short/", json={"x": 1})
    assert 400 <= resp.status_code < 500
    assert await hookline.runtime.echo.list("short") == []


async def test_body_over_1_mib_is_413_and_not_recorded(hookline: Hookline) -> None:
    secret = "big-bodies"
    ok = await hookline.client.post(f"/echo-send/{secret}/", content=b"x" * MIB)
    assert ok.status_code == 200
    too_big = await hookline.client.post(f"/echo-send/{secret}/", content=b"y" * (MIB + 1))
    assert_error(too_big, 413, field="body")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: caught while streaming
        for _ in range(3):
            yield b"z" * (MIB // 2)

    streamed = await hookline.client.post(f"/echo-send/{secret}/", content=chunks())
    assert_error(streamed, 413, field="body")
    (only,) = await listed(hookline, secret)
    assert only["id"] == ok.json()["id"]
    assert len(only["body"]) == MIB


async def test_rule_pointing_at_echo_shows_the_rendered_body(hookline: Hookline) -> None:
    secret = "rule-echo-1"
    body = '{"level": "{{state.ach_level_name}}", "spins": {{event.minigame_spins_count}}}'
    await hookline.create_rule(
        activity={"url": hookline.base_url + f"/echo-send/{secret}/", "body": body}
    )
    nasty = 'Lvl "5" \\ <script>'
    await hookline.client.patch(
        "/api/v1/users/u-1/state?ext_brand_id=brand-1", json={"ach_level_name": nasty}
    )
    resp = await hookline.post("/api/v1/events", spin_event())
    assert resp.status_code == 202, resp.text
    (delivery_id,) = resp.json()["events"][0]["deliveries"]
    await hookline.idle()
    (record,) = await listed(hookline, secret)
    assert record["method"] == "POST"
    assert record["json"] == {"level": nasty, "spins": 3}
    assert record["headers"]["webhook-id"] == delivery_id
    assert record["headers"]["content-type"] == "application/json"
    assert record["headers"]["x-api-key"] == "k-123"
    assert record["headers"]["user-agent"].startswith("hookline/")


async def test_echo_status_503_drives_retries_with_one_webhook_id(hookline: Hookline) -> None:
    secret = "rule-echo-503"
    await hookline.create_rule(
        activity={"url": hookline.base_url + f"/echo-send/{secret}/?status=503"}
    )
    resp = await hookline.post("/api/v1/events", spin_event())
    (delivery_id,) = resp.json()["events"][0]["deliveries"]
    detail: dict[str, Any] = {}
    for _ in range(500):
        await hookline.idle()
        detail = (await hookline.client.get(f"/api/v1/deliveries/{delivery_id}")).json()
        if detail["status"] == "dead":
            break
    assert detail["status"] == "dead"
    assert [a["status_code"] for a in detail["attempt_log"]] == [503, 503, 503]
    records = await listed(hookline, secret)
    assert len(records) == 3
    assert {r["headers"]["webhook-id"] for r in records} == {delivery_id}
