"""Hypothesis throws hostile JSON at every write endpoint; hookline answers 2xx or a 4xx
JSON error, never a 5xx, and afterwards restarts on the same data and still delivers.

Documents are written as JSON text, so they can hold what no Python value turns into:
``NaN`` and ``Infinity`` tokens, ``1e400``, integers of any size, lone surrogates as ``\\u``
escapes and nesting thousands of levels deep. Most are valid documents with one hole filled
with such text, so they get past the envelope and reach the checks, the store and the index.
Every URL is fixed to 127.0.0.1: the generated text never chooses where a request goes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hookline.state import merge_patch
from tests.helpers import Hookline, Receiver, example_rule, spin_event

MakeHookline = Callable[..., Coroutine[Any, Any, Hookline]]
HOLE = "__HOLE__"
JSON_HEADERS = {"content-type": "application/json"}
LOCAL = "http://127.0.0.1:9/fuzz"

_odd_scalars = st.sampled_from(
    [
        "NaN",
        "Infinity",
        "-Infinity",
        "1e400",
        "-1e400",
        str(2**63),
        str(2**64 - 1),
        str(2**64),
        str(-(2**63)),
        str(-(2**63) - 1),
        "9" * 40,
        "1" * 5000,
        '"\\ud800"',
        '"a\\udfffb"',
        '"\\ud83d\\ude00"',
        '"\\u0000"',
        '"\\u0663\\uff11"',
        '"{{event.x}}"',
        "null",
        "true",
    ]
)
_plain_scalars = st.one_of(
    st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: json.dumps(f)),
    st.text(max_size=12).map(json.dumps),
)
_deep = st.integers(min_value=60, max_value=1500).map(lambda n: "[" * n + "1" + "]" * n)
_keys = st.one_of(st.text(max_size=6).map(json.dumps), st.just('"\\udc00"'))
_json_text = st.recursive(
    st.one_of(_odd_scalars, _plain_scalars, _deep),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda items: "[" + ",".join(items) + "]"),
        st.lists(st.tuples(_keys, inner), max_size=4).map(
            lambda pairs: "{" + ",".join(f"{k}:{v}" for k, v in pairs) + "}"
        ),
    ),
    max_leaves=8,
)

_hole_text = st.one_of(_odd_scalars, _deep, _json_text)  # the oddities, often alone
_HOOK = {"url": LOCAL, "body": '{"n": {{event.n}}, "s": "{{state.s}}"}'}
_TEXT_HOOK = {"url": LOCAL, "content_type": "text/plain", "body": "{{event.x}} {{state.s}}"}


def _shapes(rule_id: str, webhook_id: str) -> list[tuple[str, str, Any]]:
    """(method, path, document with HOLE somewhere) for every write endpoint.

    ``__N__`` becomes the example's number, so names and users do not collide.
    """
    spin = spin_event(user="fuzz-__N__")
    return [
        ("POST", "/api/v1/events", {**spin, "payload": {"n": HOLE}}),
        ("POST", "/api/v1/events", {**spin, "user_ext_id": HOLE}),
        ("POST", "/api/v1/events", [spin, {**spin, "payload": {"deep": {"x": HOLE}}}]),
        (
            "POST",
            "/api/v1/events",
            {"event_type": "update_profile", "user_ext_id": "p-__N__", "payload": {"s": HOLE}},
        ),
        ("POST", "/api/v1/events", HOLE),
        ("PATCH", "/api/v1/users/u-__N__/state", {"s": HOLE}),
        ("PATCH", "/api/v1/users/w-__N__/state", HOLE),
        ("POST", "/api/v1/rules", example_rule(name=HOLE, activity={"url": LOCAL})),
        (
            "POST",
            "/api/v1/rules",
            example_rule(
                name="c-__N__",
                activity={"url": LOCAL},
                conditions={"field": "event.n", "op": "eq", "value": HOLE},
            ),
        ),
        (
            "POST",
            "/api/v1/rules",
            example_rule(name="r-__N__", activity={"url": LOCAL, "retry_schedule": [0, HOLE]}),
        ),
        (
            "POST",
            "/api/v1/rules",
            example_rule(name="b-__N__", activity={"url": LOCAL, "body": {"k": HOLE}}),
        ),
        (
            "PUT",
            f"/api/v1/rules/{rule_id}",
            example_rule(name="put-__N__", activity={"url": LOCAL, "timeout": HOLE}),
        ),
        ("PATCH", f"/api/v1/rules/{rule_id}", {"description": HOLE}),
        ("PATCH", f"/api/v1/rules/{rule_id}", {"conditions": {"all": [HOLE]}}),
        ("POST", "/api/v1/webhooks", {"name": "w-__N__", **_HOOK, "body": HOLE}),
        (
            "PUT",
            f"/api/v1/webhooks/{webhook_id}",
            {"name": "w2-__N__", **_HOOK, "retry_schedule": HOLE},
        ),
        ("POST", "/api/v1/webhooks/preview", {"webhook": _HOOK, "event": {"payload": {"n": HOLE}}}),
        ("POST", "/api/v1/webhooks/preview", {"webhook": {**_HOOK, "body": HOLE}}),
        (
            "POST",
            "/api/v1/webhooks/preview",
            {"webhook": _TEXT_HOOK, "event": {"payload": {"x": HOLE}}},
        ),
        ("POST", "/api/v1/webhooks/test", {"webhook": _TEXT_HOOK, "state": {"s": HOLE}}),
        ("POST", "/api/v1/webhooks/test", {"webhook_id": webhook_id, "event": {"payload": HOLE}}),
    ]


# Hypothesis runs in a worker thread here, where a garbage collection at the wrong moment
# makes it warn about its own PRNG (register_random); that says nothing about hookline.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
async def test_hostile_json_at_every_write_endpoint_never_5xx_and_restart_serves(
    make_hookline: MakeHookline, receiver: Receiver
) -> None:
    first = await make_hookline()
    sentinel = await first.create_rule(
        name="sentinel",
        trigger={"event_type": "sentinel_event"},
        conditions=None,
        activity={"url": receiver.url("/sentinel"), "body": '{"u": "{{state.user_ext_id}}"}'},
    )
    target = await first.create_rule(name="target", activity={"url": LOCAL})
    webhook = (await first.post("/api/v1/webhooks", {"name": "fuzz-hook", **_HOOK})).json()
    shapes = _shapes(target["id"], webhook["id"])
    answers: list[int] = []
    failures: list[tuple[str, str, bytes, int, str]] = []

    @settings(
        max_examples=150,
        deadline=None,
        derandomize=True,
        database=None,
        # The server runs in this test's loop; generating 1500-level text is not slow data.
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(shape=st.sampled_from(shapes), text=_hole_text)
    def throw(shape: tuple[str, str, Any], text: str) -> None:
        method, path, document = shape
        number = str(len(answers)).encode()
        body = orjson.dumps(document).replace(b"__N__", number)
        body = body.replace(f'"{HOLE}"'.encode(), text.encode())
        path = path.replace("__N__", number.decode())
        resp = client.request(method, path, content=body, headers=JSON_HEADERS)
        answers.append(resp.status_code)
        problem = _improper(resp) or _changed(client, path, body, resp)
        if problem:
            failures.append((method, path, body[:200], resp.status_code, problem))

    with httpx.Client(base_url=first.base_url, timeout=30) as client:
        await asyncio.to_thread(throw)
    assert not failures, f"{len(failures)} of {len(answers)} wrong, e.g. {failures[:3]}"
    assert any(200 <= s < 300 for s in answers) and any(400 <= s < 500 for s in answers)
    assert (await first.client.get("/healthz")).status_code == 200

    await first.stop()
    h = await make_hookline()  # the same data directory
    health = await h.client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok", health.text
    listed = await h.client.get("/api/v1/rules")
    assert listed.status_code == 200, listed.text
    assert sentinel["id"] in {r["id"] for r in listed.json()["data"]}
    resp = await h.post("/api/v1/events", {"event_type": "sentinel_event", "user_ext_id": "after"})
    assert resp.status_code == 202, resp.text
    [arrived] = await receiver.wait_for(1, "/sentinel")
    assert arrived.json() == {"u": "after"}


def _changed(client: httpx.Client, path: str, body: bytes, resp: httpx.Response) -> str | None:
    """What was accepted is kept exactly: no number turned into a float, no NaN into null."""
    if path == "/api/v1/events" and resp.status_code == 202:
        sent = json.loads(body)
        for event, accepted in zip(
            sent if isinstance(sent, list) else [sent], resp.json()["events"], strict=True
        ):
            stored = client.get(f"/api/v1/events/{accepted['id']}").json()
            if stored["payload"] != (event.get("payload") or {}):
                return f"payload stored as {stored['payload']!r}"
    if path.startswith("/api/v1/users/u-") and resp.status_code == 200:
        sent = json.loads(body)["s"]
        if resp.json().get("s", None) != merge_patch({}, {"s": sent}).get("s", None):
            return f"state stored as {resp.json().get('s')!r}"
    return None


def _improper(resp: httpx.Response) -> str | None:
    """None for a 2xx or a 4xx JSON error ``{code, detail, field}``; else what is wrong."""
    if 200 <= resp.status_code < 300:
        return None
    if not 400 <= resp.status_code < 500:
        return resp.text[:300]
    if not resp.headers.get("content-type", "").startswith("application/json"):
        return "a 4xx that is not JSON"
    body = resp.json()
    proper = (
        isinstance(body, dict)
        and set(body) == {"code", "detail", "field"}
        and isinstance(body["code"], str)
        and bool(body["code"])
        and isinstance(body["detail"], str)
        and bool(body["detail"])
        and (body["field"] is None or isinstance(body["field"], str))
    )
    return None if proper else f"not an error shape: {body!r}"[:300]
