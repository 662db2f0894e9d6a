"""What the API answers to a save or a preview: warnings, and previews of stored rules."""

from __future__ import annotations

from typing import Any

from tests.helpers import Hookline, example_rule

SUSPECT_BODY = '{"level": "{{state.x|upper}}", "link": "{{event.y|smr_encod}}"}'
CLEAN_BODY = '{"level": "{{state.x|my friend}}", "link": "{{event.y|smr_encode}}"}'


def _details(answer: dict[str, Any], field: str) -> list[str]:
    assert all(set(w) == {"field", "detail"} for w in answer["warnings"]), answer
    assert {w["field"] for w in answer["warnings"]} == {field}, answer
    return [w["detail"] for w in answer["warnings"]]


def _points_at_both(details: list[str]) -> None:
    assert len(details) == 2
    assert "'upper' is used as fallback text" in details[0]
    assert "did you mean the filter 'smr_encode'?" in details[1]


async def test_saving_a_rule_warns_of_a_fallback_that_looks_like_a_filter(
    hookline: Hookline,
) -> None:
    suspect = example_rule(activity={"body": SUSPECT_BODY})
    validated = await hookline.post("/api/v1/rules/validate", suspect)
    assert validated.status_code == 200, validated.text
    _points_at_both(_details(validated.json(), "activity.body"))
    created = await hookline.post("/api/v1/rules", suspect)
    assert created.status_code == 201, created.text
    _points_at_both(_details(created.json(), "activity.body"))
    rule_id = created.json()["id"]
    clean = example_rule(activity={"body": CLEAN_BODY})
    replaced = await hookline.client.put(f"/api/v1/rules/{rule_id}", json=clean)
    assert replaced.status_code == 200 and replaced.json()["warnings"] == []
    patched = await hookline.client.patch(
        f"/api/v1/rules/{rule_id}", json={"activity": suspect["activity"]}
    )
    assert patched.status_code == 200, patched.text
    _points_at_both(_details(patched.json(), "activity.body"))
    # Accepted as the original's syntax allows: stored as written.
    stored = (await hookline.client.get(f"/api/v1/rules/{rule_id}")).json()
    assert stored["activity"]["body"] == SUSPECT_BODY


async def test_saving_a_webhook_and_previewing_it_warn_too(hookline: Hookline) -> None:
    webhook = {"name": "crm", "url": "http://127.0.0.1:9/x", "body": SUSPECT_BODY}
    created = await hookline.post("/api/v1/webhooks", webhook)
    assert created.status_code == 201, created.text
    _points_at_both(_details(created.json(), "body"))
    replaced = await hookline.client.put(
        f"/api/v1/webhooks/{created.json()['id']}", json={**webhook, "body": CLEAN_BODY}
    )
    assert replaced.status_code == 200 and replaced.json()["warnings"] == []
    inline = {k: v for k, v in webhook.items() if k != "name"}
    preview = await hookline.post("/api/v1/webhooks/preview", {"webhook": inline})
    assert preview.status_code == 200, preview.text
    _points_at_both(_details(preview.json(), "webhook.body"))
    assert '"level": "upper"' in preview.json()["body"]


async def test_preview_takes_a_rule_id_with_an_inline_or_a_saved_webhook(
    hookline: Hookline,
) -> None:
    sample = {"event": {"user_ext_id": "u-9", "payload": {"y": "a b"}}, "state": {"x": "gold"}}
    inline = await hookline.post(
        "/api/v1/rules",
        example_rule(name="inline", activity={"url": "http://127.0.0.1:9/in", "body": CLEAN_BODY}),
    )
    assert inline.status_code == 201, inline.text
    resp = await hookline.post(
        "/api/v1/webhooks/preview", {"rule_id": inline.json()["id"], **sample}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["url"] == "http://127.0.0.1:9/in"
    assert resp.json()["body"] == '{"level": "gold", "link": "a%20b"}'

    saved = await hookline.post(
        "/api/v1/webhooks",
        {
            "name": "crm",
            "url": "http://127.0.0.1:9/saved/{{state.user_ext_id}}",
            "body": SUSPECT_BODY,
        },
    )
    by_ref = {**example_rule(name="user"), "activity": {"webhook_id": saved.json()["id"]}}
    user = await hookline.post("/api/v1/rules", by_ref)
    assert user.status_code == 201, user.text
    resp = await hookline.post("/api/v1/webhooks/preview", {"rule_id": user.json()["id"], **sample})
    assert resp.status_code == 200, resp.text
    assert resp.json()["url"] == "http://127.0.0.1:9/saved/u-9"
    _points_at_both(_details(resp.json(), "activity.body"))


async def test_preview_of_an_unknown_rule_or_of_two_sources_is_refused(hookline: Hookline) -> None:
    resp = await hookline.post("/api/v1/webhooks/preview", {"rule_id": "rule_nope"})
    assert resp.status_code == 404 and resp.json()["field"] == "rule_id", resp.text
    both = await hookline.post(
        "/api/v1/webhooks/preview",
        {"webhook_id": "wh_x", "rule_id": "rule_x"},
    )
    assert both.status_code == 422 and both.json()["field"] == "rule_id", both.text
