"""Brands: what an ``ext_brand_id`` may be, and which saved webhooks an object of a brand may use.

A brand is a string or an integer compared as text (``5`` is ``"5"``); absent (``null``) is
"no brand". The empty string is neither: it is refused wherever a brand enters hookline
(events, state routes, rules, webhooks, journeys, keys, previews), by :func:`check_brand`,
so that "" can never be one brand in one place and "no brand" in another.

A rule or journey of brand B may use a saved webhook of brand B or of no brand; one of no
brand (it runs for every brand) only a webhook of no brand: :func:`check_webhook_use`,
the one check for every object that names a ``webhook_id``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from hookline.errors import Conflict, InvalidInput

if TYPE_CHECKING:
    from hookline.rules import SavedWebhook

# As a user_ext_id: a brand is part of a user's key.
MAX_BRAND_LENGTH: Final = 256


def brand_text(brand: Any) -> str | None:
    """Brands compare as text: an event's ``ext_brand_id`` may be 5 or "5"."""
    return None if brand is None else str(brand)


def check_brand(value: Any, field: str = "ext_brand_id") -> str | int | None:
    """``value`` if it is a brand (None: no brand); InvalidInput naming ``field`` otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidInput("ext_brand_id is a string or an integer", field=field)
    text = str(value)
    if not text:
        raise InvalidInput(
            'ext_brand_id is "": give a brand, or leave ext_brand_id out (null) for no brand',
            field=field,
        )
    if len(text) > MAX_BRAND_LENGTH:
        raise InvalidInput(
            f"ext_brand_id is 1-{MAX_BRAND_LENGTH} characters, not {len(text)}", field=field
        )
    return value


def check_webhook_use(
    kind: str, name: str, brand: Any, webhook: SavedWebhook, field: str = "ext_brand_id"
) -> None:
    """Conflict unless the ``kind`` (rule, journey) ``name`` of ``brand`` may use ``webhook``.

    A webhook of one brand carries that brand's credentials and signing secret: it serves
    objects of that brand only. An object of no brand runs for every brand, so it may use
    only a webhook of no brand.
    """
    own = brand_text(webhook.ext_brand_id)
    if own is None or brand_text(brand) == own:
        return
    runs_for = "every brand" if brand is None else f"brand {brand_text(brand)!r}"
    raise Conflict(
        f"the saved webhook {webhook.id!r} belongs to brand {own!r} and {kind} {name!r} runs "
        f"for {runs_for}: give them the same ext_brand_id",
        field=field,
    )
