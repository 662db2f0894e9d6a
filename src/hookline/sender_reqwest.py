"""The default sender: Rust's reqwest (through ``pyreqwest``), pinned to checked addresses.

It keeps the promises of :class:`hookline.sender.HttpSender`, at about half the CPU per
request: the per-request timeout covers the whole exchange, redirects are not followed,
an answer is its status, headers and the first 4 KiB of its body, and nothing is
decompressed, proxied or given a ``Referer``.

The SSRF guard decides before a connection exists. A name is resolved here, through the
guard, and the request goes out on a client built for that destination *and that checked
address* (``ClientBuilder.resolve``): reqwest never looks the name up itself, and the Host
header and TLS name stay the URL's. The host is read the way reqwest reads it (its own URL
parser), so ``127.1`` or ``0x7f.0.0.1`` are judged as the addresses reqwest would dial.
A checked answer is reused for :data:`ANSWER_TTL` seconds, and forgotten after a failed
attempt, so a retry resolves again (a name that turned to a blocked address is caught).
Each client allows ``max_per_host`` requests in flight; the dispatcher keeps the global
limit.
"""

from __future__ import annotations

import sys
import time
from collections import OrderedDict
from datetime import timedelta
from typing import Final

from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import (
    BuilderError,
    PyreqwestError,
    RequestTimeoutError,
)
from pyreqwest.http import HeaderMap, Url
from pyreqwest.response import Response

from hookline.deliveries import MAX_RESPONSE_BODY, parse_retry_after
from hookline.events import now_ms
from hookline.netguard import (
    DestinationBlocked,
    IPAddress,
    LiteralVerdicts,
    Lookup,
    NetworkPolicy,
    resolve_checked,
    system_lookup,
)
from hookline.sender import (
    USER_AGENT,
    Exchange,
    Request,
    SubmitsInTasks,
    judge_status,
    keep_headers,
    signed_headers,
)
from hookline.sender_errors import describe_reqwest, refused_request

# How long a checked answer for a name is used before the name is resolved again.
ANSWER_TTL: Final = 10.0
# Clients kept (one per destination and checked address); the least recently used goes.
MAX_CLIENTS: Final = 4096
MAX_ANSWERS: Final = 10_000

_ClientKey = tuple[str, IPAddress | None]
# Audited with (origin, pinned address or None) before a client that will connect is made.
CONNECT_EVENT: Final = "hookline.sender.connect"


class ReqwestSender(SubmitsInTasks):
    """Sends from this process with one reqwest client per destination and checked address.

    ``policy`` is the SSRF guard's; ``lookup`` resolves names (a stub in tests).
    """

    def __init__(
        self,
        max_concurrency: int,
        max_per_host: int,
        policy: NetworkPolicy | None = None,
        lookup: Lookup = system_lookup,
    ) -> None:
        self.max_concurrency = max_concurrency
        self.max_per_host = max_per_host
        self.policy = policy if policy is not None else NetworkPolicy()
        self.lookup = lookup
        self._clients: OrderedDict[_ClientKey, Client] = OrderedDict()
        # Checked answers: name -> (address, monotonic time it expires).
        self._answers: dict[str, tuple[IPAddress, float]] = {}
        self._literals = LiteralVerdicts(self.policy)
        self._started = False
        self._tasks = set()

    async def start(self) -> None:
        self._started = True

    async def close(self) -> None:
        self._cancel_submitted()
        self._started = False
        clients, self._clients = list(self._clients.values()), OrderedDict()
        for client in clients:
            await client.close()

    def _new_client(self, pin: tuple[str, IPAddress, int] | None) -> Client:
        builder = (
            ClientBuilder()
            .user_agent(USER_AGENT)
            .follow_redirects(False)
            .no_proxy()  # a proxy would make the connection, to an address not checked
            .referer(False)
            .gzip(False)
            .brotli(False)
            .zstd(False)
            .deflate(False)
            .max_connections(self.max_per_host)
            # RFC 9112 (5.2): a folded header value is read with a space, as aiohttp does;
            # refused, it turned a receiver's 2xx into a dead delivery.
            .http1_allow_obsolete_multiline_headers_in_responses(True)
        )
        if pin is not None:
            name, address, port = pin
            builder = builder.resolve(name, str(address), port)
        return builder.build()

    async def _client_for(self, request: Request, url: Url) -> tuple[Client, str | None]:
        """The client that reaches ``url`` at a checked address, and the name it resolved."""
        origin = url.origin_ascii
        own_echo = self.policy.own_echo and "/echo-send/" in request.url
        if own_echo and self.policy.is_own_echo(request.url):
            return self._client((origin, None), None), None
        host = url.host_str or ""
        name = url.domain
        port = url.port_or_known_default or 0
        if name is None:  # an IP literal, as reqwest parsed it
            self._literals.check(host)
            return self._client((origin, None), None), None
        address = await self._checked(name, port)
        return self._client((origin, address), (name, address, port)), name

    def _client(self, key: _ClientKey, pin: tuple[str, IPAddress, int] | None) -> Client:
        client = self._clients.get(key)
        if client is None:
            # reqwest connects from native code, which Python's socket audit events do not
            # see: say where this client will connect (an audit hook may refuse it).
            sys.audit(CONNECT_EVENT, key[0], key[1])
            if len(self._clients) >= MAX_CLIENTS:
                # Dropped, not closed: requests still in flight on it finish on their own.
                self._clients.popitem(last=False)
            client = self._clients[key] = self._new_client(pin)
        else:
            self._clients.move_to_end(key)
        return client

    async def _checked(self, name: str, port: int) -> IPAddress:
        """An address ``name`` resolves to, every answer checked by the guard."""
        cached = self._answers.get(name)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        addresses = await resolve_checked(name, port, self.policy, self.lookup)
        if len(self._answers) >= MAX_ANSWERS:
            self._answers.clear()
        self._answers[name] = (addresses[0], now + ANSWER_TTL)
        return addresses[0]

    async def exchange(self, request: Request) -> Exchange:
        assert self._started, "the sender is not started"
        sent = signed_headers(request)
        ex = Exchange(started_at=now_ms())
        t0 = time.perf_counter()
        name: str | None = None
        try:
            url = Url(request.url)
            client, name = await self._client_for(request, url)
            builder = (
                client.request(request.method, url)
                .headers(sent)
                .timeout(timedelta(seconds=request.timeout))
                # Nothing read ahead: a body cut off must not cost the status already read.
                .streamed_read_buffer_limit(0)
            )
            if request.body is not None:
                builder = builder.body_bytes(request.body)
            async with builder.build_streamed() as resp:
                ex.status_code = resp.status
                ex.headers = _text_headers(resp.headers)
                retry_after = next((v for k, v in ex.headers if k == "retry-after"), None)
                ex.retry_after = parse_retry_after(retry_after, time.time())
                if not 100 <= resp.status < 200:  # a 1xx (101 switches protocols) has no body
                    head, ex.warning = await _read_head(resp)
                    ex.body = head.decode("utf-8", "replace")
        except DestinationBlocked as exc:
            ex.error, ex.final = str(exc), True
        except RequestTimeoutError:
            ex.error = f"timed out after {request.timeout:g} s"
        except BuilderError as exc:  # a URL or header reqwest refuses: it always will
            ex.error, ex.final = f"invalid request: {describe_reqwest(exc, request.url)}", True
        except PyreqwestError as exc:
            ex.error, ex.final = describe_reqwest(exc, request.url), _not_http(exc)
        except ValueError as exc:  # the URL does not parse, or a header is refused
            ex.error, ex.final = f"invalid request: {refused_request(str(exc))}", True
        except OSError as exc:  # the name did not resolve
            ex.error = f"cannot resolve host {name or request.url}: {exc}"
        ex.latency_ms = (time.perf_counter() - t0) * 1000
        judge_status(keep_headers(ex))
        if ex.error is not None and name is not None:
            # The next attempt resolves again: a changed answer gets checked at once.
            self._answers.pop(name, None)
        return ex


def _text_headers(headers: HeaderMap) -> tuple[tuple[str, str], ...]:
    """The response headers as text. reqwest gives only visible ASCII values as text, and
    no bytes: a value with any other byte (Latin-1, UTF-8) is recorded as U+FFFD, so the
    rest of the answer (its other headers, its body) is still recorded."""
    try:
        return tuple(headers.items())
    except ValueError:
        pairs: list[tuple[str, str]] = []
        for name in dict.fromkeys(headers.keys()):
            try:
                pairs.extend((name, value) for value in headers.getall(name))
            except ValueError:
                pairs.append((name, "\ufffd"))
        return tuple(pairs)


def _not_http(exc: PyreqwestError) -> bool:
    """Whether the answer was not HTTP at all (final: another try gets the same)."""
    return describe_reqwest(exc, "").startswith("the answer is not valid HTTP")


async def _read_head(resp: Response) -> tuple[bytes, str | None]:
    """The first bytes of the body, and why the read stopped short when it did."""
    chunks: list[bytes] = []
    size = 0
    reader = resp.body_reader
    try:
        # Chunk by chunk as they arrive: read(n) would drop what it had if the body broke off.
        while size < MAX_RESPONSE_BODY:
            chunk = await reader.read_chunk()
            if chunk is None:
                break
            data = bytes(chunk)[: MAX_RESPONSE_BODY - size]
            chunks.append(data)
            size += len(data)
    except RequestTimeoutError:
        why = "timed out"
        return b"".join(chunks), f"the response body was cut off after {size} bytes: {why}"
    except PyreqwestError as exc:
        why = describe_reqwest(exc, "")
        return b"".join(chunks), f"the response body was cut off after {size} bytes: {why}"
    return b"".join(chunks), None
