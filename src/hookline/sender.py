"""One HTTP exchange: a request out, the answer (or the error) back. Nothing is recorded here.

:class:`Sender` is the contract; :class:`HttpSender` sends from this process with one pooled
aiohttp session (keep-alive), :class:`hookline.sender_reqwest.ReqwestSender` (the default,
``HOOKLINE_SENDER``) with reqwest; :func:`local_sender` picks one.
The dispatcher schedules and records; a sender only sends, so the sending can move to
other processes (:mod:`hookline.sender_process`) without the dispatcher noticing.

A sender also signs and guards, at the moment it sends:

- The ``webhook-timestamp`` is taken right before the request goes out, and the
  ``webhook-signature`` is computed from it with the keys that came with the request (the
  dispatcher picks them at send time, so a retry after a rotation carries the new secret).
  Signing here rather than in the dispatcher keeps the HMAC work off the ingest core.
- The SSRF guard (:mod:`hookline.netguard`) checks every address a destination resolves to,
  through a resolver that hands aiohttp only the checked addresses, so the connection goes
  to an address that was checked (no second lookup). aiohttp does not resolve IP literals,
  so those are checked here before sending. A blocked destination is a final error.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.http_exceptions import BadHttpMessage, BadStatusLine
from yarl import URL

from hookline import __version__
from hookline.deliveries import (
    MAX_RESPONSE_BODY,
    MAX_RESPONSE_HEADERS,
    is_success,
    is_valid_status,
    parse_retry_after,
)
from hookline.events import now_ms
from hookline.netguard import (
    DestinationBlocked,
    LiteralVerdicts,
    Lookup,
    NetworkPolicy,
    resolve_checked,
    system_lookup,
)
from hookline.redaction import answer_headers
from hookline.sender_errors import describe
from hookline.signing import sign

_E = TypeVar("_E", bound=BaseException)

USER_AGENT = f"hookline/{__version__}"
log = logging.getLogger("hookline.sender")


@dataclass(frozen=True, slots=True)
class Request:
    """A rendered request as the dispatcher hands it to a sender."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes | None
    timeout: float
    webhook_id: str
    # The keys that sign it, current first; none: sent unsigned. Never printed.
    signing_keys: tuple[bytes, ...] = field(default=(), repr=False)


@dataclass(slots=True)
class Exchange:
    """One request and what came back (or the error that stood in for an answer).

    ``final`` marks an error that another try of the same request cannot mend (a request no
    sender will send, an answer that is not HTTP); ``warning`` notes a problem that does not
    change the outcome (a 2xx whose body was cut off). Fields cross the sender process
    socket in order (their fields' values), so new ones go at the end, with a default.
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

    def as_dict(self, secret_headers: Iterable[str] = ()) -> dict[str, Any]:
        """The answer, masked as an attempt's is: the webhook's secret headers too."""
        return {
            "status_code": self.status_code,
            "headers": answer_headers(self.headers, secret_headers),
            "body": self.body,
            "error": self.error,
            "warning": self.warning,
            "latency_ms": round(self.latency_ms, 3),
            "succeeded": is_success(self.status_code),
        }


Done = Callable[[Exchange], None]


class Sender(Protocol):
    """Sends requests with the headers every delivery carries.

    ``exchange`` awaits one answer; ``submit`` starts a request and calls ``done`` with its
    answer (never raises, every request gets one), which saves the dispatcher a task and a
    future per delivery, and the loop turns between them.
    """

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def exchange(self, request: Request) -> Exchange: ...

    def submit(self, request: Request, done: Done) -> None: ...


class SubmitsInTasks:
    """``submit`` for a sender in this process: each request awaits ``exchange`` in a task,
    and ``close`` cancels those still running (their ``done`` is not called). A subclass
    sets ``_tasks`` to an empty set when made."""

    _tasks: set[asyncio.Task[None]]

    async def exchange(self, request: Request) -> Exchange:
        raise NotImplementedError

    def submit(self, request: Request, done: Done) -> None:
        spawn(self._tasks, self._exchange_then(request, done))

    async def _exchange_then(self, request: Request, done: Done) -> None:
        done(await exchange_or_error(self, request))

    def _cancel_submitted(self) -> None:
        for task in self._tasks:
            task.cancel()


def spawn(tasks: set[asyncio.Task[None]], work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` in a task held in ``tasks`` until it ends (the loop keeps only a weak
    reference), so whoever owns ``tasks`` can cancel what still runs."""
    task = asyncio.get_running_loop().create_task(work)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def exchange_or_error(sender: Sender | SubmitsInTasks, request: Request) -> Exchange:
    """The answer, or the error of a sender's bug as one: an attempt is recorded and retried."""
    try:
        return await sender.exchange(request)
    except Exception as exc:
        log.exception("sending %s failed", request.webhook_id)
        return internal_error(exc)


def internal_error(exc: Exception) -> Exchange:
    """What stands for the answer when hookline's own code failed sending a request."""
    return Exchange(started_at=now_ms(), error=f"internal error: {exc!r}")


class GuardedResolver(AbstractResolver):
    """Resolves through the SSRF guard: aiohttp connects only to the addresses it answers."""

    def __init__(self, policy: NetworkPolicy, lookup: Lookup = system_lookup) -> None:
        self.policy = policy
        self.lookup = lookup

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        # Every answer is checked, all of them before any is used: one blocked address
        # among good ones is what rebinding looks like (DestinationBlocked, an OSError).
        addresses = await resolve_checked(host, port, self.policy, self.lookup)
        wanted = {socket.AF_INET: 4, socket.AF_INET6: 6}.get(family)
        if wanted is not None:
            addresses = [a for a in addresses if a.version == wanted]
            if not addresses:
                raise OSError(f"{host} has no IPv{wanted} address")
        return [
            {
                "hostname": host,
                "host": str(address),
                "port": port,
                "family": socket.AF_INET if address.version == 4 else socket.AF_INET6,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            }
            for address in addresses
        ]

    async def close(self) -> None:
        return None


class HttpSender(SubmitsInTasks):
    """Sends from this process: one aiohttp session with keep-alive pools per destination.

    ``policy`` is the SSRF guard's (everything private blocked unless allowed); ``lookup``
    resolves names (a stub in tests, so no test needs DNS).
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
        self._session: aiohttp.ClientSession | None = None
        # hookline's own echo service, which the guard does not apply to (own_echo).
        self._own: aiohttp.ClientSession | None = None
        self._literals = LiteralVerdicts(self.policy)
        self._tasks = set()

    def _new_session(self, connector: aiohttp.TCPConnector) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=connector,
            headers={"user-agent": USER_AGENT},
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding",),
        )

    async def start(self) -> None:
        # No DNS cache: every new connection resolves through the guard, so a name that
        # changes its answer is checked again. A keep-alive connection is reused only to
        # the address it was opened to, which was checked then.
        connector = aiohttp.TCPConnector(
            limit=self.max_concurrency,
            limit_per_host=self.max_per_host,
            resolver=GuardedResolver(self.policy, self.lookup),
            use_dns_cache=False,
        )
        self._session = self._new_session(connector)
        if self.policy.own_echo:
            own = aiohttp.TCPConnector(limit=self.max_per_host, limit_per_host=self.max_per_host)
            self._own = self._new_session(own)

    async def close(self) -> None:
        self._cancel_submitted()
        for session in (self._session, self._own):
            if session is not None:
                await session.close()
        self._session = self._own = None

    def _session_for(self, request: Request, url: URL) -> aiohttp.ClientSession:
        """The guarded session, or the own-echo one; DestinationBlocked for a literal host."""
        # Judged on the URL as aiohttp will connect with it: the own-echo session is not
        # guarded, so no other parser's idea of the host may decide it.
        if (
            self._own is not None
            and "/echo-send/" in request.url
            and self.policy.owns_echo(url.scheme, url.raw_host, url.port, url.raw_path)
        ):
            return self._own
        # aiohttp connects to an IP literal without asking the resolver: judge it here.
        self._literals.check(url.raw_host or "")
        assert self._session is not None, "the sender is not started"
        return self._session

    async def exchange(self, request: Request) -> Exchange:
        assert self._session is not None, "the sender is not started"
        sent = signed_headers(request)
        ex = Exchange(started_at=now_ms())
        t0 = time.perf_counter()
        try:
            url = _wire_url(request.url)
            session = self._session_for(request, url)
            async with session.request(
                request.method,
                url,
                data=request.body,
                headers=sent,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=request.timeout),
            ) as resp:
                ex.status_code = resp.status
                ex.headers = text_headers(resp.raw_headers)
                ex.retry_after = parse_retry_after(resp.headers.get("retry-after"), time.time())
                if not 100 <= resp.status < 200:  # a 1xx (101 switches protocols) has no body
                    head, ex.warning = await _read_head(resp)
                    ex.body = head.decode("utf-8", "replace")
        except DestinationBlocked as exc:
            ex.error, ex.final = str(exc), True
        except TimeoutError:
            ex.error = f"timed out after {request.timeout:g} s"
        except aiohttp.InvalidURL as exc:
            ex.error, ex.final = f"invalid request: {exc.__class__.__name__}: {exc}", True
        except aiohttp.ClientError as exc:
            ex.error = describe(exc, request.url)
            blocked = _cause(exc, DestinationBlocked)
            if blocked is not None:  # raised by the resolver, wrapped by aiohttp
                ex.error, ex.final = str(blocked), True
            elif _caused_by(exc, BadStatusLine):
                ex.error = f"the answer is not valid HTTP (bad status line): {exc}"
                ex.final = True
            elif isinstance(exc, aiohttp.ClientResponseError) and _caused_by(exc, BadHttpMessage):
                # A head that does not parse (a header line without a colon, a head too
                # large): another try gets the same answer, and reqwest calls it final too.
                reason = exc.message.splitlines()[0].rstrip(":")
                ex.error, ex.final = f"the answer is not valid HTTP: {reason}", True
        except ValueError as exc:  # a URL or header aiohttp refuses: it always will
            ex.error, ex.final = f"invalid request: {exc}", True
        ex.latency_ms = (time.perf_counter() - t0) * 1000
        return judge_status(keep_headers(ex))


def signed_headers(request: Request) -> dict[str, str]:
    """The request's headers with ``webhook-id``, a fresh ``webhook-timestamp``, and the
    ``webhook-signature`` when the request has keys: signed right before it goes out."""
    sent = dict(request.headers)
    sent["webhook-id"] = request.webhook_id
    timestamp = int(time.time())
    sent["webhook-timestamp"] = str(timestamp)
    if request.signing_keys:
        sent["webhook-signature"] = sign(
            request.signing_keys, request.webhook_id, timestamp, request.body
        )
    return sent


def text_headers(raw: Iterable[tuple[bytes, bytes]]) -> tuple[tuple[str, str], ...]:
    """Response headers as the text an attempt records: every pair, in the order it came.

    Names lower-cased, as reqwest gives them. A value that is not UTF-8 (Latin-1, say) shows
    its bytes as U+FFFD, as the body does. Decoded with surrogates, as aiohttp's own
    ``headers`` are, it could not be stored, and the attempt was sent again forever."""
    return tuple(
        (name.decode("latin-1").lower(), value.decode("utf-8", "replace")) for name, value in raw
    )


def keep_headers(ex: Exchange) -> Exchange:
    """Keep the answer's headers up to MAX_RESPONSE_HEADERS, in whole headers, as the body
    is kept up to 4 KiB: what was left out is said in ``warning``."""
    size = 0
    for kept, (name, value) in enumerate(ex.headers):
        size += len(name) + len(value)
        if size > MAX_RESPONSE_HEADERS:
            note = (
                f"the response headers were cut off after {kept} of {len(ex.headers)} "
                f"(the first {MAX_RESPONSE_HEADERS // 1024} KiB are kept)"
            )
            ex.headers = ex.headers[:kept]
            ex.warning = f"{ex.warning}; {note}" if ex.warning else note
            break
    return ex


def judge_status(ex: Exchange) -> Exchange:
    """Name the error of an answer that is not a success (every sender words it alike)."""
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


def local_sender(
    kind: str,
    max_concurrency: int,
    max_per_host: int,
    policy: NetworkPolicy,
    lookup: Lookup = system_lookup,
) -> Sender:
    """The sender that sends from this process with the client ``kind`` names (a setting)."""
    if kind == "aiohttp":
        return HttpSender(max_concurrency, max_per_host, policy, lookup)
    # Imported here: the reqwest sender builds on this module's contract.
    from hookline.sender_reqwest import ReqwestSender

    return ReqwestSender(max_concurrency, max_per_host, policy, lookup)


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``kind`` is in the chain of causes (aiohttp wraps its parser's errors)."""
    return _cause(exc, kind) is not None


def _cause(exc: BaseException, kind: type[_E]) -> _E | None:
    """The first exception of ``kind`` in the chain of causes, if any."""
    seen: BaseException | None = exc
    for _ in range(8):  # a chain is short; a cycle must not loop
        if seen is None:
            return None
        if isinstance(seen, kind):
            return seen
        seen = seen.__cause__
    return None


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
