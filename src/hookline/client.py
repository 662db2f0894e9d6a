"""A small blocking HTTP client for the command line (stdlib only)."""

from __future__ import annotations

import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import orjson


class ApiError(Exception):
    """The server answered with an error (or could not be reached)."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        detail = body.get("detail") if isinstance(body, dict) else body
        field = body.get("field") if isinstance(body, dict) else None
        where = f" [{field}]" if field else ""
        # Status 0 means no answer at all: "HTTP 0" would read as if the server had said 0.
        super().__init__(f"HTTP {status}: {detail}{where}" if status else f"{detail}{where}")


class Client:
    def __init__(self, base_url: str, timeout: float = 30.0, key: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        # Every command sends HOOKLINE_API_KEY unless given a key; none: the server may be open.
        self.key = key or os.environ.get("HOOKLINE_API_KEY") or None

    def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> Any:
        _check_base_url(self.base_url)
        data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None:
            req.add_header("content-type", "application/json")
        req.add_header("accept", "application/json")
        if self.key:
            req.add_header("authorization", f"Bearer {self.key}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            try:
                parsed = orjson.loads(payload)
            except orjson.JSONDecodeError:
                parsed = payload.decode("utf-8", "replace")
            raise ApiError(exc.code, parsed) from None
        except urllib.error.URLError as exc:
            raise ApiError(0, _unreachable(self.base_url, exc.reason)) from None
        return orjson.loads(payload) if payload else None


def _check_base_url(base_url: str) -> None:
    """Refuse a server URL urllib would trip on (``127.0.0.1:8080`` reads as a scheme)."""
    try:
        parts = urllib.parse.urlsplit(base_url)
        # .port raises ValueError on a port that is not a number or beyond 65535.
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:
        ok = False
    if not ok:
        raise ApiError(
            0,
            "the server URL (--url or HOOKLINE_URL) must be http:// or https:// and a host, "
            f"such as http://127.0.0.1:8080; got {base_url!r}",
        )


def _unreachable(base_url: str, reason: object) -> str:
    """The same words a failed delivery attempt uses (``cannot connect to 127.0.0.1:18099:
    connection refused``), not urllib's ``<urlopen error [Errno 111] ...>``."""
    try:
        parts = urllib.parse.urlsplit(base_url)
        where = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
    except ValueError:
        where = base_url
    text = reason.strerror if isinstance(reason, OSError) and reason.strerror else str(reason)
    return f"cannot connect to {where}: {text[:1].lower() + text[1:]}"
