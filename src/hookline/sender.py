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
from yarl import URL

from hookline import __version__
from hookline.deliveries import MAX_RESPONSE_BODY, is_success, parse_retry_after
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
    """One request and what came back (or the error that stood in for an answer)."""

    started_at: int
    status_code: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None
    error: str | None = None
    retry_after: float | None = None
    latency_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "status_code": self.status_code,
            "headers": dict(self.headers),
            "body": self.body,
            "error": self.error,
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
                ex.body = (await _read_head(resp)).decode("utf-8", "replace")
                ex.retry_after = parse_retry_after(resp.headers.get("retry-after"), time.time())
        except TimeoutError:
            ex.error = f"timed out after {request.timeout:g} s"
        except aiohttp.ClientError as exc:
            ex.error = describe(exc, request.url)
        except ValueError as exc:  # a URL or header aiohttp refuses
            ex.error = f"invalid request: {exc}"
        ex.latency_ms = (time.perf_counter() - t0) * 1000
        if ex.status_code is not None and not is_success(ex.status_code):
            redirect = 300 <= ex.status_code < 400
            ex.error = f"HTTP {ex.status_code}" + (
                " (redirects are not followed)" if redirect else ""
            )
        return ex


def _wire_url(url: str) -> URL:
    """Send the URL exactly as rendered: tags are already percent-encoded ASCII.

    Only a URL with non-ASCII literal text (an IDN host, say) is left to yarl to encode.
    """
    return URL(url, encoded=True) if url.isascii() else URL(url)


async def _read_head(resp: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < MAX_RESPONSE_BODY:
        chunk = await resp.content.read(MAX_RESPONSE_BODY - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
