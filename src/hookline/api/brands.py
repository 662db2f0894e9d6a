"""What a brand-scoped key may see and change: the one check every route uses.

A key with brands sees only data of those brands: deliveries, events, user state, rules,
saved webhooks and journeys (with their instances, stats and chain cuts). Data of another
brand, or of none, is not there for it: a list leaves it out, a read of it is 404 as for an
id that does not exist (a 403 would tell that the id is taken), and so is a write to it. A
key without brands (and ``OPEN``, hookline without keys) sees everything.

Creating or changing an object names the brand it will belong to: a brand-scoped admin
may only give it one of its own brands (403 otherwise); an object of no brand applies to
every brand, so only a key without brands may make one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Any, TypeVar

from fastapi import Query
from pydantic import AfterValidator

from hookline.brands import brand_text, check_brand
from hookline.errors import Forbidden, InvalidInput, NotFound
from hookline.keys import ApiKey

T = TypeVar("T")


def checked_brand(value: T) -> T:
    """:func:`hookline.brands.check_brand` for pydantic, which wants a ValueError."""
    try:
        check_brand(value)
    except InvalidInput as exc:
        raise ValueError(exc.detail) from None
    return value


# The brand of the user a route names (absent: the user of no brand; "" is refused).
BrandQuery = Annotated[
    str | None,
    AfterValidator(checked_brand),
    Query(
        description="The user's brand: a user is (ext_brand_id, user_ext_id). "
        "Absent: the user of no brand.",
    ),
]


def visible(key: ApiKey, brand: Any) -> bool:
    """Whether data of ``brand`` (None: of no brand) is there for ``key``."""
    return key.sees(brand)


def require_visible(key: ApiKey, brand: Any, missing: str, field: str) -> None:
    """NotFound (``missing`` as its detail, the same as for an absent id) unless visible."""
    if not key.sees(brand):
        raise NotFound(missing, field=field)


def only_visible(key: ApiKey, items: Iterable[T], brand_of: Callable[[T], Any]) -> list[T]:
    """The items whose brand ``key`` sees, in order."""
    if key.all_brands:
        return list(items)
    return [item for item in items if key.sees(brand_of(item))]


def brand_filter(key: ApiKey) -> tuple[str, ...] | None:
    """The brands a store query keeps for ``key``; None keeps everything."""
    return None if key.all_brands else key.brands


def may_own(key: ApiKey, brand: Any, field: str = "ext_brand_id") -> None:
    """Forbidden unless ``key`` may make or change an object of ``brand`` (None: every brand)."""
    if key.all_brands:
        return
    if brand is None:
        raise Forbidden(
            f"this key is limited to brands ({', '.join(key.brands)}): give ext_brand_id, "
            "one of them; an object of no brand applies to every brand, and only a key "
            "without brands may make one",
            field=field,
        )
    if not key.sees(brand):
        raise Forbidden(
            f"this key may only make objects of its brands ({', '.join(key.brands)}), "
            f"not of {brand_text(brand)!r}",
            field=field,
        )
