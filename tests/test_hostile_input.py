"""Hostile JSON at the edge: refused with a 422 naming the field, never stored, never a 5xx.

Non-finite numbers, integers beyond 64 bits, lone surrogates and deep nesting are all valid by
JSON's grammar, and each used to get in somewhere (a NaN retry schedule saved, a huge integer
silently turned into a float, a lone surrogate in preview data answered with a 500).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute
from typer.testing import CliRunner, Result

from hookline.api import create_app
from hookline.api._json import JSONRoute, parse_json
from hookline.cli import app as cli_app
from hookline.conditions import compile_conditions
from hookline.deliveries import parse_retry_after
from hookline.errors import ConditionError, ConfigError, InvalidInput
from hookline.settings import Settings
from hookline.values import MAX_DEPTH, check_depth, check_json
from hookline.webhooks import WebhookSpec, compile_webhook
from tests.helpers import Hookline, Receiver, example_rule, spin_event
from tests.test_api_errors import JSON_HEADERS, assert_error, saved_webhook

NAN, INF = float("nan"), float("inf")
HOOK = {"url": "http://127.0.0.1:9/x", "body": '{"n": {{event.n}}}'}


async def send(h: Hookline, method: str, path: str, document: Any) -> httpx.Response:
    """Send ``document`` as Python's json writes it: NaN, Infinity, any integer, \\ud800."""
    body = json.dumps(document).encode()
    return await h.client.request(method, path, content=body, headers=JSON_HEADERS)


def nested(levels: int, leaf: Any = 1) -> Any:
    """``levels`` objects and arrays, alternating, around ``leaf``."""
    value = leaf
    for i in range(levels):
        value = {"a": value} if i % 2 else [value]
    return value


async def write_cases(h: Hookline) -> tuple[str, str]:
    rule = await h.create_rule(name="base")
    webhook = await saved_webhook(h)
    return rule["id"], webhook["id"]


# --- NaN and Infinity ---------------------------------------------------------------------


async def test_non_finite_numbers_are_422_naming_the_field_at_every_write(h: Hookline) -> None:
    rule_id, webhook_id = await write_cases(h)
    cases: list[tuple[str, str, Any, str]] = [
        (
            "POST",
            "/api/v1/rules",
            example_rule(name="n1", activity={"retry_schedule": [NAN]}),
            "activity.retry_schedule[0]",
        ),
        (
            "POST",
            "/api/v1/rules",
            example_rule(
                name="n2", conditions={"all": [{"field": "event.n", "op": "lt", "value": INF}]}
            ),
            "conditions.all[0].value",
        ),
        (
            "PUT",
            f"/api/v1/rules/{rule_id}",
            example_rule(name="n3", activity={"timeout": -INF}),
            "activity.timeout",
        ),
        (
            "PATCH",
            f"/api/v1/rules/{rule_id}",
            {"conditions": {"field": "event.n", "op": "eq", "value": NAN}},
            "conditions.value",
        ),
        ("POST", "/api/v1/webhooks", {"name": "w2", **HOOK, "body": {"n": NAN}}, "body.n"),
        (
            "PUT",
            f"/api/v1/webhooks/{webhook_id}",
            {"name": "w3", **HOOK, "retry_schedule": [0, INF]},
            "retry_schedule[1]",
        ),
        ("POST", "/api/v1/webhooks/preview", {"webhook": HOOK, "state": {"x": NAN}}, "state.x"),
        (
            "POST",
            "/api/v1/webhooks/test",
            {"webhook": HOOK, "event": {"payload": {"n": INF}}},
            "event.payload.n",
        ),
        ("POST", "/api/v1/events", spin_event(payload={"n": NAN}), "payload.n"),
        (
            "POST",
            "/api/v1/events",
            [spin_event(user="nan-0"), spin_event(payload={"n": -INF})],
            "[1].payload.n",
        ),
        ("PATCH", "/api/v1/users/u-nan/state", {"score": INF}, "score"),
    ]
    for method, path, document, field in cases:
        assert_error(await send(h, method, path, document), 422, field=field, says="NaN")
    # 1e400 is a JSON number too large for a double: read as Infinity, refused the same way.
    resp = await h.client.post(
        "/api/v1/events",
        content=b'{"event_type": "x", "user_ext_id": "u", "payload": {"big": 1e400}}',
        headers=JSON_HEADERS,
    )
    assert_error(resp, 422, field="payload.big", says="NaN")
    # Nothing of it was stored.
    rules = (await h.client.get("/api/v1/rules")).json()["data"]
    assert [r["name"] for r in rules] == ["base"]
    assert rules[0]["activity"]["retry_schedule"] is None
    assert rules[0]["activity"]["timeout"] is None
    for user in ("u-nan", "nan-0"):
        assert_error(await h.client.get(f"/api/v1/users/{user}/state"), 404)


async def test_infinity_in_a_condition_is_refused_not_saved_as_null(h: Hookline) -> None:
    leaf = {"field": "event.minigame_spins_count", "op": "lt", "value": INF}
    resp = await send(h, "POST", "/api/v1/rules", example_rule(conditions=leaf))
    assert_error(resp, 422, field="conditions.value")
    assert (await h.client.get("/api/v1/rules")).json()["data"] == []


def test_the_domain_refuses_non_finite_numbers_from_any_source() -> None:
    """Stored rows and code reach the compilers without the API's parser."""
    for value in (NAN, INF, [1, -INF]):
        with pytest.raises(ConditionError) as caught:
            compile_conditions({"field": "event.x", "op": "eq", "value": value})
        assert caught.value.field == "conditions.value"
    for spec in (
        WebhookSpec(url="http://127.0.0.1:9/x", retry_schedule=(0, NAN)),
        WebhookSpec(url="http://127.0.0.1:9/x", retry_schedule=(0, None)),  # type: ignore[arg-type]
        WebhookSpec(url="http://127.0.0.1:9/x", timeout=NAN),
        WebhookSpec(url="http://127.0.0.1:9/x", timeout="15"),  # type: ignore[arg-type]
    ):
        with pytest.raises(InvalidInput):
            compile_webhook(spec)


@pytest.mark.parametrize(
    "activity", [{"retry_schedule": ["NaN"]}, {"retry_schedule": [0, "inf"]}, {"timeout": "nan"}]
)
async def test_nan_spelled_as_a_string_is_not_a_number(
    h: Hookline, activity: dict[str, Any]
) -> None:
    resp = await send(h, "POST", "/api/v1/rules", example_rule(activity=activity))
    body = assert_error(resp, 422)
    assert body["field"].startswith("activity."), body


@pytest.mark.parametrize(
    "env",
    [
        {"HOOKLINE_RETRY_SCHEDULE": "nan"},
        {"HOOKLINE_RETRY_SCHEDULE": "0,NaN,5"},
        {"HOOKLINE_RETRY_SCHEDULE": "0,inf"},
        {"HOOKLINE_RETRY_SCHEDULE": "1e400"},
        {"HOOKLINE_DEFAULT_TIMEOUT": "nan"},
        {"HOOKLINE_DEFAULT_TIMEOUT": "inf"},
    ],
)
def test_non_finite_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert info.value.field == next(iter(env))


def test_non_finite_settings_given_in_code_are_refused() -> None:
    with pytest.raises(ConfigError):
        Settings.from_env({}, default_timeout=NAN)
    with pytest.raises(ConfigError):
        Settings.from_env({}, retry_schedule=(0.0, NAN))


@pytest.mark.parametrize(
    ("yaml_value", "says"),
    [(".nan", "NaN"), (".inf", "NaN"), ("-.inf", "NaN"), (str(2**70), "64 bits")],
)
async def test_rules_apply_refuses_yaml_numbers_json_has_not(
    h: Hookline, tmp_path: Path, yaml_value: str, says: str
) -> None:
    """YAML reads .nan and .inf; encoded as JSON they would silently become null."""
    rule = example_rule(conditions={"field": "event.minigame_spins_count", "op": "lt", "value": 0})
    text = yaml.safe_dump({"rules": [rule]}).replace("value: 0", f"value: {yaml_value}")
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    result = await apply_rules(h, path)
    assert result.exit_code == 2, result.output
    assert "rules[0].conditions.value" in result.output
    assert says in result.output
    assert (await h.client.get("/api/v1/rules")).json()["data"] == []


async def test_rules_apply_refuses_yaml_that_is_not_json(h: Hookline, tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("- name: r\n  description: 2024-01-01\n")
    result = await apply_rules(h, path)
    assert result.exit_code == 2, result.output
    assert "[0].description" in result.output
    assert "date is not a JSON value" in result.output


async def apply_rules(h: Hookline, path: Path) -> Result:
    """``hookline rules apply`` in a thread: it blocks on the server this loop serves."""
    args = ["rules", "apply", "-f", str(path), "--url", h.base_url]
    return await asyncio.to_thread(CliRunner().invoke, cli_app, args)


# --- nesting ------------------------------------------------------------------------------


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 300, 3000])
async def test_one_event_nested_too_deep_refuses_its_batch_naming_it(
    h: Hookline, levels: int
) -> None:
    """300 levels used to fail in storage with a 503; 3000 was a 400 'malformed'."""
    events = [orjson.dumps(spin_event(user=f"deep-{i}")) for i in range(5)]
    # Written by hand: Python's json cannot write 3000 levels.
    tree = b"[" * levels + b"]" * levels
    events[3] = events[3].replace(b'"payload":{', b'"payload":{"tree":' + tree + b",")
    for body, field in ((b"[" + b",".join(events) + b"]", "[3].payload"), (events[3], "payload")):
        resp = await h.client.post("/api/v1/events", content=body, headers=JSON_HEADERS)
        assert_error(resp, 422, field=field, says=str(MAX_DEPTH))
    for i in range(5):  # none of the batch was stored
        assert_error(await h.client.get(f"/api/v1/users/deep-{i}/state"), 404)
    # The member named may be a key no answer could hold as it is.
    resp = await h.client.patch(
        "/api/v1/users/deep/state", content=b'{"\\ud800": ' + tree + b"}", headers=JSON_HEADERS
    )
    assert_error(resp, 422)


async def test_nesting_up_to_the_limit_is_kept_exactly(h: Hookline) -> None:
    payload = nested(MAX_DEPTH - 1)  # inside the payload object: 64 levels in all
    event = {"event_type": "update_profile", "user_ext_id": "deep-ok", "payload": {"t": payload}}
    resp = await send(h, "POST", "/api/v1/events", event)
    assert resp.status_code == 202, resp.text
    state = (await h.client.get("/api/v1/users/deep-ok/state")).json()
    assert state["t"] == payload


async def test_free_form_json_nested_too_deep_is_422_everywhere(h: Hookline) -> None:
    rule_id, webhook_id = await write_cases(h)
    deep = nested(MAX_DEPTH)  # one level more than allowed once inside its field
    cases: list[tuple[str, str, Any, str]] = [
        (
            "POST",
            "/api/v1/events",
            {"event_type": "update_profile", "user_ext_id": "u", "payload": {"x": deep}},
            "payload",
        ),
        ("PATCH", "/api/v1/users/u-deep/state", {"x": deep}, "body"),
        ("POST", "/api/v1/webhooks", {"name": "w", **HOOK, "body": {"x": deep}}, "body"),
        ("PUT", f"/api/v1/webhooks/{webhook_id}", {"name": "w", **HOOK, "body": [deep]}, "body"),
        (
            "POST",
            "/api/v1/rules",
            example_rule(name="d", activity={"body": {"x": deep}}),
            "activity.body",
        ),
        (
            "PATCH",
            f"/api/v1/rules/{rule_id}",
            {"conditions": {"field": "event.x", "op": "eq", "value": deep}},
            "conditions",
        ),
        (
            "POST",
            "/api/v1/webhooks/preview",
            {"webhook": HOOK, "event": {"payload": {"x": deep}}},
            "event.payload",
        ),
        ("POST", "/api/v1/webhooks/test", {"webhook": HOOK, "state": {"x": deep}}, "state"),
    ]
    for method, path, document, field in cases:
        assert_error(await send(h, method, path, document), 422, field=field)


def test_depth_checks_count_the_outermost_level() -> None:
    check_depth(nested(MAX_DEPTH), "p")
    check_json(nested(MAX_DEPTH), "p")
    for check in (check_depth, check_json):
        with pytest.raises(InvalidInput) as info:
            check(nested(MAX_DEPTH + 1), "p")
        assert info.value.field == "p"
    check_json(nested(5000), "p", max_depth=None)  # no recursion: any depth can be walked


# --- integers beyond 64 bits --------------------------------------------------------------


@pytest.mark.parametrize("number", [str(2**64), str(-(2**63) - 1), str(10**30), "9" * 5000])
async def test_integers_beyond_64_bits_are_refused_not_turned_into_floats(
    h: Hookline, number: str
) -> None:
    digits = number.encode()
    resp = await h.client.post(
        "/api/v1/events",
        content=b'[{"event_type": "x", "user_ext_id": "a"}, {"event_type": "x", '
        b'"user_ext_id": "b", "payload": {"n": ' + digits + b"}}]",
        headers=JSON_HEADERS,
    )
    assert_error(resp, 422, field="[1].payload.n", says="64 bits")
    resp = await h.client.patch(
        "/api/v1/users/big/state", content=b'{"n": [' + digits + b"]}", headers=JSON_HEADERS
    )
    assert_error(resp, 422, field="n[0]", says="64 bits")
    resp = await h.client.post(
        "/api/v1/webhooks/preview",
        content=b'{"webhook": {"url": "http://127.0.0.1:9/x"}, "state": {"n": ' + digits + b"}}",
        headers=JSON_HEADERS,
    )
    assert_error(resp, 422, field="state.n", says="64 bits")
    assert_error(await h.client.get("/api/v1/users/big/state"), 404)


async def test_64_bit_integers_render_the_same_bytes_in_preview_and_delivery(
    h: Hookline, receiver: Receiver
) -> None:
    """The edges of 64 bits arrive exact, as do long digit runs that are not integers."""
    body = (
        '{"max": {{event.max}}, "min": {{event.min}}, "f": {{event.f}}, '
        '"s": "{{event.s}}", "max_text": "{{event.max}}"}'
    )
    await h.create_rule(activity={"url": receiver.url(), "body": body}, conditions=None)
    payload = {
        "max": 2**64 - 1,
        "min": -(2**63),
        "f": 12345678901234567890.5,
        "s": "123456789012345678901234567890",
    }
    resp = await send(h, "POST", "/api/v1/events", spin_event(payload=payload))
    assert resp.status_code == 202, resp.text
    [received] = await receiver.wait_for(1)
    preview = await send(
        h,
        "POST",
        "/api/v1/webhooks/preview",
        {
            "webhook": {"url": receiver.url(), "body": body},
            "event": {"payload": payload, "user_ext_id": "u-1"},
        },
    )
    assert preview.status_code == 200, preview.text
    assert preview.json()["body"].encode() == received.body
    assert received.json()["max"] == 2**64 - 1
    assert received.json()["min"] == -(2**63)
    assert received.json()["max_text"] == str(2**64 - 1)
    assert received.json()["s"] == payload["s"]


def test_parse_json_keeps_what_orjson_reads_exactly() -> None:
    for text in (
        b"18446744073709551615",
        b"-9223372036854775808",
        b'{"id": "12345678901234567890", "f": 1.5e300}',
        b"[12345678901234567890.5, -9.3e18]",
    ):
        assert parse_json(text) == json.loads(text)
    for text in (b"18446744073709551616", b'{"a": [1, -9223372036854775809]}'):
        with pytest.raises(InvalidInput):
            parse_json(text)


# --- Unicode digits -----------------------------------------------------------------------


# Arabic-Indic 3, fullwidth 1, superscript 2, Arabic-Indic 200, fullwidth 503, superscript 3.
@pytest.mark.parametrize(
    "digits", ["\u0663", "\uff11", "\u00b2", "\u0662\u0660\u0660", "\uff15\uff10\uff13", "\u00b3"]
)
async def test_non_ascii_digits_in_query_parameters_are_4xx(h: Hookline, digits: str) -> None:
    for name in ("limit", "since", "until"):
        assert_error(await h.client.get("/api/v1/deliveries", params={name: digits}), 422)
    resp = await h.client.post("/echo-send/digits-secret/", params={"status": digits})
    assert_error(resp, 400, field="status")


@pytest.mark.parametrize(
    "env",
    [
        {"HOOKLINE_PORT": "\u0668\u0660\u0668\u0660"},
        {"HOOKLINE_MAX_PER_HOST": "\uff11\uff16"},
        {"HOOKLINE_SENDER_PROCESSES": "\u00b2"},
        {"HOOKLINE_DEFAULT_TIMEOUT": "\uff11.\uff15"},
        {"HOOKLINE_RETRY_SCHEDULE": "0,\u0665"},
        {"HOOKLINE_MAX_BATCH_EVENTS": "1_000"},
    ],
)
def test_non_ascii_digits_in_settings_are_a_config_error(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert info.value.field == next(iter(env))


def test_retry_after_with_non_ascii_digits_is_ignored_not_a_crash() -> None:
    for value in ("\u00b2", "\u0663", "\uff11\uff12"):
        assert parse_retry_after(value, 0.0) is None
    assert parse_retry_after("12", 0.0) == 12.0


async def test_digit_runs_longer_than_any_index_in_fields_and_tags(h: Hookline) -> None:
    """int() refuses more than 4300 digits: such a path segment is just never an index."""
    long_index = "9" * 5000
    conditions = {"field": f"event.items.{long_index}", "op": "exists"}
    resp = await send(h, "POST", "/api/v1/rules", example_rule(conditions=conditions))
    assert resp.status_code == 201, resp.text
    hook = {"url": "http://127.0.0.1:9/x", "body": f'{{"x": {{{{event.items.{long_index}}}}}}}'}
    preview = await send(
        h,
        "POST",
        "/api/v1/webhooks/preview",
        {"webhook": hook, "event": {"payload": {"items": [1]}}},
    )
    assert preview.status_code == 200, preview.text
    assert preview.json()["body"] == '{"x": null}'


# --- lone surrogates ----------------------------------------------------------------------


async def test_lone_surrogates_are_422_naming_the_field(h: Hookline) -> None:
    rule_id, _ = await write_cases(h)
    text_hook = {"url": "http://127.0.0.1:9/x", "content_type": "text/plain", "body": "{{event.x}}"}
    cases: list[tuple[str, str, Any, str]] = [
        (
            "POST",
            "/api/v1/webhooks/preview",
            {"webhook": text_hook, "event": {"payload": {"x": "a\ud800b"}}},
            "event.payload.x",
        ),
        (
            "POST",
            "/api/v1/webhooks/test",
            {"webhook": {**HOOK, "headers": {"X-A": "{{state.k}}"}}, "state": {"k": "\udfff"}},
            "state.k",
        ),
        (
            "POST",
            "/api/v1/webhooks/preview",
            {"webhook": {**HOOK, "body": {"\ud83d": 1}}},
            "webhook.body.\\ud83d",
        ),
        ("POST", "/api/v1/rules", example_rule(name="\udc00"), "name"),
        ("PATCH", f"/api/v1/rules/{rule_id}", {"description": "x\ud800"}, "description"),
        ("POST", "/api/v1/events", spin_event(payload={"\ud800": 1}), "payload.\\ud800"),
        ("PATCH", "/api/v1/users/u-sur/state", {"name": ["ok", "\ud800"]}, "name[1]"),
        # A key's name and brands are stored as JSON too (a 500 when keys came).
        ("POST", "/api/v1/keys", {"role": "read", "name": "k\ud800"}, "name"),
        ("POST", "/api/v1/keys", {"role": "read", "brands": ["\udfff"]}, "brands[0]"),
    ]
    for method, path, document, field in cases:
        assert_error(await send(h, method, path, document), 422, field=field, says="surrogate")


# --- one limit for user ids ---------------------------------------------------------------


async def test_user_ids_have_one_limit_everywhere(h: Hookline) -> None:
    too_long, longest = "u" * 257, "u" * 256
    for method, body in (("PATCH", {"a": 1}), ("GET", None)):
        resp = await h.client.request(method, f"/api/v1/users/{too_long}/state", json=body)
        assert_error(resp, 422, field="user_ext_id")
    resp = await h.client.patch(f"/api/v1/users/{'u' * 5000}/state", json={"a": 1})
    assert_error(resp, 422, field="user_ext_id")
    assert_error(
        await h.post("/api/v1/events", spin_event(user=too_long)), 422, field="user_ext_id"
    )
    resp = await h.client.get("/api/v1/deliveries", params={"user_ext_id": too_long})
    assert_error(resp, 422, field="user_ext_id")
    resp = await h.post(
        "/api/v1/webhooks/preview", {"webhook": HOOK, "event": {"user_ext_id": too_long}}
    )
    assert_error(resp, 422, field="event.user_ext_id")
    resp = await h.post(
        "/api/v1/webhooks/preview", {"webhook": HOOK, "event": {"ext_brand_id": too_long}}
    )
    assert_error(resp, 422, field="event.ext_brand_id")
    # The longest id works the same in each of them.
    assert (
        await h.client.patch(f"/api/v1/users/{longest}/state", json={"a": 1})
    ).status_code == 200
    assert (await h.post("/api/v1/events", spin_event(user=longest))).status_code == 202
    assert (await h.client.get(f"/api/v1/users/{longest}/state")).json()["a"] == 1
    listed = await h.client.get("/api/v1/deliveries", params={"user_ext_id": longest})
    assert listed.status_code == 200


# --- the one parse path -------------------------------------------------------------------


def test_every_route_with_a_json_body_parses_it_with_parse_json(settings: Settings) -> None:
    from hookline.runtime import build_runtime

    app = create_app(build_runtime(settings))
    with_body = [r for r in _api_routes(app.routes) if r.body_field is not None]
    assert with_body, "no route with a body found"
    for route in with_body:
        assert isinstance(route, JSONRoute), f"{route.path} parses its body with Python's json"


def _api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    for route in routes:
        inner = getattr(route, "original_router", None)  # an included router, kept as is
        if inner is not None:
            yield from _api_routes(inner.routes)
        elif isinstance(route, APIRoute):
            yield route


async def test_a_body_of_another_media_type_is_still_a_4xx(h: Hookline) -> None:
    document = orjson.dumps(example_rule())
    for content_type in ("text/plain", None):
        headers = {"content-type": content_type} if content_type else {}
        resp = await h.client.post("/api/v1/rules", content=document, headers=headers)
        assert_error(resp)
    resp = await h.client.post(
        "/api/v1/rules", content=document, headers={"content-type": "application/merge+json"}
    )
    assert resp.status_code == 201, resp.text


@pytest.fixture
async def h(hookline: Hookline) -> Hookline:
    return hookline
