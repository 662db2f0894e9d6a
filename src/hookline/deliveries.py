"""Deliveries and their attempts, and the retry policy that moves them between states."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import SplitResult, urlsplit

from hookline.errors import HooklineError
from hookline.redaction import answer_headers, hide_url_credentials, redact_headers

if TYPE_CHECKING:
    from collections.abc import Mapping

    from hookline.webhooks import CompiledWebhook

MAX_RESPONSE_BODY: Final = 4096
# An attempt keeps the answer's headers up to this many characters (names and values), in
# whole headers: a parser lets through up to 400 KiB (reqwest) or 1 MiB (aiohttp) of them.
MAX_RESPONSE_HEADERS: Final = 16 * 1024
# A receiver may ask us to wait, but not for longer than a day per attempt.
MAX_RETRY_AFTER: Final = 86400.0
JITTER: Final = 0.2
# A delivery leased to a dispatcher stays leased for its timeout plus this margin; a crash
# frees it after that (a restart frees its own leases at once).
LEASE_MARGIN_MS: Final = 30_000


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    DEAD = "dead"


ACTIVE: Final = (DeliveryStatus.PENDING.value, DeliveryStatus.RETRYING.value)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook request to send until it succeeds or its schedule is spent."""

    id: str
    event_id: str | None
    rule_id: str | None
    webhook_id: str | None
    user_ext_id: str | None
    status: DeliveryStatus
    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes | None
    timeout: float
    retry_schedule: tuple[float, ...]
    attempts: int
    created_at: int
    next_attempt_at: int | None
    updated_at: int
    last_status_code: int | None = None
    last_error: str | None = None
    # Set when a journey's webhook block (not a rule) caused the delivery.
    journey_id: str | None = None
    instance_id: str | None = None
    # The brand of the user it was sent for, as text (None: no brand); reads filter on it.
    ext_brand_id: str | None = None
    # The webhook's secret_headers when the delivery was made: its answers mask them.
    secret_headers: tuple[str, ...] = ()

    @property
    def signer(self) -> str | None:
        """Whose secrets sign it: the saved webhook it used, else its rule's or journey's."""
        return self.webhook_id or self.rule_id or self.journey_id

    @property
    def destination(self) -> str:
        """The host and port the request goes to: the unit of per-destination limits."""
        return destination_of(self.url)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event_id": self.event_id,
            "rule_id": self.rule_id,
            "webhook_id": self.webhook_id,
            "user_ext_id": self.user_ext_id,
            "ext_brand_id": self.ext_brand_id,
            "status": self.status.value,
            "attempts": self.attempts,
            "max_attempts": len(self.retry_schedule),
            "created_at": self.created_at,
            "next_attempt_at": self.next_attempt_at,
            "updated_at": self.updated_at,
            "last_status_code": self.last_status_code,
            "last_error": self.last_error,
            "journey_id": self.journey_id,
            "instance_id": self.instance_id,
            "request": {
                "method": self.method,
                "url": hide_url_credentials(self.url),
                "headers": redact_headers(self.headers, self.secret_headers),
                "body": self.body.decode("utf-8", "replace") if self.body is not None else None,
                "timeout": self.timeout,
            },
        }


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one try of a delivery sent back, or why it got no answer.

    ``succeeded`` follows the status alone (2xx). ``error`` says why an attempt failed;
    ``warning`` notes what went wrong without changing that, such as a body cut off after a
    2xx status: the receiver had answered, so the delivery succeeded.
    """

    id: str
    delivery_id: str
    number: int
    started_at: int
    latency_ms: float
    status_code: int | None
    response_headers: tuple[tuple[str, str], ...]
    response_body: str | None
    error: str | None
    succeeded: bool
    warning: str | None = None

    def as_dict(self, secret_headers: tuple[str, ...] = ()) -> dict[str, Any]:
        """The answer; credentials an answer handed out (a cookie) are masked."""
        return {
            "id": self.id,
            "delivery_id": self.delivery_id,
            "number": self.number,
            "started_at": self.started_at,
            "latency_ms": round(self.latency_ms, 3),
            "status_code": self.status_code,
            "response_headers": answer_headers(self.response_headers, secret_headers),
            "response_body": self.response_body,
            "error": self.error,
            "warning": self.warning,
            "succeeded": self.succeeded,
        }


def destination_of(url: str) -> str:
    """``host:port`` of ``url``, one spelling per destination: the host lower-cased and
    without a trailing dot, the port written out (80 or 443 when the URL has none).

    The per-destination limit counts by it: ``LOCALHOST``, ``localhost.`` and ``localhost:80``
    were three destinations, each with its own limit, though they are one host and port.
    Without userinfo: the destination is logged, a password must not be.
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # refused when saved; an old row must not stop ingest or sends
        return ""
    return _destination(parts.scheme, parts.netloc)


@lru_cache(maxsize=4096)
def _destination(scheme: str, netloc: str) -> str:
    """Cached: destinations are few, and every delivery asks more than once (about 3 µs)."""
    try:
        parts = SplitResult(scheme, netloc, "", "", "")
        host = (parts.hostname or "").rstrip(".")
        port = parts.port or {"http": 80, "https": 443}.get(scheme.lower(), 0)
    except ValueError:
        return ""
    if ":" in host:  # IPv6, bracketed as in a URL
        host = f"[{host}]"
    return f"{host}:{port}"[:300]


def is_success(status_code: int | None) -> bool:
    """Only a 2xx counts; a 3xx is not followed and is a failure."""
    return status_code is not None and 200 <= status_code < 300


def is_valid_status(status_code: int) -> bool:
    """HTTP statuses are 100-599; anything else is a receiver that does not speak HTTP."""
    return 100 <= status_code <= 599


def is_retryable(status_code: int | None) -> bool:
    """Network errors and timeouts (no status), 408, 429 and 5xx are worth another try.

    A status outside 100-599 is a protocol error, final like a 4xx: the same receiver will
    answer the same way.
    """
    return status_code is None or status_code in (408, 429) or 500 <= status_code <= 599


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # not '²', which isdigit accepts and float refuses
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        # An HTTP date is in GMT even when it does not say so (asctime's format has no zone):
        # read as local time, a server east or west of Greenwich waited hours too long or not
        # at all.
        seconds = when.replace(tzinfo=when.tzinfo or UTC).timestamp() - now_s
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def next_delay(
    schedule: tuple[float, ...],
    attempts_made: int,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds until the next attempt, or None when the schedule is spent (dead letter).

    ``schedule[i]`` is the wait before attempt ``i + 1``; a delay gets ±20 % jitter so
    retries from one outage do not arrive together, and never less than ``Retry-After``.
    """
    if attempts_made >= len(schedule):
        return None
    base = schedule[attempts_made]
    jitter = (rng or random).uniform(1 - JITTER, 1 + JITTER) if base > 0 else 1.0
    delay = base * jitter
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


@dataclass(frozen=True, slots=True)
class Origin:
    """What caused a delivery: the event, and the rule (or journey step) that matched it."""

    event_id: str | None
    user_ext_id: str | None
    rule_id: str | None = None
    webhook_id: str | None = None
    journey_id: str | None = None
    instance_id: str | None = None
    ext_brand_id: str | None = None  # as text (keys.brand_text)


def plan_delivery(
    delivery_id: str,
    webhook: CompiledWebhook,
    context: Mapping[str, Any],
    origin: Origin,
    *,
    default_timeout: float,
    default_schedule: tuple[float, ...],
    now: int,
) -> Delivery:
    """The delivery a WebHook activity causes, whoever started it (rule or journey).

    A render failure costs the delivery, never the event: it is stored ``dead`` with
    the reason, so it shows up in the deliveries list like any other failure.
    """
    spec = webhook.spec
    schedule = spec.retry_schedule or default_schedule
    common: dict[str, Any] = {
        "id": delivery_id,
        "event_id": origin.event_id,
        "rule_id": origin.rule_id,
        "webhook_id": origin.webhook_id,
        "user_ext_id": origin.user_ext_id,
        "journey_id": origin.journey_id,
        "instance_id": origin.instance_id,
        "ext_brand_id": origin.ext_brand_id,
        "timeout": spec.timeout or default_timeout,
        "retry_schedule": schedule,
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
        "secret_headers": spec.secret_headers,
    }
    try:
        request = webhook.render(context)
    except Exception as exc:
        detail = exc.detail if isinstance(exc, HooklineError) else f"internal error: {exc!r}"
        return Delivery(
            **common,
            status=DeliveryStatus.DEAD,
            method=spec.method,
            url=spec.url,
            headers=(),
            body=None,
            next_attempt_at=None,
            last_error=f"not sent: {detail}",
        )
    return Delivery(
        **common,
        status=DeliveryStatus.PENDING,
        method=request.method,
        url=request.url,
        headers=request.headers,
        body=request.body,
        next_attempt_at=now + int(schedule[0] * 1000),
    )
