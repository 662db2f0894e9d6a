"""/api/v1/webhooks: saved webhooks, plus preview (render only) and test (send once).

Secret header values are shown as ``***``; the ``signing_secret`` is shown to admins (see
:func:`hookline.redaction.show_secrets`). A URL whose host is a literal address the SSRF
guard blocks is refused (422), for saved webhooks and for previews and test sends alike.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Response

from hookline.api._etag import IfMatch, precondition, versioned
from hookline.api._json import JSON
from hookline.api.deps import RuntimeDep
from hookline.api.models import PreviewIn, WebhookIn
from hookline.errors import InvalidInput, NotFound
from hookline.events import Event, now_ms
from hookline.ids import new_id
from hookline.netguard import check_literal_url
from hookline.redaction import show_secrets
from hookline.rules import SavedWebhook
from hookline.runtime import Runtime
from hookline.sender import Request
from hookline.state import with_identity
from hookline.webhooks import CompiledWebhook, RenderedRequest, WebhookSpec, compile_webhook

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])


def _spec(body: Any) -> WebhookSpec:
    return WebhookSpec.from_dict(body.model_dump(exclude={"name"}, exclude_none=True))


def shown(saved: SavedWebhook, *, admin: bool = True) -> dict[str, Any]:
    """A saved webhook as answers show it; ``admin`` sees the signing secret (all, for now)."""
    answer: dict[str, Any] = show_secrets(saved.as_dict(), admin=admin)
    return answer


async def _get(runtime: Runtime, webhook_id: str) -> SavedWebhook:
    saved = await runtime.store.get_webhook(webhook_id)
    if saved is None:
        raise NotFound(f"no webhook {webhook_id!r}", field="webhook_id")
    return saved


@router.post("", status_code=201, summary="Save a webhook that rules can reference")
async def create_webhook(body: WebhookIn, runtime: RuntimeDep) -> JSON:
    now = now_ms()
    saved = SavedWebhook(new_id("wh"), body.name, _spec(body), now, now)
    saved = await runtime.catalog.create_webhook(saved)
    return versioned(shown(saved), saved.version, status_code=201)


@router.get("", summary="List saved webhooks")
async def list_webhooks(runtime: RuntimeDep) -> JSON:
    return JSON({"data": [shown(w) for w in await runtime.store.list_webhooks()]})


@router.get("/{webhook_id}", summary="Get a saved webhook")
async def get_webhook(webhook_id: str, runtime: RuntimeDep) -> JSON:
    saved = await _get(runtime, webhook_id)
    return versioned(shown(saved), saved.version)


@router.put("/{webhook_id}", summary="Replace a saved webhook (rules using it follow)")
async def replace_webhook(
    webhook_id: str, body: WebhookIn, runtime: RuntimeDep, if_match: IfMatch = None
) -> JSON:
    when = precondition(if_match)
    spec = _spec(body)

    def change(current: SavedWebhook) -> SavedWebhook:
        later = max(now_ms(), current.updated_at + 1)
        return replace(current, name=body.name, spec=spec, updated_at=later)

    saved = await runtime.catalog.change_webhook(webhook_id, change, when)
    return versioned(shown(saved), saved.version)


@router.post(
    "/{webhook_id}/rotate-secret",
    summary="New signing secret; the old one signs for 24 h more",
)
async def rotate_secret(webhook_id: str, runtime: RuntimeDep, if_match: IfMatch = None) -> JSON:
    """Both secrets sign every request for 24 hours (two signatures, space-separated), so
    the receiver can switch to the new one without refusing a delivery; then only the new.
    """
    saved = await runtime.catalog.rotate_webhook_secret(webhook_id, precondition(if_match))
    return versioned(shown(saved), saved.version)


@router.delete(
    "/{webhook_id}", status_code=204, summary="Delete a saved webhook (409 while rules use it)"
)
async def delete_webhook(
    webhook_id: str, runtime: RuntimeDep, if_match: IfMatch = None
) -> Response:
    await runtime.catalog.delete_webhook(webhook_id, precondition(if_match))
    return Response(status_code=204)


async def _render(body: PreviewIn, runtime: Runtime) -> tuple[CompiledWebhook, RenderedRequest]:
    if (body.webhook is None) == (body.webhook_id is None):
        raise InvalidInput("give either 'webhook' (inline) or 'webhook_id'", field="webhook")
    if body.webhook is not None:
        compiled = compile_webhook(_spec(body.webhook), field="webhook")
        check_literal_url(compiled.spec.url, runtime.catalog.policy, field="webhook.url")
    else:
        assert body.webhook_id is not None
        compiled = compile_webhook((await _get(runtime, body.webhook_id)).spec)
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
async def preview(body: PreviewIn, runtime: RuntimeDep) -> JSON:
    compiled, request = await _render(body, runtime)
    timeout = compiled.spec.timeout or runtime.settings.default_timeout
    return JSON({**request.as_dict(), "timeout": timeout})


@router.post("/test", summary="Render and send once; answers with the receiver's response")
async def test(body: PreviewIn, runtime: RuntimeDep) -> JSON:
    """A saved webhook's test is signed with its secrets; an inline one has none: unsigned."""
    compiled, request = await _render(body, runtime)
    timeout = compiled.spec.timeout or runtime.settings.default_timeout
    keys = runtime.catalog.keyring.keys(body.webhook_id) or ()
    exchange = await runtime.dispatcher.send_once(
        Request(
            request.method,
            request.url,
            request.headers,
            request.body,
            timeout,
            new_id("dlv"),
            keys,
        )
    )
    return JSON({"request": request.as_dict(), "response": exchange.as_dict()})
