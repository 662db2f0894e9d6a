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
