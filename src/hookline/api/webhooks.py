"""/api/v1/webhooks: saved webhooks, plus preview (render only) and test (send once)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Response

from hookline.api._etag import IfMatch, precondition, versioned
from hookline.api._json import JSON, JSONRoute
from hookline.api.auth import KeyDep
from hookline.api.brands import may_own, only_visible, require_visible
from hookline.api.deps import RuntimeDep
from hookline.api.models import PreviewIn, WebhookIn
from hookline.errors import Conflict, InvalidInput, NotFound
from hookline.events import Event, now_ms
from hookline.ids import new_id
from hookline.keys import ApiKey, brand_text
from hookline.rules import SavedWebhook
from hookline.runtime import Runtime
from hookline.sender import Request
from hookline.state import with_identity
from hookline.webhooks import CompiledWebhook, RenderedRequest, WebhookSpec, compile_webhook

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"], route_class=JSONRoute)


def _spec(body: Any) -> WebhookSpec:
    fields = body.model_dump(exclude={"name", "ext_brand_id"}, exclude_none=True)
    return WebhookSpec.from_dict(fields)


def _owned(key: ApiKey, webhook_id: str) -> Callable[[SavedWebhook], None]:
    """Another brand's saved webhook is, for a brand-scoped key, one that does not exist."""

    def check(current: SavedWebhook) -> None:
        require_visible(key, current.ext_brand_id, f"no webhook {webhook_id!r}", "webhook_id")

    return check


async def _get(runtime: Runtime, key: ApiKey, webhook_id: str) -> SavedWebhook:
    saved = await runtime.store.get_webhook(webhook_id)
    if saved is None:
        raise NotFound(f"no webhook {webhook_id!r}", field="webhook_id")
    _owned(key, webhook_id)(saved)
    return saved


@router.post("", status_code=201, summary="Save a webhook that rules can reference")
async def create_webhook(body: WebhookIn, runtime: RuntimeDep, key: KeyDep) -> JSON:
    now = now_ms()
    brand = brand_text(body.ext_brand_id)
    may_own(key, brand)
    saved = SavedWebhook(new_id("wh"), body.name, _spec(body), now, now, ext_brand_id=brand)
    saved = await runtime.catalog.create_webhook(saved)
    return versioned(saved.as_dict(), saved.version, status_code=201)


@router.get("", summary="List saved webhooks")
async def list_webhooks(runtime: RuntimeDep, key: KeyDep) -> JSON:
    webhooks = only_visible(key, await runtime.store.list_webhooks(), lambda w: w.ext_brand_id)
    return JSON({"data": [w.as_dict() for w in webhooks]})


@router.get("/{webhook_id}", summary="Get a saved webhook")
async def get_webhook(webhook_id: str, runtime: RuntimeDep, key: KeyDep) -> JSON:
    saved = await _get(runtime, key, webhook_id)
    return versioned(saved.as_dict(), saved.version)


@router.put("/{webhook_id}", summary="Replace a saved webhook (rules using it follow)")
async def replace_webhook(
    webhook_id: str, body: WebhookIn, runtime: RuntimeDep, key: KeyDep, if_match: IfMatch = None
) -> JSON:
    when = precondition(if_match)
    spec = _spec(body)
    brand = brand_text(body.ext_brand_id)
    may_own(key, brand)
    owned = _owned(key, webhook_id)

    def change(current: SavedWebhook) -> SavedWebhook:
        owned(current)
        later = max(now_ms(), current.updated_at + 1)
        return replace(current, name=body.name, spec=spec, updated_at=later, ext_brand_id=brand)

    saved = await runtime.catalog.change_webhook(webhook_id, change, when)
    return versioned(saved.as_dict(), saved.version)


@router.delete(
    "/{webhook_id}", status_code=204, summary="Delete a saved webhook (409 while rules use it)"
)
async def delete_webhook(
    webhook_id: str, runtime: RuntimeDep, key: KeyDep, if_match: IfMatch = None
) -> Response:
    await runtime.catalog.delete_webhook(
        webhook_id, precondition(if_match), _owned(key, webhook_id)
    )
    return Response(status_code=204)


async def _render(
    body: PreviewIn, runtime: Runtime, key: ApiKey
) -> tuple[CompiledWebhook, RenderedRequest]:
    if (body.webhook is None) == (body.webhook_id is None):
        raise InvalidInput("give either 'webhook' (inline) or 'webhook_id'", field="webhook")
    if body.webhook is not None:
        compiled = compile_webhook(_spec(body.webhook), field="webhook")
    else:
        assert body.webhook_id is not None
        saved = await _get(runtime, key, body.webhook_id)
        if saved.problem is not None:
            raise Conflict(saved.problem, field="webhook_id")
        compiled = compile_webhook(saved.spec)
    sample = body.event
    now = now_ms()
    event = Event(
        id="evt_preview",
        eid=sample.eid,
        event_type=sample.event_type,
        user_ext_id=sample.user_ext_id,
        ext_brand_id=sample.ext_brand_id,
        event_date=sample.event_date or now,
        payload=sample.payload,
        received_at=now,
    )
    state = with_identity(dict(body.state), sample.user_ext_id, sample.ext_brand_id)
    return compiled, compiled.render({"event": event.template_scope(), "state": state})


@router.post("/preview", summary="Render the exact request for a sample event, without sending")
async def preview(body: PreviewIn, runtime: RuntimeDep, key: KeyDep) -> JSON:
    compiled, request = await _render(body, runtime, key)
    timeout = compiled.spec.timeout or runtime.settings.default_timeout
    return JSON({**request.as_dict(), "timeout": timeout})


@router.post("/test", summary="Render and send once; answers with the receiver's response")
async def test(body: PreviewIn, runtime: RuntimeDep, key: KeyDep) -> JSON:
    compiled, request = await _render(body, runtime, key)
    timeout = compiled.spec.timeout or runtime.settings.default_timeout
    exchange = await runtime.dispatcher.send_once(
        Request(request.method, request.url, request.headers, request.body, timeout, new_id("dlv"))
    )
    return JSON({"request": request.as_dict(), "response": exchange.as_dict()})
