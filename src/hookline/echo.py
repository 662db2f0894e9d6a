"""The echo service: integrators point a webhook at it and read back what arrived."""

from __future__ import annotations

import html
import re
from typing import Any, Final

import orjson

from hookline.errors import BadRequest
from hookline.events import now_ms
from hookline.ids import new_id
from hookline.store.base import EchoRecord, Store

SECRET: Final = re.compile(r"[A-Za-z0-9_\-]{8,128}")


def check_secret(secret: str) -> str:
    """A secret is 8-128 characters of ``A-Za-z0-9_-``; anything else is refused."""
    if not SECRET.fullmatch(secret):
        raise BadRequest(
            "the echo secret must be 8-128 characters of letters, digits, '_' or '-'",
            field="secret",
        )
    return secret


def check_status(raw: str | None) -> int:
    """The status the echo answers with: 200, or ``?status=NNN`` (200-599)."""
    if raw is None:
        return 200
    # isdigit alone also accepts non-ASCII digits ('٣', '²') that int() reads, or refuses.
    if not (raw.isascii() and raw.isdigit() and len(raw) == 3) or not 200 <= int(raw) <= 599:
        raise BadRequest("status must be a number from 200 to 599", field="status")
    return int(raw)


class Echo:
    """Records requests per secret and keeps the newest ``keep`` of each."""

    def __init__(self, store: Store, keep: int) -> None:
        self.store = store
        self.keep = keep

    async def record(
        self,
        secret: str,
        method: str,
        path: str,
        query: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> EchoRecord:
        record = EchoRecord(
            id=new_id("echo"),
            secret=secret,
            received_at=now_ms(),
            method=method,
            path=path,
            query=query,
            headers=tuple(headers),
            body=body,
        )
        await self.store.echo_record(record, self.keep)
        return record

    async def list(self, secret: str) -> list[dict[str, Any]]:
        return [as_dict(r) for r in await self.store.echo_list(secret, self.keep)]

    async def clear(self, secret: str) -> int:
        return await self.store.echo_clear(secret)


def as_dict(record: EchoRecord) -> dict[str, Any]:
    """The JSON view of one recorded request; ``json`` is the parsed body or null."""
    text = record.body.decode("utf-8", "replace")
    parsed: Any = None
    error: str | None = None
    if record.body.strip():
        try:
            parsed = orjson.loads(record.body)
        except orjson.JSONDecodeError as exc:
            error = str(exc)
    else:
        error = "empty body"
    return {
        "id": record.id,
        "received_at": record.received_at,
        "method": record.method,
        "path": record.path,
        "query": record.query,
        "headers": dict(record.headers),
        "body": text,
        "json": parsed,
        "json_error": error,
    }


def render_html(secret: str, requests: list[dict[str, Any]]) -> str:
    """A readable page for a browser: newest first, JSON bodies pretty-printed."""
    items = []
    for r in requests:
        if r["json"] is not None:
            body = orjson.dumps(r["json"], option=orjson.OPT_INDENT_2).decode()
        else:
            body = r["body"]
        headers = "\n".join(f"{k}: {v}" for k, v in r["headers"].items())
        query = f"?{r['query']}" if r["query"] else ""
        items.append(
            "<article>"
            f"<h2><code>{html.escape(r['method'])} {html.escape(r['path'] + query)}</code>"
            f' <small data-ms="{r["received_at"]}">{r["id"]}</small></h2>'
            f"<details><summary>headers</summary><pre>{html.escape(headers)}</pre></details>"
            f"<pre class=body>{html.escape(body)}</pre>"
            "</article>"
        )
    empty = f"<p>No requests yet. Send one to <code>/echo-send/{html.escape(secret)}/</code>.</p>"
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>echo {html.escape(secret)} - hookline</title>"
        "<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:960px}"
        "pre{background:#f5f5f5;padding:.8em;overflow:auto}article{border-top:1px solid #ddd}"
        "small{color:#777;font-weight:normal}</style></head><body>"
        f"<h1>Echo <code>{html.escape(secret)}</code></h1>"
        f"<p>{len(requests)} request(s), newest first.</p>"
        + ("".join(items) if items else empty)
        + "<script>for(const e of document.querySelectorAll('[data-ms]'))"
        "e.title=new Date(+e.dataset.ms).toISOString()</script>"
        "</body></html>"
    )
