"""One HTTP exchange: a request out, the answer (or the error) back. Nothing is recorded here.

:class:`HttpSender` sends from this process with one pooled aiohttp session (keep-alive).
The dispatcher schedules and records; a sender only sends, so the sending can move to
other processes (:mod:`hookline.sender_process`) without the dispatcher noticing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from aiohttp.http_exceptions import BadStatusLine
from yarl import URL

from hookline import __version__
from hookline.deliveries import (
    MAX_RESPONSE_BODY,
    is_success,
    is_valid_status,
    parse_retry_after,
)
from hookline.events import now_ms
from hookline.sender_errors import describe

USER_AGENT = f"hookline/{__version__}"


@dataclass(frozen=True, slots=True)
class Request:
    """A rendered request as the dispatcher hands it to a sender."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes | None
    timeout: float
    webhook_id: str


@dataclass(slots=True)
class Exchange:
    """One request and what came back (or the error that stood in for an answer).

    ``final`` marks an error that another try of the same request cannot mend (a request no
    sender will send, an answer that is not HTTP); ``warning`` notes a problem that does not
    change the outcome (a 2xx whose body was cut off). Fields cross the sender process
    socket in order (``astuple``), so new ones go at the end, with a default.
    """

    started_at: int
    status_code: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None
    error: str | None = None
    retry_after: float | None = None
    latency_ms: float = 0.0
    final: bool = False
    warning: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "status_code": self.status_code,
            "headers": dict(self.headers),
            "body": self.body,
            "error": self.error,
            "warning": self.warning,
            "latency_ms": round(self.latency_ms, 3),
            "succeeded": is_success(self.status_code),
        }


class Sender(Protocol):
    """Sends requests with the headers every delivery carries."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def exchange(self, request: Request) -> Exchange: ...


class HttpSender:
    """Sends from this process: one aiohttp session with keep-alive pools per destination."""

    def __init__(self, max_concurrency: int, max_per_host: int) -> None:
        self.max_concurrency = max_concurrency
        self.max_per_host = max_per_host
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self.max_concurrency, limit_per_host=self.max_per_host, ttl_dns_cache=60
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"user-agent": USER_AGENT},
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding",),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def exchange(self, request: Request) -> Exchange:
        assert self._session is not None, "the sender is not started"
        sent = dict(request.headers)
        sent["webhook-id"] = request.webhook_id
        sent["webhook-timestamp"] = str(int(time.time()))
        ex = Exchange(started_at=now_ms())
        t0 = time.perf_counter()
        try:
            async with self._session.request(
                request.method,
                _wire_url(request.url),
                data=request.body,
                headers=sent,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=request.timeout),
            ) as resp:
                ex.status_code = resp.status
                ex.headers = tuple((str(k), v) for k, v in resp.headers.items())
                ex.retry_after = parse_retry_after(resp.headers.get("retry-after"), time.time())
                if not 100 <= resp.status < 200:  # a 1xx (101 switches protocols) has no body
                    head, ex.warning = await _read_head(resp)
                    ex.body = head.decode("utf-8", "replace")
        except TimeoutError:
            ex.error = f"timed out after {request.timeout:g} s"
        except aiohttp.InvalidURL as exc:
            ex.error, ex.final = f"invalid request: {exc.__class__.__name__}: {exc}", True
        except aiohttp.ClientError as exc:
            ex.error = describe(exc, request.url)
            if _caused_by(exc, BadStatusLine):
                ex.error = f"the answer is not valid HTTP (bad status line): {exc}"
                ex.final = True
        except ValueError as exc:  # a URL or header aiohttp refuses: it always will
            ex.error, ex.final = f"invalid request: {exc}", True
        ex.latency_ms = (time.perf_counter() - t0) * 1000
        code = ex.status_code
        if code is not None and not is_success(code):
            if not is_valid_status(code):
                ex.error = f"HTTP {code} is not a valid HTTP status (100-599); not retried"
            elif code < 200:
                ex.error = f"HTTP {code} is an interim status, not an answer; not retried"
            elif 300 <= code < 400:
                ex.error = f"HTTP {code} (redirects are not followed)"
            else:
                ex.error = f"HTTP {code}"
        return ex


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``kind`` is in the chain of causes (aiohttp wraps its parser's errors)."""
    seen: BaseException | None = exc
    for _ in range(8):  # a chain is short; a cycle must not loop
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__
    return False


def _wire_url(url: str) -> URL:
    """Send the URL exactly as rendered: tags are already percent-encoded ASCII.

    Only a URL with non-ASCII literal text (an IDN host, say) is left to yarl to encode.
    """
    return URL(url, encoded=True) if url.isascii() else URL(url)


async def _read_head(resp: aiohttp.ClientResponse) -> tuple[bytes, str | None]:
    """The first bytes of the body, and why the read stopped short when it did.

    The status line decided the outcome already: a body cut off after it is a warning.
    """
    chunks: list[bytes] = []
    size = 0
    try:
        while size < MAX_RESPONSE_BODY:
            chunk = await resp.content.read(MAX_RESPONSE_BODY - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except (aiohttp.ClientError, TimeoutError) as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else f"{exc.__class__.__name__}: {exc}"
        return b"".join(chunks), f"the response body was cut off after {size} bytes: {why}"
    return b"".join(chunks), None
