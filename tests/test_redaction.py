"""Secrets kept secret: credential header values are sent as written, and shown nowhere.

Every place a header shows is checked: rule and webhook answers (each route), validate,
deliveries and their attempts, previews and test sends, the command line and the log.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from hookline.cli import app
from hookline.logs import QUIET
from hookline.redaction import (
    MASK,
    SECRET_RESPONSE_HEADERS,
    answer_headers,
    redact_headers,
    show_secrets,
)
from tests.helpers import Hookline, Receiver, example_rule, spin_event

SECRETS = {
    "Authorization": "Bearer tok-authorization-1",
    "Cookie": "session=tok-cookie-2",
    "X-Api-Key": "tok-api-key-3",
    "Proxy-Authorization": "Basic tok-proxy-authorization-7",
    "X-Partner-Token": "tok-partner-4",
}
# Listed by the webhook, in another case than the header: names match case-insensitively.
SECRET_HEADERS = ["x-partner-token"]
PLAIN = {"X-Trace": "visible-5"}


def _activity(url: str) -> dict[str, Any]:
    return {"url": url, "headers": {**SECRETS, **PLAIN}, "secret_headers": SECRET_HEADERS}


def _masked(headers: dict[str, str]) -> None:
    for name in SECRETS:
        assert headers[name] == MASK, (name, headers)
    assert headers["X-Trace"] == "visible-5"


def _no_secret_in(text: str) -> None:
    for value in SECRETS.values():
        assert value not in text


def test_redact_headers_masks_the_fixed_names_and_the_listed_ones_in_any_case() -> None:
    headers = [
        ("authorization", "a"),
        ("COOKIE", "c"),
        ("Proxy-Authorization", "p"),
        ("X-Other", "o"),
        ("x-mine", "m"),
    ]
    assert redact_headers(headers, ["X-MINE"]) == {
        "authorization": MASK,
        "COOKIE": MASK,
        "Proxy-Authorization": MASK,
        "X-Other": "o",
        "x-mine": MASK,
    }
    # An answer's own credentials: the request's names, plus the cookies it hands out.
    answer = [("Set-Cookie", "s"), ("proxy-authorization", "p"), ("Cookie", "c"), ("X", "x")]
    assert redact_headers(answer, base=SECRET_RESPONSE_HEADERS) == {
        "Set-Cookie": MASK,
        "proxy-authorization": MASK,
        "Cookie": MASK,
        "X": "x",
    }


def test_an_answer_shows_every_value_of_a_repeated_header_and_no_secret() -> None:
    # As an attempt stored them: aiohttp kept the receiver's case before it lower-cased.
    pairs = [
        ("Link", "</a>; rel=x"),
        ("Set-Cookie", "sid=1"),
        ("link", "</b>; rel=y"),
        ("set-cookie", "sid=2"),
        ("X-Partner-Token", "t-1"),
        ("X-Partner-Token", "t-2"),
        ("X-Empty", ""),
        ("Vary", "a"),
        ("Vary", ""),
    ]
    assert answer_headers(pairs, ["x-partner-token"]) == {
        "link": "</a>; rel=x, </b>; rel=y",
        "set-cookie": MASK,
        "x-partner-token": MASK,
        "x-empty": "",
        "vary": "a, ",
    }
    assert answer_headers([]) == {}


def test_signing_secrets_show_to_admins_only_wherever_they_are() -> None:
    rule: dict[str, Any] = {"id": "rule_1", "activity": {"url": "u", "signing_secret": "whsec_x"}}
    webhook = {"id": "wh_1", "signing_secret": "whsec_y"}
    page: dict[str, Any] = {"data": [rule, webhook], "next_cursor": None}
    assert show_secrets(page, admin=True) is page
    hidden = show_secrets(page, admin=False)
    assert hidden["data"][0]["activity"]["signing_secret"] == MASK
    assert hidden["data"][1]["signing_secret"] == MASK
    assert (
        show_secrets({"valid": True, "rule": rule}, admin=False)["rule"]["activity"][
            "signing_secret"
        ]
        == MASK
    )
    assert rule["activity"]["signing_secret"] == "whsec_x"  # the original is untouched
    assert show_secrets({"id": "rule_2", "activity": {"webhook_id": "wh_1"}}, admin=False) == {
        "id": "rule_2",
        "activity": {"webhook_id": "wh_1"},
    }


async def test_rule_answers_mask_secret_headers_on_every_route(
    hookline: Hookline, receiver: Receiver
) -> None:
    rule = example_rule(activity=_activity(receiver.url()))
    created = await hookline.post("/api/v1/rules", rule)
    assert created.status_code == 201, created.text
    rule_id = created.json()["id"]
    answers = [
        created,
        await hookline.client.get(f"/api/v1/rules/{rule_id}"),
        await hookline.client.put(f"/api/v1/rules/{rule_id}", json=rule),
        await hookline.client.patch(f"/api/v1/rules/{rule_id}", json={"enabled": True}),
        await hookline.post(f"/api/v1/rules/{rule_id}/rotate-secret"),
    ]
    listed = await hookline.client.get("/api/v1/rules")
    validated = await hookline.post("/api/v1/rules/validate", rule)
    for answer in answers:
        assert answer.status_code in (200, 201), answer.text
        _masked(answer.json()["activity"]["headers"])
        assert answer.json()["activity"]["secret_headers"] == SECRET_HEADERS
        _no_secret_in(answer.text)
    _masked(listed.json()["data"][0]["activity"]["headers"])
    _masked(validated.json()["rule"]["activity"]["headers"])
    _no_secret_in(listed.text + validated.text)
    # Stored as written, and sent as written.
    stored = await hookline.runtime.store.get_rule(rule_id)
    assert stored is not None and stored.webhook is not None
    assert dict(stored.webhook.headers) == {**SECRETS, **PLAIN}
    await hookline.post("/api/v1/events", spin_event())
    (got,) = await receiver.wait_for(1)
    assert {k: got.headers[k.lower()] for k in SECRETS} == SECRETS


async def test_saved_webhook_answers_mask_secret_headers_on_every_route(hookline: Hookline) -> None:
    body = {"name": "crm", **_activity("https://crm.example.test/x")}
    created = await hookline.post("/api/v1/webhooks", body)
    assert created.status_code == 201, created.text
    webhook_id = created.json()["id"]
    answers = [
        created,
        await hookline.client.get(f"/api/v1/webhooks/{webhook_id}"),
        await hookline.client.put(f"/api/v1/webhooks/{webhook_id}", json=body),
        await hookline.post(f"/api/v1/webhooks/{webhook_id}/rotate-secret"),
    ]
    for answer in answers:
        assert answer.status_code in (200, 201), answer.text
        _masked(answer.json()["headers"])
        _no_secret_in(answer.text)
    listed = await hookline.client.get("/api/v1/webhooks")
    _masked(listed.json()["data"][0]["headers"])
    _no_secret_in(listed.text)


async def test_deliveries_and_attempts_mask_request_and_response_credentials(
    hookline: Hookline, receiver: Receiver
) -> None:
    receiver.extra_headers["/hook"] = {
        "Set-Cookie": "sid=tok-set-cookie-6",
        "X-Partner-Token": "tok-echoed-8",
        "X-Seen": "yes",
    }
    await hookline.post("/api/v1/rules", example_rule(activity=_activity(receiver.url())))
    resp = await hookline.post("/api/v1/events", spin_event())
    (delivery_id,) = resp.json()["events"][0]["deliveries"]
    await receiver.wait_for(1)
    await hookline.idle()
    detail = await hookline.client.get(f"/api/v1/deliveries/{delivery_id}")
    listed = await hookline.client.get("/api/v1/deliveries")
    _masked(detail.json()["request"]["headers"])
    _masked(listed.json()["data"][0]["request"]["headers"])
    (attempt,) = detail.json()["attempt_log"]
    # Names as the client read them: aiohttp keeps the case, reqwest lowers it.
    answered = {name.lower(): value for name, value in attempt["response_headers"].items()}
    assert answered["set-cookie"] == MASK
    assert answered["x-partner-token"] == MASK
    assert answered["x-seen"] == "yes"
    _no_secret_in(detail.text + listed.text)
    assert "tok-set-cookie-6" not in detail.text


async def test_preview_and_test_send_show_the_request_masked(
    hookline: Hookline, receiver: Receiver
) -> None:
    # A receiver may echo a listed secret header back: masked here as in attempt logs.
    receiver.extra_headers["/hook"] = {
        "Set-Cookie": "sid=tok-set-cookie-6",
        "X-Partner-Token": "tok-echoed-8",
    }
    sample = {"webhook": _activity(receiver.url())}
    preview = await hookline.post("/api/v1/webhooks/preview", sample)
    assert preview.status_code == 200, preview.text
    _masked(preview.json()["headers"])
    test = await hookline.post("/api/v1/webhooks/test", sample)
    assert test.status_code == 200, test.text
    _masked(test.json()["request"]["headers"])
    answered = {name.lower(): v for name, v in test.json()["response"]["headers"].items()}
    assert answered["set-cookie"] == MASK
    assert answered["x-partner-token"] == MASK
    _no_secret_in(preview.text + test.text)
    assert "tok-set-cookie-6" not in test.text and "tok-echoed-8" not in test.text
    (got,) = await receiver.wait_for(1)
    assert got.headers["x-partner-token"] == "tok-partner-4"  # sent as written


async def test_a_secret_header_list_must_name_the_webhooks_own_headers(hookline: Hookline) -> None:
    activity = {"url": "https://a.test/", "headers": {"X-Token": "t"}, "secret_headers": ["X-Tokn"]}
    resp = await hookline.post("/api/v1/rules", example_rule(activity=activity))
    assert resp.status_code == 422
    assert resp.json()["field"] == "activity.secret_headers[0]"
    saved = await hookline.post("/api/v1/webhooks", {"name": "w", **activity})
    assert (saved.status_code, saved.json()["field"]) == (422, "secret_headers[0]")


async def test_the_command_line_shows_no_secret(hookline: Hookline, receiver: Receiver) -> None:
    await hookline.post("/api/v1/rules", example_rule(activity=_activity(receiver.url())))
    resp = await hookline.post("/api/v1/events", spin_event())
    (delivery_id,) = resp.json()["events"][0]["deliveries"]
    await receiver.wait_for(1)
    await hookline.idle()
    runner = CliRunner()
    url = ("--url", hookline.base_url)
    outputs = []
    for args in (
        ["rules", "list", "--json", *url],
        ["rules", "list", *url],
        ["deliveries", "list", "--json", *url],
        ["deliveries", "show", delivery_id, *url],
    ):
        result = await asyncio.to_thread(runner.invoke, app, args)
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    _no_secret_in("\n".join(outputs))
    _masked(orjson.loads(outputs[0])[0]["activity"]["headers"])
    _masked(orjson.loads(outputs[3])["request"]["headers"])


async def test_no_secret_reaches_the_log(
    hookline: Hookline, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    # As `hookline serve --log-level debug` logs: everything of hookline's, the libraries'
    # traces (the SQL driver's parameters among them) only from warning up.
    caplog.set_level(logging.DEBUG)
    for name in QUIET:
        caplog.set_level(logging.WARNING, logger=name)
    receiver.script["/hook"] = [503, 503, 503]  # failures, retries and a dead delivery: logged
    created = await hookline.post("/api/v1/rules", example_rule(activity=_activity(receiver.url())))
    signing_secret = created.json()["activity"]["signing_secret"]
    await hookline.post(f"/api/v1/rules/{created.json()['id']}/rotate-secret")
    await hookline.post("/api/v1/events", spin_event())
    await receiver.wait_for(3)
    await hookline.idle()
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records)
    assert "is dead after 3 attempt(s)" in text  # the log did speak
    _no_secret_in(text)
    assert signing_secret not in text and "whsec_" not in text


# --- a *** sent back keeps the stored secret: GET, then PUT/PATCH what it showed ------------

_SERVER_FIELDS = {
    "id",
    "version",
    "revision",
    "created_at",
    "updated_at",
    "signing_secret",
    "warnings",
}


def _writable(answer: dict[str, Any]) -> dict[str, Any]:
    """A GET answer as a client sends it back: the server's own fields left out."""
    body = {k: v for k, v in answer.items() if k not in _SERVER_FIELDS and k != "problem"}
    if "activity" in body:
        body["activity"] = {k: v for k, v in body["activity"].items() if k != "signing_secret"}
    return body


def _journey(url: str, name: str = "jr") -> dict[str, Any]:
    return {
        "name": name,
        "status": "active",
        "entry": {"trigger": {"event_type": "minigame_spin_issued"}},
        "start": "hello",
        "blocks": {"hello": {"type": "webhook", "activity": _activity(url)}},
    }


async def _round_trip(
    h: Hookline, receiver: Receiver, kind: str, how: str, new_url: str | None = None
) -> Any:
    """Create with real secrets, GET (masked), write the answer back with a new URL.

    The new URL is the receiver's ``/after`` (same host and port) unless ``new_url`` is
    given; the answer to the write is returned.
    """
    if kind == "webhook":
        made = await h.post("/api/v1/webhooks", {"name": "crm", **_activity(receiver.url("/x"))})
        path = f"/api/v1/webhooks/{made.json()['id']}"
        rule = {"name": "r", "trigger": {"event_type": "minigame_spin_issued"}}
        rule["activity"] = {"type": "webhook", "webhook_id": made.json()["id"]}
        assert (await h.post("/api/v1/rules", rule)).status_code == 201
    elif kind == "rule":
        made = await h.post("/api/v1/rules", example_rule(activity=_activity(receiver.url("/x"))))
        path = f"/api/v1/rules/{made.json()['id']}"
    else:
        made = await h.post("/api/v1/journeys", _journey(receiver.url("/x")))
        assert made.status_code == 201, made.text
        path = f"/api/v1/journeys/{made.json()['id']}"
    assert made.status_code == 201, made.text
    shown = (await h.client.get(path)).json()
    body = _writable(shown)
    url = new_url or receiver.url("/after")
    if kind == "webhook":
        body["url"] = url
    elif kind == "rule":
        body["activity"]["url"] = url
    else:
        body["blocks"]["hello"]["activity"]["url"] = url
    if how == "PATCH":
        body = {k: body[k] for k in ("activity", "blocks") if k in body}
    resp = await h.client.request(how, path, json=body)
    if new_url is not None:
        return resp
    assert resp.status_code == 200, resp.text
    _masked(
        resp.json()["headers"]
        if kind == "webhook"
        else resp.json()["activity"]["headers"]
        if kind == "rule"
        else resp.json()["blocks"]["hello"]["activity"]["headers"]
    )
    return resp


@pytest.mark.parametrize(
    ("kind", "how"),
    [
        ("webhook", "PUT"),
        ("rule", "PUT"),
        ("rule", "PATCH"),
        ("journey", "PUT"),
        ("journey", "PATCH"),
    ],
)
async def test_writing_back_what_a_read_showed_keeps_the_real_secrets(
    hookline: Hookline, receiver: Receiver, kind: str, how: str
) -> None:
    await _round_trip(hookline, receiver, kind, how)
    await hookline.post("/api/v1/events", spin_event())
    (request,) = await receiver.wait_for(1, "/after")
    for name, value in SECRETS.items():
        assert request.headers[name.lower()] == value, name
    assert request.headers["x-trace"] == "visible-5"


@pytest.mark.parametrize(
    ("kind", "how"),
    [("webhook", "PUT"), ("rule", "PUT"), ("rule", "PATCH"), ("journey", "PUT")],
)
async def test_a_mask_is_not_kept_when_the_url_moves_to_another_host(
    hookline: Hookline, receiver: Receiver, kind: str, how: str
) -> None:
    """Whoever may edit the URL but not read the secret cannot send it to a host of theirs."""
    resp = await _round_trip(hookline, receiver, kind, how, new_url="http://127.0.0.2:9/steal")
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"].endswith("headers.Authorization")
    assert "another host" in resp.json()["detail"]


@pytest.mark.parametrize("kind", ["webhook", "rule", "journey"])
async def test_a_mask_with_no_stored_value_to_keep_is_refused_naming_the_header(
    hookline: Hookline, kind: str
) -> None:
    activity = {"url": "http://127.0.0.1:9/x", "headers": {"Authorization": MASK}}
    if kind == "webhook":
        resp = await hookline.post("/api/v1/webhooks", {"name": "w", **activity})
        field = "headers.Authorization"
    elif kind == "rule":
        resp = await hookline.post("/api/v1/rules", example_rule(activity=activity))
        field = "activity.headers.Authorization"
    else:
        journey = _journey("http://127.0.0.1:9/x")
        journey["blocks"]["hello"]["activity"] = activity
        resp = await hookline.post("/api/v1/journeys", journey)
        field = "blocks.hello.activity.headers.Authorization"
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"] == field


async def test_a_new_secret_header_sent_as_a_mask_is_refused_on_put(hookline: Hookline) -> None:
    """Only a header already stored can be kept: a *** for a new one is not a value."""
    made = await hookline.post("/api/v1/rules", example_rule())
    body = example_rule(activity={"headers": {"X-Api-Key": MASK, "Cookie": MASK}})
    resp = await hookline.client.put(f"/api/v1/rules/{made.json()['id']}", json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"] == "activity.headers.Cookie"


async def test_journey_answers_mask_secret_headers_of_inline_blocks(
    hookline: Hookline, receiver: Receiver
) -> None:
    created = await hookline.post("/api/v1/journeys", _journey(receiver.url()))
    assert created.status_code == 201, created.text
    journey_id = created.json()["id"]
    answers = [
        created,
        await hookline.client.get(f"/api/v1/journeys/{journey_id}"),
        await hookline.client.patch(f"/api/v1/journeys/{journey_id}", json={"description": "d"}),
        await hookline.post(f"/api/v1/journeys/{journey_id}/rotate-secret"),
    ]
    for answer in answers:
        assert answer.status_code in (200, 201), answer.text
        _masked(answer.json()["blocks"]["hello"]["activity"]["headers"])
        _no_secret_in(answer.text)
    listed = await hookline.client.get("/api/v1/journeys")
    _masked(listed.json()["data"][0]["blocks"]["hello"]["activity"]["headers"])
    _no_secret_in(listed.text)
    # Stored as written, and sent so.
    await hookline.post("/api/v1/events", spin_event())
    (request,) = await receiver.wait_for(1)
    assert request.headers["authorization"] == SECRETS["Authorization"]
