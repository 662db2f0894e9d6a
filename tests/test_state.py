from __future__ import annotations

import pytest

from hookline.errors import InvalidInput
from hookline.state import apply_update, check_patch, merge_patch


def test_merge_patch_rfc7396() -> None:
    target = {"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2]}
    patch = {"a": None, "b": {"c": None, "x": 9}, "e": [3], "f": "new"}
    assert merge_patch(target, patch) == {"b": {"d": 3, "x": 9}, "e": [3], "f": "new"}
    assert target == {"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2]}  # not mutated


def test_identity_is_owned_by_hookline() -> None:
    state = apply_update({}, {"user_ext_id": "other", "ext_brand_id": "b2", "x": 1}, "u-1", "b1")
    assert state == {"user_ext_id": "u-1", "ext_brand_id": "b1", "x": 1}
    kept = apply_update(state, {"y": 2}, "u-1", None)
    assert kept["ext_brand_id"] == "b1"


def test_patch_must_be_object() -> None:
    with pytest.raises(InvalidInput):
        check_patch([1, 2])
