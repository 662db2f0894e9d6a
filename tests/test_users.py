"""/api/v1/users/{user_ext_id}/state with the ids platforms really use."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.helpers import Hookline, spin_event

ODD_IDS = ["a/b", "a b", "é", "100%", "..", ".", "a/state", "/lead", "x%2Fy", "用户 7"]


def state_path(user_ext_id: str) -> str:
    # Dots too, so no client or proxy reads an id of '..' as "one level up".
    return f"/api/v1/users/{quote(user_ext_id, safe='').replace('.', '%2E')}/state"


@pytest.mark.parametrize("user_ext_id", ODD_IDS)
async def test_an_id_with_slash_space_percent_dots_or_non_ascii_is_read_and_patched(
    hookline: Hookline, user_ext_id: str
) -> None:
    path = state_path(user_ext_id)
    patched = await hookline.client.patch(path, json={"level": "gold"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["user_ext_id"] == user_ext_id
    # The state the path names is the one events for that user see and change.
    resp = await hookline.post(
        "/api/v1/events",
        {"event_type": "update_profile", "user_ext_id": user_ext_id, "payload": {"n": 1}},
    )
    assert resp.status_code == 202, resp.text
    got = await hookline.client.get(path)
    assert got.status_code == 200, got.text
    state = got.json()
    assert (state["user_ext_id"], state["level"], state["n"]) == (user_ext_id, "gold", 1)


async def test_ids_that_share_a_prefix_stay_apart(hookline: Hookline) -> None:
    for user in ("a", "a/b", "a/b/state"):
        await hookline.client.patch(state_path(user), json={"who": user})
    for user in ("a", "a/b", "a/b/state"):
        assert (await hookline.client.get(state_path(user))).json()["who"] == user


@pytest.mark.parametrize("user_ext_id", ["nobody", "no/body", "nö body"])
async def test_an_unknown_user_is_a_json_404_naming_the_user(
    hookline: Hookline, user_ext_id: str
) -> None:
    await hookline.post("/api/v1/events", spin_event(user="somebody"))
    resp = await hookline.client.get(state_path(user_ext_id))
    assert resp.status_code == 404, resp.text
    body = resp.json()
    assert body["code"] == "not_found" and body["field"] == "user_ext_id"
    assert repr(user_ext_id) in body["detail"]
