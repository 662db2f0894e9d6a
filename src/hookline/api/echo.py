"""The echo service routes: /echo-send/<secret>/ records, /echo-list/<secret>/ shows."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from hookline.api._json import JSON, read_body
from hookline.api.auth import without_api_key
from hookline.api.deps import RuntimeDep
from hookline.api.models import EchoAck, EchoCleared, EchoList
from hookline.echo import check_secret, check_status, render_html

router = APIRouter(tags=["echo"])

_ANY = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


async def echo_send(secret: str, request: Request, runtime: RuntimeDep) -> Response:
    check_secret(secret)
    status = check_status(request.query_params.get("status"))
    body = await read_body(request, runtime.settings.echo_max_body_bytes)
    record = await runtime.echo.record(
        secret,
        request.method,
        request.url.path,
        request.url.query,
        [
            (k, without_api_key(v) if k == "authorization" else v)
            for k, v in request.headers.items()
        ],
        body,
    )
    return JSON({"ok": 200 <= status < 300, "id": record.id, "secret": secret}, status_code=status)


# One route per method keeps operation ids unique in the OpenAPI document.
for _method in _ANY:
    for _path in ("/echo-send/{secret}/", "/echo-send/{secret}"):
        router.add_api_route(
            _path,
            echo_send,
            methods=[_method],
            name=f"echo_send_{_method.lower()}",
            summary=f"Record a {_method} request; ?status=NNN answers with that status",
            include_in_schema=_path.endswith("/") and _method in ("GET", "POST"),
            response_model=EchoAck,
        )


@router.get(
    "/echo-list/{secret}/",
    summary="The last 100 requests for a secret, newest first (a page for a browser)",
    response_model=EchoList,
    responses={200: {"content": {"text/html": {}}}},
)
@router.get("/echo-list/{secret}", include_in_schema=False)
async def echo_list(secret: str, request: Request, runtime: RuntimeDep) -> Response:
    check_secret(secret)
    requests = await runtime.echo.list(secret)
    accept = request.headers.get("accept", "")
    if "text/html" in accept and "application/json" not in accept:
        return HTMLResponse(render_html(secret, requests))
    return JSON({"secret": secret, "requests": requests})


@router.delete(
    "/echo-list/{secret}/", summary="Forget every request of a secret", response_model=EchoCleared
)
@router.delete("/echo-list/{secret}", include_in_schema=False)
async def echo_clear(secret: str, runtime: RuntimeDep) -> JSON:
    check_secret(secret)
    return JSON({"secret": secret, "deleted": await runtime.echo.clear(secret)})
