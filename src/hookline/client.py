"""A small blocking HTTP client for the command line (stdlib only)."""

from __future__ import annotations

import os
import urllib.error
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
        super().__init__(f"HTTP {status}: {detail}{where}")


class Client:
    def __init__(self, base_url: str, timeout: float = 30.0, key: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        # Every command sends HOOKLINE_API_KEY unless given a key; none: the server may be open.
        self.key = key or os.environ.get("HOOKLINE_API_KEY") or None

    def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> Any:
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
            raise ApiError(0, f"cannot reach {self.base_url}: {exc.reason}") from None
        return orjson.loads(payload) if payload else None
