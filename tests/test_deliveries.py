from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest

from hookline.deliveries import (
    MAX_RETRY_AFTER,
    destination_of,
    is_retryable,
    is_success,
    next_delay,
    parse_retry_after,
)


@pytest.mark.parametrize(
    ("status", "success", "retry"),
    [
        (200, True, False),
        (204, True, False),
        (299, True, False),
        (301, False, False),
        (302, False, False),
        (400, False, False),
        (404, False, False),
        (408, False, True),
        (410, False, False),
        (429, False, True),
        (500, False, True),
        (503, False, True),
        (None, False, True),
    ],
)
def test_classification(status: int | None, success: bool, retry: bool) -> None:
    assert is_success(status) is success
    assert is_retryable(status) is retry


def test_next_delay_follows_schedule_with_jitter_then_stops() -> None:
    rng = random.Random(1)
    schedule = (0.0, 5.0, 300.0)
    assert next_delay(schedule, 0, rng=rng) == 0.0
    d1 = next_delay(schedule, 1, rng=rng)
    assert d1 is not None and 4.0 <= d1 <= 6.0
    d2 = next_delay(schedule, 2, rng=rng)
    assert d2 is not None and 240.0 <= d2 <= 360.0
    assert next_delay(schedule, 3, rng=rng) is None


def test_jitter_spreads_retries() -> None:
    rng = random.Random(7)
    delays = {next_delay((0.0, 100.0), 1, rng=rng) for _ in range(50)}
    assert len(delays) > 40


def test_retry_after_is_a_floor_not_a_ceiling() -> None:
    assert next_delay((0.0, 5.0), 1, retry_after=60.0) == 60.0
    d = next_delay((0.0, 100.0), 1, retry_after=1.0, rng=random.Random(3))
    assert d is not None and d >= 80.0


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("99999999", now) == MAX_RETRY_AFTER
    date = format_datetime(datetime.fromtimestamp(now + 30, UTC), usegmt=True)
    parsed = parse_retry_after(date, now)
    assert parsed is not None and 29.0 <= parsed <= 31.0
    past = format_datetime(datetime.fromtimestamp(now - 30, UTC), usegmt=True)
    assert parse_retry_after(past, now) == 0.0


@pytest.mark.parametrize(
    "date",
    [
        "Tue, 14 Nov 2023 22:15:20 GMT",  # IMF-fixdate
        "Tuesday, 14-Nov-23 22:15:20 GMT",  # RFC 850
        "Tue Nov 14 22:15:20 2023",  # asctime: no zone, and GMT all the same
        "Tue, 14 Nov 2023 22:15:20 -0000",
    ],
)
def test_a_retry_after_date_is_gmt_in_every_format_wherever_the_server_runs(
    date: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """asctime's date was read as local time: 2 minutes became 5 hours and 2 in New York."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert parse_retry_after(date, 1_700_000_000.0) == 120.0
    finally:
        monkeypatch.undo()
        time.tzset()


def test_plan_delivery_renders_once_and_a_render_failure_is_a_dead_delivery() -> None:
    from hookline.deliveries import DeliveryStatus, Origin, plan_delivery
    from hookline.webhooks import WebhookSpec, compile_webhook

    webhook = compile_webhook(
        WebhookSpec(url="http://h/{{event.id}}", headers={"X-N": "{{event.note}}"}, body="{}")
    )
    origin = Origin("evt_1", "u-1", "rule_1")
    kwargs: dict[str, Any] = {"default_timeout": 15.0, "default_schedule": (0.0, 5.0), "now": 1000}
    ok = plan_delivery("dlv_1", webhook, {"event": {"id": 7, "note": "x"}}, origin, **kwargs)
    assert ok.status is DeliveryStatus.PENDING
    assert ok.url == "http://h/7"
    assert ok.next_attempt_at == 1000
    assert ok.timeout == 15.0
    bad = plan_delivery("dlv_2", webhook, {"event": {"id": 7, "note": "a\nb"}}, origin, **kwargs)
    assert bad.status is DeliveryStatus.DEAD
    assert bad.next_attempt_at is None
    assert bad.last_error is not None and "line break" in bad.last_error


@pytest.mark.parametrize(
    ("url", "destination"),
    [
        ("http://LocalHost:8080/a", "localhost:8080"),
        ("http://hooks.example.com./a", "hooks.example.com:80"),
        ("HTTPS://hooks.example.com", "hooks.example.com:443"),
        ("http://hooks.example.com:80/", "hooks.example.com:80"),
        ("http://user:pass@Hooks.example.com:1/", "hooks.example.com:1"),
        ("http://[::1]:9/", "[::1]:9"),
        ("http://[::1/", ""),
        ("http://h:99999/", ""),
    ],
)
def test_one_host_and_port_has_one_destination_however_spelled(url: str, destination: str) -> None:
    """The unit of the per-destination limit; never the password, and never an exception."""
    assert destination_of(url) == destination
