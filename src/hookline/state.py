"""User state: a JSON object per user, changed by JSON Merge Patch (RFC 7396)."""

from __future__ import annotations

from typing import Any, TypeAlias

from hookline.errors import InvalidInput
from hookline.values import check_depth

# Always present and owned by hookline: a patch cannot change who the state belongs to.
RESERVED = ("user_ext_id", "ext_brand_id")

# A user is (brand, user_ext_id): the same user_ext_id in two brands is two users. The
# brand is its text (5 and "5" are one brand), and "" stands for "no brand".
UserKey: TypeAlias = tuple[str, str]
NO_BRAND = ""


def user_key(ext_brand_id: Any, user_ext_id: str) -> UserKey:
    """The key of a user's state, journeys and deliveries (see keys.brand_text)."""
    return (NO_BRAND if ext_brand_id is None else str(ext_brand_id), user_ext_id)


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Apply ``patch`` to a copy of ``target``: objects merge, ``null`` removes a key."""
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            current = result.get(key)
            result[key] = merge_patch(current if isinstance(current, dict) else {}, value)
        else:
            result[key] = value
    return result


def apply_update(
    state: dict[str, Any], patch: dict[str, Any], user_ext_id: str, ext_brand_id: Any
) -> dict[str, Any]:
    """The new state after ``patch``, with the reserved keys set by hookline."""
    merged = merge_patch(state, {k: v for k, v in patch.items() if k not in RESERVED})
    return with_identity(merged, user_ext_id, ext_brand_id)


def with_identity(state: dict[str, Any], user_ext_id: str, ext_brand_id: Any) -> dict[str, Any]:
    """``state`` with ``user_ext_id`` and ``ext_brand_id`` filled in (brand kept if unknown)."""
    state["user_ext_id"] = user_ext_id
    if ext_brand_id is not None or "ext_brand_id" not in state:
        state["ext_brand_id"] = ext_brand_id
    return state


def check_patch(patch: Any) -> dict[str, Any]:
    """A state patch must be a JSON object, nested no deeper than any free-form JSON."""
    if not isinstance(patch, dict):
        raise InvalidInput("a state patch must be a JSON object", field="body")
    check_depth(patch, "body")
    return patch
