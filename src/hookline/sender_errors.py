"""Short, plain words for what went wrong on the wire, as an attempt records them.

aiohttp's own messages name its internals (``Cannot connect to host 127.0.0.1:18099
ssl:default [Connect call failed ...]``); an attempt says ``cannot connect to
127.0.0.1:18099: connection refused``.
"""

from __future__ import annotations

import errno
import socket
from urllib.parse import urlsplit

import aiohttp

# The socket errors a sender meets, in the words a person would use.
_REASONS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset",
    errno.ETIMEDOUT: "timed out",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.EADDRNOTAVAIL: "address not available",
    errno.EPIPE: "connection closed while sending",
}
MAX_LENGTH = 300


def describe(exc: BaseException, url: str) -> str:
    """What failed and where, in one short line."""
    return _describe(exc, url)[:MAX_LENGTH]


def _describe(exc: BaseException, url: str) -> str:
    where = _host_port(url)
    if isinstance(exc, aiohttp.ClientConnectorError):
        where = f"{exc.host}:{exc.port}"
        if isinstance(exc, aiohttp.ClientConnectorDNSError) or isinstance(
            exc.os_error, socket.gaierror
        ):
            return f"cannot resolve host {exc.host}: {_reason(exc.os_error)}"
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            return f"TLS certificate of {where} not accepted: {exc.certificate_error}"
        if isinstance(exc, aiohttp.ClientSSLError):
            return f"TLS error with {where}: {_reason(exc.os_error)}"
        return f"cannot connect to {where}: {_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return f"{where} closed the connection without an answer"
    if isinstance(exc, ConnectionResetError) or (
        isinstance(exc, OSError) and exc.errno == errno.ECONNRESET
    ):
        return f"connection reset by {where}"
    if isinstance(exc, aiohttp.ClientOSError):
        return f"connection to {where} failed: {_reason(exc)}"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"the answer from {where} broke off: {_first_line(exc)}"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"invalid answer from {where}: {exc.message}"
    if isinstance(exc, aiohttp.InvalidURL):
        return f"invalid URL: {exc}"
    return f"{exc.__class__.__name__}: {_first_line(exc)}"


def _reason(error: OSError) -> str:
    if error.errno in _REASONS:
        return _REASONS[error.errno]
    text = error.strerror or str(error) or error.__class__.__name__
    return text[:1].lower() + text[1:]


def _host_port(url: str) -> str:
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return "the destination"
    return f"{parts.hostname}:{port}"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
