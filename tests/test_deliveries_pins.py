"""Tests that pin what deliveries.py does for its users, found by mutation testing (make mutation).

The retry policy's edges (what counts as success, the jitter range, when the first attempt is
due), what a planned delivery carries, and the shape in which the API shows deliveries and
attempts.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest

from hookline.deliveries import (
    Attempt,
    Delivery,
    DeliveryStatus,
    Origin,
    is_success,
    next_delay,
    plan_delivery,
)
from hookline.errors import RenderError
from hookline.webhooks import CompiledWebhook, WebhookSpec, compile_webhook


class EdgeRandom(random.Random):
    """A random source that always draws one end of the range it is asked for."""

    def __init__(self, end: str) -> None:
        super().__init__(0)
        self.end = end
        self.asked: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.asked.append((a, b))
        return a if self.end == "low" else b


@pytest.mark.parametrize(
    ("status", "success"), [(199, False), (200, True), (299, True), (300, False)]
)
def test_success_is_exactly_the_2xx_range(status: int, success: bool) -> None:
    assert is_success(status) is success


def test_jitter_is_plus_or_minus_twenty_percent_of_the_scheduled_delay() -> None:
    assert next_delay((0.0, 100.0), 1, rng=EdgeRandom("low")) == pytest.approx(80.0)
    assert next_delay((0.0, 100.0), 1, rng=EdgeRandom("high")) == pytest.approx(120.0)


def test_a_delay_under_one_second_is_jittered_too() -> None:
    rng = EdgeRandom("high")
    assert next_delay((0.0, 0.5), 1, rng=rng) == pytest.approx(0.6)
    assert rng.asked == [(0.8, 1.2)]


def test_a_zero_delay_stays_zero_whatever_the_jitter() -> None:
    assert next_delay((0.0, 5.0), 0, rng=EdgeRandom("high")) == 0.0
    assert next_delay((0.0, 5.0), 0, retry_after=3.0, rng=EdgeRandom("low")) == 3.0


SPEC = WebhookSpec(
    url="http://receiver.test/hook/{{event.id}}",
    headers={"X-Note": "{{event.note}}"},
    body='{"id": {{event.id}}}',
)
ORIGIN = Origin("evt_1", "u-1", "rule_1", "whk_1")
PLAN: dict[str, Any] = {"default_timeout": 15.0, "default_schedule": (0.0, 5.0), "now": 1_000}


def test_a_planned_delivery_carries_the_rendered_request_and_has_made_no_attempt() -> None:
    d = plan_delivery(
        "dlv_1", compile_webhook(SPEC), {"event": {"id": 7, "note": "hi"}}, ORIGIN, **PLAN
    )
    assert d.status is DeliveryStatus.PENDING
    assert (d.method, d.url, d.body) == ("POST", "http://receiver.test/hook/7", b'{"id": 7}')
    assert d.headers == (("X-Note", "hi"), ("content-type", "application/json"))
    assert d.attempts == 0
    assert (d.event_id, d.user_ext_id, d.rule_id, d.webhook_id) == (
        "evt_1",
        "u-1",
        "rule_1",
        "whk_1",
    )
    assert (d.created_at, d.updated_at) == (1_000, 1_000)
    assert d.retry_schedule == (0.0, 5.0)
    assert (d.last_status_code, d.last_error) == (None, None)


def test_the_first_attempt_is_due_after_the_first_delay_of_the_schedule() -> None:
    webhook = compile_webhook(
        WebhookSpec(url="http://receiver.test/", retry_schedule=(2.5, 10.0), timeout=3.0)
    )
    d = plan_delivery("dlv_1", webhook, {}, ORIGIN, **PLAN)
    assert d.next_attempt_at == 1_000 + 2_500
    assert d.retry_schedule == (2.5, 10.0)
    assert d.timeout == 3.0


def test_a_render_failure_is_dead_at_once_with_the_renderers_reason_and_the_saved_target() -> None:
    webhook = compile_webhook(SPEC)
    context = {"event": {"id": 7, "note": "a\nb"}}
    with pytest.raises(RenderError) as info:
        webhook.render(context)
    d = plan_delivery("dlv_1", webhook, context, ORIGIN, **PLAN)
    assert d.status is DeliveryStatus.DEAD
    assert d.last_error == f"not sent: {info.value.detail}"
    assert (d.method, d.url, d.headers, d.body) == ("POST", SPEC.url, (), None)
    assert (d.attempts, d.next_attempt_at) == (0, None)


class BrokenWebhook(CompiledWebhook):
    """A webhook whose rendering hits a bug rather than a refusal."""

    def render(self, context: Any) -> Any:
        raise RuntimeError("boom")


def test_a_bug_in_rendering_costs_the_delivery_not_the_event() -> None:
    d = plan_delivery("dlv_1", BrokenWebhook(SPEC, ""), {}, ORIGIN, **PLAN)
    assert d.status is DeliveryStatus.DEAD
    assert d.last_error == "not sent: internal error: RuntimeError('boom')"
    assert (d.method, d.url, d.headers) == ("POST", SPEC.url, ())


DELIVERY = Delivery(
    id="dlv_1",
    event_id="evt_1",
    rule_id="rule_1",
    webhook_id="whk_1",
    user_ext_id="u-1",
    status=DeliveryStatus.RETRYING,
    method="POST",
    url="http://receiver.test/hook",
    headers=(("X-A", "1"), ("content-type", "application/json")),
    body=b'{"a": "\xc3\xa9"}',
    timeout=15.0,
    retry_schedule=(0.0, 5.0, 300.0),
    attempts=1,
    created_at=1_000,
    next_attempt_at=6_000,
    updated_at=1_500,
    last_status_code=503,
    last_error="HTTP 503",
)


def test_the_api_shows_a_delivery_with_its_request_and_schedule_progress() -> None:
    assert DELIVERY.as_dict() == {
        "id": "dlv_1",
        "event_id": "evt_1",
        "rule_id": "rule_1",
        "webhook_id": "whk_1",
        "user_ext_id": "u-1",
        "status": "retrying",
        "attempts": 1,
        "max_attempts": 3,
        "created_at": 1_000,
        "next_attempt_at": 6_000,
        "updated_at": 1_500,
        "last_status_code": 503,
        "last_error": "HTTP 503",
        "journey_id": None,
        "instance_id": None,
        "ext_brand_id": None,
        "request": {
            "method": "POST",
            "url": "http://receiver.test/hook",
            "headers": {"X-A": "1", "content-type": "application/json"},
            "body": '{"a": "é"}',
            "timeout": 15.0,
        },
    }


def test_the_api_shows_a_body_that_is_not_utf8_with_replacement_characters() -> None:
    assert replace(DELIVERY, body=b"\xff ok").as_dict()["request"]["body"] == "\ufffd ok"
    assert replace(DELIVERY, body=None).as_dict()["request"]["body"] is None


EXPECTED_ATTEMPT: dict[str, Any] = {
    "id": "att_1",
    "delivery_id": "dlv_1",
    "number": 2,
    "started_at": 5_000,
    "latency_ms": 12.346,
    "status_code": 503,
    "response_headers": {"retry-after": "5", "server": "x"},
    "response_body": "busy",
    "error": "HTTP 503",
    "succeeded": False,
}


def test_the_api_shows_an_attempt_with_what_came_back() -> None:
    attempt = Attempt(
        id="att_1",
        delivery_id="dlv_1",
        number=2,
        started_at=5_000,
        latency_ms=12.34567,
        status_code=503,
        response_headers=(("retry-after", "5"), ("server", "x")),
        response_body="busy",
        error="HTTP 503",
        succeeded=False,
    )
    shown = attempt.as_dict()
    # Only the fields named here are pinned: an attempt may gain fields (a warning, say).
    assert {k: shown[k] for k in EXPECTED_ATTEMPT} == EXPECTED_ATTEMPT
