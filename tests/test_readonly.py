"""Read-edit-write: an answer sent back whole (PUT) or in part (PATCH) is taken as it is.

The fields only answers carry (id, times, versions, signing secrets) are ignored when they
come back as read, and refused naming the field when they come back changed.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from hookline.api.models import RuleIn, RulePatch
from hookline.errors import Conflict, InvalidInput
from hookline.keys import Role
from hookline.readonly import JOURNEY, RULE, WEBHOOK, Branded
from tests.helpers import Hookline, Receiver, example_journey, example_rule
from tests.test_api_errors import assert_error

SECRET = "whsec_" + "A" * 32  # the shape of a signing secret, never one hookline made
PATHS = {"rules": RULE.path, "webhooks": WEBHOOK.path, "journeys": JOURNEY.path}


# --- the one list, and the check ----------------------------------------------------------


def test_strip_leaves_out_the_read_only_fields_nested_ones_too() -> None:
    answer: dict[str, Any] = {
        "id": "rule_1",
        "name": "n",
        "version": 3,
        "warnings": [],
        "activity": {"url": "u", "signing_secret": SECRET},
    }
    assert RULE.strip(answer) == {"name": "n", "activity": {"url": "u"}}
    assert answer["activity"]["signing_secret"] == SECRET  # the answer itself is untouched
    journey = {"id": "jrn_1", "name": "j", "version": 2, "revision": 5, "signing_secret": None}
    assert JOURNEY.strip(journey) == {"name": "j"}


def test_a_value_as_stored_null_a_mask_or_a_report_is_ignored() -> None:
    stored = {"id": "wh_1", "version": 3, "created_at": 10, "signing_secret": SECRET}
    WEBHOOK.check(
        {
            "id": "wh_1",
            "version": 3.0,  # a number compares by value
            "created_at": None,  # null is as good as left out
            "signing_secret": "***",  # how keys that are not admins read it
            "warnings": [{"field": "body", "detail": "anything"}],
        },
        stored,
        "wh_1",
    )
    WEBHOOK.check({"signing_secret": SECRET}, stored, "wh_1")


@pytest.mark.parametrize(
    ("sent", "says"),
    [
        ({"id": "wh_2"}, 'id cannot be changed: this webhook is "wh_1", not "wh_2"'),
        ({"version": True}, "version is set by hookline"),  # a bool is never the number 1
        ({"version": 2}, "If the webhook was read at 2, it has changed since"),
        ({"created_at": 11}, "created_at is set by hookline and cannot be changed this way"),
        ({"problem": "mine"}, "problem is set by hookline"),
    ],
)
def test_a_changed_value_is_refused_naming_the_field(sent: dict[str, Any], says: str) -> None:
    stored = {"id": "wh_1", "version": 1, "created_at": 10}
    with pytest.raises(InvalidInput) as caught:
        WEBHOOK.check(sent, stored, "wh_1")
    assert caught.value.field == next(iter(sent))
    assert says in caught.value.detail


def test_a_changed_signing_secret_says_how_to_rotate_and_quotes_neither_secret() -> None:
    stored = {"activity": {"signing_secret": SECRET}}
    other = "whsec_" + "B" * 32
    with pytest.raises(InvalidInput) as caught:
        RULE.check({"activity.signing_secret": other}, stored, "rule_1")
    assert caught.value.field == "activity.signing_secret"
    assert "rotate it with POST /api/v1/rules/rule_1/rotate-secret" in caught.value.detail
    assert SECRET not in caught.value.detail and other not in caught.value.detail


async def test_a_create_refuses_only_the_id_of_one_this_key_can_see() -> None:
    class Stored:
        ext_brand_id = "b1"

    async def find(resource_id: str) -> Branded | None:
        return Stored() if resource_id == "rule_here" else None

    def sees(brand: str | int | None) -> bool:
        return brand == "b1"

    with pytest.raises(Conflict) as caught:
        await RULE.check_new({"id": "rule_here", "version": 9}, find, sees)
    assert caught.value.field == "id"
    assert "PUT or PATCH /api/v1/rules/rule_here" in caught.value.detail
    await RULE.check_new({"id": "rule_elsewhere", "version": 9}, find, sees)
    await RULE.check_new({"id": "rule_here"}, find, lambda brand: False)  # another brand's


def test_request_models_set_read_only_fields_aside_and_still_refuse_unknown_ones() -> None:
    body = example_rule(id="rule_1", version=2)
    body["activity"]["signing_secret"] = SECRET
    rule = RuleIn.model_validate(body)
    assert rule.read_only_sent() == {
        "id": "rule_1",
        "version": 2,
        "activity.signing_secret": SECRET,
    }
    dumped = rule.model_dump()
    assert "id" not in dumped and "signing_secret" not in dumped["activity"]
    patch = RulePatch.model_validate({"enabled": False})
    assert patch.read_only_sent() == {}
    with pytest.raises(ValidationError) as caught:
        RuleIn.model_validate(example_rule(ids="x"))
    assert "unknown key 'ids'" in str(caught.value)


# --- the three resources over HTTP --------------------------------------------------------


def _new(kind: str, receiver: Receiver, name: str = "one") -> dict[str, Any]:
    """A body to create one of ``kind``, with a secret header to keep."""
    if kind == "rules":
        return example_rule(
            name=name,
            description="first",
            ext_brand_id="brand-1",
            frequency={"max": 2, "per": "1h"},
            activity={
                "url": receiver.url(),
                "headers": {"X-Api-Key": "k-123", "X-Token": "t-1"},
                "secret_headers": ["X-Token"],
            },
        )
    if kind == "webhooks":
        headers = {"Authorization": "Bearer t-1"}
        return {"name": name, "url": receiver.url(), "headers": headers, "timeout": 5}
    hello = {
        "type": "webhook",
        "activity": {"url": receiver.url(), "headers": {"Authorization": "Bearer t-1"}},
        "next": "done",
    }
    return example_journey(name, blocks={"hello": hello, "done": {"type": "exit"}})


async def _create(h: Hookline, kind: str, receiver: Receiver, **headers: str) -> dict[str, Any]:
    resp = await h.client.post(PATHS[kind], json=_new(kind, receiver), headers=headers)
    assert resp.status_code == 201, resp.text
    created: dict[str, Any] = resp.json()
    return created


async def _get(h: Hookline, kind: str, resource_id: str, **headers: str) -> dict[str, Any]:
    resp = await h.client.get(f"{PATHS[kind]}/{resource_id}", headers=headers)
    assert resp.status_code == 200, resp.text
    answer: dict[str, Any] = resp.json()
    return answer


def _signing_secret(kind: str, answer: dict[str, Any]) -> Any:
    return (answer["activity"] if kind == "rules" else answer).get("signing_secret")


async def _stored_headers(h: Hookline, kind: str, resource_id: str) -> dict[str, str]:
    """The header values as stored: real credentials, never the *** answers show."""
    if kind == "rules":
        rule = await h.runtime.store.get_rule(resource_id)
        assert rule is not None and rule.webhook is not None
        return dict(rule.webhook.headers)
    if kind == "webhooks":
        saved = await h.runtime.store.get_webhook(resource_id)
        assert saved is not None
        return dict(saved.spec.headers)
    assert h.runtime.journeys is not None
    journey = await h.runtime.journeys.get_journey(resource_id)
    assert journey is not None
    return dict(journey.definition["blocks"]["hello"]["activity"]["headers"])


# How each version field moves when only the name changes: rules and saved webhooks count
# every write; a journey counts writes in revision, and a new definition only in version.
MOVED = {"rules": ("version",), "webhooks": ("version",), "journeys": ("revision",)}


@pytest.mark.parametrize("kind", ["rules", "webhooks", "journeys"])
async def test_an_answer_read_changed_and_put_back_whole_changes_only_that_field(
    hookline: Hookline, receiver: Receiver, kind: str
) -> None:
    h = hookline
    created = await _create(h, kind, receiver)
    read = await _get(h, kind, created["id"])
    assert _signing_secret(kind, read).startswith("whsec_")
    headers_before = await _stored_headers(h, kind, created["id"])

    put = await h.client.put(f"{PATHS[kind]}/{read['id']}", json={**read, "name": "renamed"})
    assert put.status_code == 200, put.text

    after = await _get(h, kind, read["id"])
    moved = {name: read[name] + 1 for name in MOVED[kind]}
    assert after["updated_at"] > read["updated_at"]
    assert after == {**read, "name": "renamed", "updated_at": after["updated_at"], **moved}
    assert await _stored_headers(h, kind, read["id"]) == headers_before  # *** kept them


async def test_a_rule_patched_with_its_activity_as_read_changes_only_what_was_edited(
    hookline: Hookline, receiver: Receiver
) -> None:
    h = hookline
    created = await _create(h, "rules", receiver)
    read = await _get(h, "rules", created["id"])
    assert read["activity"]["headers"] == {"X-Api-Key": "***", "X-Token": "***"}
    path = f"/api/v1/rules/{read['id']}"

    activity = {**read["activity"], "timeout": 7}  # signing_secret and *** as read
    patched = await h.client.patch(path, json={"activity": activity})
    assert patched.status_code == 200, patched.text
    # A part may carry top-level read-only fields as read too.
    top = {"enabled": False, "id": read["id"], "created_at": read["created_at"]}
    assert (await h.client.patch(path, json=top)).status_code == 200

    after = await _get(h, "rules", read["id"])
    assert after == {
        **read,
        "activity": {**read["activity"], "timeout": 7.0},
        "enabled": False,
        "updated_at": after["updated_at"],
        "version": read["version"] + 2,
    }
    assert (await _stored_headers(h, "rules", read["id"]))["X-Api-Key"] == "k-123"


async def test_a_journey_patched_with_its_blocks_as_read_changes_only_what_was_edited(
    hookline: Hookline, receiver: Receiver
) -> None:
    h = hookline
    created = await _create(h, "journeys", receiver)
    read = await _get(h, "journeys", created["id"])
    blocks = read["blocks"]
    assert blocks["hello"]["activity"]["headers"] == {"Authorization": "***"}
    edited = {
        **blocks,  # hello's activity as read: its header ***
        "hello": {**blocks["hello"], "next": "wait"},
        "wait": {"type": "delay", "duration": "1h", "next": "done"},
    }
    part = {"blocks": edited, "revision": read["revision"], "version": read["version"]}

    patched = await h.client.patch(f"/api/v1/journeys/{read['id']}", json=part)
    assert patched.status_code == 200, patched.text

    after = await _get(h, "journeys", read["id"])
    assert after["blocks"] == edited
    assert after["revision"] == read["revision"] + 1
    assert after["version"] == read["version"] + 1  # an active journey's new definition
    assert after["signing_secret"] == read["signing_secret"]
    assert await _stored_headers(h, "journeys", read["id"]) == {"Authorization": "Bearer t-1"}


def _changed(kind: str, read: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    """``read`` with the dotted field ``name`` set to ``value``."""
    body = {**read, "activity": dict(read["activity"])} if kind == "rules" else dict(read)
    if "." in name:
        outer, inner = name.split(".")
        body[outer][inner] = value
    else:
        body[name] = value
    return body


REFUSALS = [
    ("rules", "id", "rule_01OTHER", "id cannot be changed"),
    ("rules", "created_at", 1, "created_at is set by hookline"),
    ("rules", "activity.signing_secret", SECRET, "rotate it with POST /api/v1/rules/"),
    ("webhooks", "id", "wh_01OTHER", "id cannot be changed"),
    ("webhooks", "created_at", 1, "created_at is set by hookline"),
    ("webhooks", "signing_secret", SECRET, "rotate it with POST /api/v1/webhooks/"),
    ("journeys", "id", "jrn_01OTHER", "id cannot be changed"),
    ("journeys", "created_at", 1, "created_at is set by hookline"),
    ("journeys", "signing_secret", SECRET, "rotate it with POST /api/v1/journeys/"),
    ("journeys", "version", 7, "If the journey was read at 7, it has changed since"),
]


@pytest.mark.parametrize(("kind", "name", "value", "says"), REFUSALS)
async def test_a_changed_read_only_field_is_422_naming_it_and_nothing_changes(
    hookline: Hookline, receiver: Receiver, kind: str, name: str, value: Any, says: str
) -> None:
    h = hookline
    created = await _create(h, kind, receiver)
    read = await _get(h, kind, created["id"])
    path = f"{PATHS[kind]}/{read['id']}"
    body = _changed(kind, read, name, value)
    writes = [h.client.put(path, json=body)]
    if kind != "webhooks":  # saved webhooks are replaced whole only
        outer = name.split(".")[0]
        writes.append(h.client.patch(path, json={outer: body[outer], "name": "renamed"}))
    for write in writes:
        error = assert_error(await write, 422, field=name, code="invalid_input", says=says)
        assert SECRET not in error["detail"] and "whsec_" not in error["detail"]
    assert await _get(h, kind, read["id"]) == read


async def test_a_stale_version_in_the_body_is_422_and_a_stale_if_match_still_412(
    hookline: Hookline, receiver: Receiver
) -> None:
    h = hookline
    created = await _create(h, "rules", receiver)
    read = await _get(h, "rules", created["id"])
    path = f"/api/v1/rules/{read['id']}"
    assert (await h.client.patch(path, json={"description": "by someone else"})).status_code == 200

    mine = {**read, "description": "mine"}
    assert_error(await h.client.put(path, json=mine), 422, field="version", says="changed since")
    stale = {"If-Match": f'"{read["version"]}"'}
    assert_error(await h.client.put(path, json=mine, headers=stale), 412)
    current = await _get(h, "rules", read["id"])
    assert current["description"] == "by someone else"
    fresh = {**current, "description": "mine"}
    put = await h.client.put(path, json=fresh, headers={"If-Match": f'"{current["version"]}"'})
    assert put.status_code == 200, put.text
    assert put.headers["ETag"] == f'"{current["version"] + 1}"'


@pytest.mark.parametrize("kind", ["rules", "webhooks", "journeys"])
async def test_an_answer_a_read_key_got_may_be_sent_back_by_an_admin(
    hookline: Hookline, receiver: Receiver, kind: str
) -> None:
    h = hookline
    _, admin_key = await h.runtime.keys.create(Role.ADMIN, (), "root")
    _, read_key = await h.runtime.keys.create(Role.READ, (), "dashboard")
    admin = {"authorization": f"Bearer {admin_key}"}
    reader = {"authorization": f"Bearer {read_key}"}
    created = await _create(h, kind, receiver, **admin)
    as_admin = await _get(h, kind, created["id"], **admin)
    as_reader = await _get(h, kind, created["id"], **reader)
    assert _signing_secret(kind, as_admin).startswith("whsec_")
    assert _signing_secret(kind, as_reader) == "***"  # masked, and the rest the same
    assert {**as_reader, **_only_secret(kind, as_admin)} == as_admin

    path = f"{PATHS[kind]}/{created['id']}"
    body = {**as_reader, "name": "renamed"}
    assert_error(await h.client.put(path, json=body, headers=reader), 403)
    put = await h.client.put(path, json=body, headers=admin)
    assert put.status_code == 200, put.text
    after = await _get(h, kind, created["id"], **admin)
    assert after["name"] == "renamed"
    assert _signing_secret(kind, after) == _signing_secret(kind, as_admin)


def _only_secret(kind: str, answer: dict[str, Any]) -> dict[str, Any]:
    """The part of ``answer`` that holds its signing secret."""
    if kind == "rules":
        return {"activity": answer["activity"]}
    return {"signing_secret": answer["signing_secret"]}


@pytest.mark.parametrize("kind", ["rules", "webhooks", "journeys"])
async def test_an_answer_posted_is_409_while_it_exists_and_a_new_one_once_gone(
    hookline: Hookline, receiver: Receiver, kind: str
) -> None:
    h = hookline
    created = await _create(h, kind, receiver)
    exported = await _get(h, kind, created["id"])
    exported = {**exported, "blocks": _unmasked(exported)} if kind == "journeys" else exported
    if kind == "rules":
        exported["activity"]["headers"] = {"X-Api-Key": "k-123", "X-Token": "t-1"}
    elif kind == "webhooks":
        exported["headers"] = {"Authorization": "Bearer t-1"}
    again = await h.client.post(PATHS[kind], json=exported)
    assert_error(again, 409, field="id", says=f"PUT or PATCH {PATHS[kind]}/{created['id']}")
    if kind != "webhooks":  # validate judges it as a save would: a create, or a PUT to it
        validate = f"{PATHS[kind]}/validate"
        assert_error(await h.client.post(validate, json=exported), 409, field="id")
        to_it = await h.client.post(validate, json=exported, params={"compare_to": created["id"]})
        assert to_it.status_code == 200, to_it.text

    assert (await h.client.delete(f"{PATHS[kind]}/{created['id']}")).status_code == 204
    copy = await h.client.post(PATHS[kind], json=exported)  # as on another server
    assert copy.status_code == 201, copy.text
    made = copy.json()
    assert made["id"] != exported["id"] and made["name"] == exported["name"]
    assert made["created_at"] >= exported["created_at"]
    assert made["version"] == 1
    assert _signing_secret(kind, made) not in (None, _signing_secret(kind, exported))


def _unmasked(journey: dict[str, Any]) -> dict[str, Any]:
    blocks: dict[str, Any] = journey["blocks"]
    hello = {**blocks["hello"], "activity": {**blocks["hello"]["activity"]}}
    hello["activity"]["headers"] = {"Authorization": "Bearer t-1"}
    return {**blocks, "hello": hello}


async def test_request_schemas_document_the_read_only_fields(hookline: Hookline) -> None:
    schemas = (await hookline.client.get("/openapi.json")).json()["components"]["schemas"]
    expected: dict[str, tuple[str, ...]] = {
        "RuleIn": RULE.fields,
        "RulePatch": RULE.fields,
        "Activity": RULE.nested["activity"],
        "WebhookIn": WEBHOOK.fields,
        "JourneyIn": JOURNEY.fields,
        "JourneyPatch": JOURNEY.fields,
    }
    for model, names in expected.items():
        properties = schemas[model]["properties"]
        for name in names:
            assert properties[name]["readOnly"] is True, (model, name)
    assert "rotate-secret" in schemas["WebhookIn"]["properties"]["signing_secret"]["description"]
