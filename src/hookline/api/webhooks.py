"""/api/v1/webhooks: saved webhooks, plus preview (render only) and test (send once).

Secret header values are shown as ``***``; the ``signing_secret`` is shown to admins (see
:func:`hookline.redaction.show_secrets`). A URL whose host is a literal address the SSRF
guard blocks is refused (422), for saved webhooks and for previews and test sends alike.
A body may carry the fields only answers set (``id``, ``version``, ...) as read: see
:mod:`hookline.readonly`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Response

from hookline.api._etag import IfMatch, precondition, versioned, write
from hookline.api._json import JSON, JSONRoute
from hookline.api.auth import KeyDep
from hookline.api.brands import may_own, only_visible, require_visible
from hookline.api.deps import RuntimeDep
from hookline.api.models import (
    Preview,
    PreviewIn,
    SampleEvent,
    SavedWebhookOut,
    SavedWebhookSaved,
    SentOnce,
    WebhookIn,
    WebhookList,
)
from hookline.brands import brand_text
from hookline.errors import Conflict, Forbidden, InvalidInput, NotFound
from hookline.events import Event, later_than, now_ms
from hookline.ids import new_id
from hookline.keys import ApiKey, Right
from hookline.readonly import WEBHOOK
from hookline.redaction import show_secrets
from hookline.rules import SavedWebhook
from hookline.runtime import Runtime
from hookline.sender import Request
from hookline.state import with_identity
from hookline.webhooks import CompiledWebhook, RenderedRequest, WebhookSpec, compile_webhook

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"], route_class=JSONRoute)


def _spec(body: Any) -> WebhookSpec:
    fields = body.model_dump(exclude={"name", "ext_brand_id"}, exclude_none=True)
    return WebhookSpec.from_dict(fields)


def shown(saved: SavedWebhook, *, admin: bool) -> dict[str, Any]:
    """A saved webhook as answers show it; the signing secret only when ``admin`` reads it."""
    answer: dict[str, Any] = show_secrets(saved.as_dict(), admin=admin)
    return answer


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


def _saved(saved: SavedWebhook, status_code: int = 200) -> JSON:
    """A save's answer: the webhook, and ``warnings`` about its templates."""
    warnings = compile_webhook(saved.spec).warnings  # saves are rare: compile again
    return versioned({**shown(saved, admin=True), "warnings": warnings}, saved.version, status_code)


@router.post(
    "",
    status_code=201,
    summary="Save a webhook that rules can reference",
    response_model=SavedWebhookSaved,
)
async def create_webhook(body: WebhookIn, runtime: RuntimeDep, key: KeyDep) -> JSON:
    await WEBHOOK.check_new(body.read_only_sent(), runtime.store.get_webhook, key.sees)
    now = now_ms()
    brand = brand_text(body.ext_brand_id)
    may_own(key, brand)
    spec = _spec(body).keeping_secrets(None, "headers")
    saved = SavedWebhook(new_id("wh"), body.name, spec, now, now, ext_brand_id=brand)
    saved = await runtime.catalog.create_webhook(saved)
    return _saved(saved, status_code=201)


@router.get("", summary="List saved webhooks", response_model=WebhookList)
async def list_webhooks(runtime: RuntimeDep, key: KeyDep) -> JSON:
    webhooks = only_visible(key, await runtime.store.list_webhooks(), lambda w: w.ext_brand_id)
    return JSON({"data": [shown(w, admin=key.can(Right.ADMIN)) for w in webhooks]})


@router.get("/{webhook_id}", summary="Get a saved webhook", response_model=SavedWebhookOut)
async def get_webhook(webhook_id: str, runtime: RuntimeDep, key: KeyDep) -> JSON:
    saved = await _get(runtime, key, webhook_id)
    return versioned(shown(saved, admin=key.can(Right.ADMIN)), saved.version)


@router.put(
    "/{webhook_id}",
    summary="Replace a saved webhook (rules using it follow)",
    response_model=SavedWebhookSaved,
)
async def replace_webhook(
    webhook_id: str, body: WebhookIn, runtime: RuntimeDep, key: KeyDep, if_match: IfMatch = None
) -> JSON:
    precondition(if_match)  # a malformed If-Match is answered before anything else
    spec = _spec(body)
    brand = brand_text(body.ext_brand_id)
    may_own(key, brand)

    def edit(current: SavedWebhook) -> SavedWebhook:
        WEBHOOK.check(body.read_only_sent(), current.as_dict(), webhook_id)
        later = later_than(current.updated_at)
        kept = spec.keeping_secrets(current.spec, "headers")  # a GET's *** sent back
        return replace(current, name=body.name, spec=kept, updated_at=later, ext_brand_id=brand)

    owned = _owned(key, webhook_id)
    saved = await write(runtime.catalog.change_webhook, webhook_id, if_match, owned, edit)
    return _saved(saved)


@router.post(
    "/{webhook_id}/rotate-secret",
    summary="New signing secret; the old one signs for 24 h more",
    response_model=SavedWebhookOut,
)
async def rotate_secret(
    webhook_id: str, runtime: RuntimeDep, key: KeyDep, if_match: IfMatch = None
) -> JSON:
    """Both secrets sign every request for 24 hours (two signatures, space-separated), so
    the receiver can switch to the new one without refusing a delivery; then only the new.
    At most 5 replaced secrets sign at once: a sixth rotation within 24 hours is a 409.
    """
    catalog = runtime.catalog
    owned = _owned(key, webhook_id)  # another brand's is not there for this key
    saved = await write(
        catalog.change_webhook, webhook_id, if_match, owned, catalog.rotate_webhook_secret
    )
    return versioned(shown(saved, admin=True), saved.version)


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


def _sample_brand(key: ApiKey, sample: SampleEvent, serves: str | None) -> SampleEvent:
    """The sample event, of the brand the webhook or rule serves when it names none.

    Then checked as a real event would be: a brand-scoped key renders events of its brands
    only (403, as posting one), and a webhook or rule of a brand is never sent for an event
    of another (409: no real event could make that request).
    """
    if sample.ext_brand_id is None and serves is not None:
        sample = sample.model_copy(update={"ext_brand_id": serves})
    if not key.sees(sample.ext_brand_id):
        brand = "no ext_brand_id" if sample.ext_brand_id is None else repr(sample.ext_brand_id)
        raise Forbidden(
            f"this key may render events of its brands only ({', '.join(key.brands)}), "
            f"and this sample event has {brand}",
            field="event.ext_brand_id",
        )
    if serves is not None and brand_text(sample.ext_brand_id) != serves:
        raise Conflict(
            f"this webhook is sent for events of brand {serves!r} only, and the sample event "
            f"is of brand {brand_text(sample.ext_brand_id)!r}: give it ext_brand_id {serves!r}",
            field="event.ext_brand_id",
        )
    return sample


async def _render(
    body: PreviewIn, runtime: Runtime, key: ApiKey
) -> tuple[CompiledWebhook, RenderedRequest]:
    given = [name for name in ("webhook", "webhook_id", "rule_id") if getattr(body, name)]
    if len(given) != 1:
        raise InvalidInput(
            "give one of 'webhook' (inline), 'webhook_id' (saved) or 'rule_id' (a rule's webhook)",
            field=given[1] if given else "webhook",
        )
    # Found (404 if another brand's) before the sample is judged, as the real routes do.
    if body.webhook is not None:
        sample = _sample_brand(key, body.event, None)
        compiled = compile_webhook(_spec(body.webhook), field="webhook")
        runtime.catalog.check_url(compiled.spec.url, "webhook.url")
    elif body.webhook_id is not None:
        saved = await _get(runtime, key, body.webhook_id)
        sample = _sample_brand(key, body.event, brand_text(saved.ext_brand_id))
        if saved.problem is not None:
            raise Conflict(saved.problem, field="webhook_id")
        compiled = compile_webhook(saved.spec)
    else:
        assert body.rule_id is not None
        rule = await runtime.store.get_rule(body.rule_id)
        missing = f"no rule {body.rule_id!r}"
        if rule is None:
            raise NotFound(missing, field="rule_id")
        require_visible(key, rule.ext_brand_id, missing, "rule_id")
        sample = _sample_brand(key, body.event, rule.ext_brand_id)
        # Its webhook as a save compiles it: inline, or the saved one it names.
        compiled = (await runtime.catalog.check_rule(rule))[0].webhook
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


@router.post(
    "/preview",
    summary="Render the exact request for a sample event, without sending",
    response_model=Preview,
)
async def preview(body: PreviewIn, runtime: RuntimeDep, key: KeyDep) -> JSON:
    compiled, request = await _render(body, runtime, key)
    timeout = compiled.spec.timeout or runtime.settings.default_timeout
    return JSON({**request.as_dict(), "timeout": timeout, "warnings": compiled.warnings})


@router.post(
    "/test",
    summary="Render and send once; answers with the receiver's response",
    response_model=SentOnce,
)
async def test(body: PreviewIn, runtime: RuntimeDep, key: KeyDep) -> JSON:
    """A saved webhook's test is signed with its secrets; an inline one has none: unsigned."""
    compiled, request = await _render(body, runtime, key)
    timeout = compiled.spec.timeout or runtime.settings.default_timeout
    signer = body.webhook_id
    if body.rule_id is not None:  # a rule signs with its saved webhook's secrets, or its own
        rule = await runtime.store.get_rule(body.rule_id)
        signer = (rule.webhook_id or rule.id) if rule is not None else None
    keys = runtime.catalog.keyring.keys(signer) or ()
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
    return JSON(
        {
            "request": request.as_dict(),
            "response": exchange.as_dict(compiled.spec.secret_headers),
            "warnings": compiled.warnings,
        }
    )
