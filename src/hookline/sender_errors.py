"""Short, plain words for what went wrong on the wire, as an attempt records them.

aiohttp's own messages name its internals (``Cannot connect to host 127.0.0.1:18099
ssl:default [Connect call failed ...]``), and reqwest's a chain of causes (``error sending
request for url ... / client error (Connect) / tcp connect error / Connection refused (os
error 111)``); an attempt says ``cannot connect to 127.0.0.1:18099: connection refused``
whichever client sent it.
"""

from __future__ import annotations

import errno
import re
import socket
from urllib.parse import urlsplit

import aiohttp
from pyreqwest import exceptions as rq

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


# Parts of hyper's parse errors: the answer was not HTTP, and another try gets the same.
_NOT_HTTP = ("invalid HTTP", "message head is too large", "invalid URI")
_BAD_STATUS = ("invalid HTTP status-code parsed", "invalid HTTP version parsed")
_OS_ERROR = re.compile(r"os error (\d+)")


def describe_reqwest(exc: rq.PyreqwestError, url: str) -> str:
    """What failed and where, in one short line, for an error of reqwest."""
    return _describe_reqwest(exc, url)[:MAX_LENGTH]


def _describe_reqwest(exc: rq.PyreqwestError, url: str) -> str:
    where = _host_port(url)
    causes = [c["message"] for c in (getattr(exc, "details", None) or {}).get("causes") or []]
    last = causes[-1] if causes else exc.message
    found = _OS_ERROR.search(last)
    code = int(found.group(1)) if found else None
    reason = _REASONS.get(code, _OS_ERROR.sub("", last).strip(" ()")) if code else last
    reason = reason[:1].lower() + reason[1:]
    if any(part in c for c in causes for part in _BAD_STATUS):
        return f"the answer is not valid HTTP (bad status line): {last}"
    if any(part in c for c in causes for part in _NOT_HTTP):
        return f"the answer is not valid HTTP: {last}"
    # reqwest counts a connection lost before the answer as a connect error: these first.
    if any("connection closed before message completed" in c for c in causes):
        return f"{where} closed the connection without an answer"
    if code == errno.ECONNRESET:
        return f"connection reset by {where}"
    if isinstance(exc, rq.ConnectError):
        return f"cannot connect to {where}: {reason}"
    if isinstance(exc, rq.ReadError | rq.DecodeError):
        return f"the answer from {where} broke off: {reason}"
    if isinstance(exc, rq.BuilderError):
        return refused_request(last)
    if isinstance(exc, rq.NetworkError):
        return f"connection to {where} failed: {reason}"
    return f"{exc.__class__.__name__}: {reason}"


def refused_request(reason: str) -> str:
    """Why reqwest would not build a request, in words that print no control character."""
    if reason.startswith("Invalid header value"):
        # reqwest's own words repeat the value, control character and all.
        return "a header value holds a control character, which HTTP does not allow"
    return reason
