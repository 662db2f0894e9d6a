"""The OpenAPI document tells the truth: real answers, the real error shape, every code listed."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import hookline
from hookline.api import errors as api_errors
from hookline.api import models
from hookline.errors import HooklineError
from hookline.journeys import DEFINITION_KEYS
from tests.helpers import Hookline, Receiver, example_rule, spin_event

README = Path(__file__).resolve().parents[1] / "README.md"
ERROR_REF = "#/components/schemas/Error"
# Errors that stop `hookline serve` before it listens: never an answer of the API.
START_UP_ONLY = {"error", "invalid_setting", "data_dir_busy", "cannot_listen"}


async def _spec(h: Hookline) -> dict[str, Any]:
    resp = await h.client.get("/openapi.json")
    assert resp.status_code == 200
    spec: dict[str, Any] = resp.json()
    return spec


async def test_every_route_documents_its_json_answer_and_the_error_shape(
    hookline: Hookline,
) -> None:
    spec = await _spec(hookline)
    assert "HTTPValidationError" not in json.dumps(spec)
    error = spec["components"]["schemas"]["Error"]
    assert set(error["properties"]) == {"code", "detail", "field"}
    operations = [
        (method.upper(), path, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
    ]
    assert len(operations) > 20
    for method, path, op in operations:
        where = f"{method} {path}"
        responses = op["responses"]
        ok = {status: r for status, r in responses.items() if status.startswith("2")}
        assert ok, f"{where} documents no 2xx answer"
        for status, answer in ok.items():
            if status == "204":
                assert not answer.get("content"), f"{where}: a 204 has no body"
                continue
            schema = answer.get("content", {}).get("application/json", {}).get("schema")
            assert schema, f"{where} {status}: no JSON schema"
            assert schema != {"type": "string"}, f"{where} {status}: documented as a string"
        errors = {s: r for s, r in responses.items() if s[0] in "45"}
        refs = [
            r.get("content", {}).get("application/json", {}).get("schema") for r in errors.values()
        ]
        assert {"$ref": ERROR_REF} in refs, f"{where}: no error answer with the Error schema"
        assert "4XX" in errors, f"{where}: client errors undocumented"


async def _answer(resp: Any, model: type[BaseModel], status: int = 200) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    model.model_validate(body)  # extra="forbid": a field the model leaves out fails here
    return body


async def test_real_answers_match_their_documented_models(
    hookline: Hookline, receiver: Receiver
) -> None:
    h, c = hookline, hookline.client
    saved = await _answer(
        # Branded, so the answers' optional fields are checked too.
        await h.post(
            "/api/v1/webhooks",
            {"name": "crm", "url": receiver.url("/w"), "ext_brand_id": "brand-1"},
        ),
        models.SavedWebhookSaved,
        201,
    )
    await _answer(await c.get(f"/api/v1/webhooks/{saved['id']}"), models.SavedWebhookOut)
    await _answer(await c.get("/api/v1/webhooks"), models.WebhookList)
    rule = example_rule(activity={"url": receiver.url()}, ext_brand_id="brand-1")
    await _answer(await h.post("/api/v1/rules/validate", rule), models.RuleValidation)
    created = await _answer(await h.post("/api/v1/rules", rule), models.RuleSaved, 201)
    assert created["ext_brand_id"] == "brand-1"
    by_ref = {
        **example_rule(name="ref", ext_brand_id="brand-1"),
        "activity": {"webhook_id": saved["id"]},
    }
    await _answer(await h.post("/api/v1/rules", by_ref), models.RuleSaved, 201)
    await _answer(await c.get(f"/api/v1/rules/{created['id']}"), models.RuleOut)
    await _answer(await c.get("/api/v1/rules"), models.RuleList)
    await _answer(
        await c.patch(f"/api/v1/rules/{created['id']}", json={"enabled": True}), models.RuleSaved
    )
    await _answer(
        await c.patch("/api/v1/users/u-1/state", json={"level": "gold"}), models.UserState
    )
    accepted = await _answer(
        await h.post("/api/v1/events", spin_event()), models.EventsAccepted, 202
    )
    event_id = accepted["events"][0]["id"]
    await _answer(await c.get(f"/api/v1/events/{event_id}"), models.EventOut)
    await _answer(await c.get("/api/v1/users/u-1/state"), models.UserState)
    await receiver.wait_for(2)
    await h.idle()
    page = await _answer(await c.get("/api/v1/deliveries"), models.DeliveryList)
    delivery_id = page["data"][0]["id"]
    detail = await _answer(await c.get(f"/api/v1/deliveries/{delivery_id}"), models.DeliveryDetail)
    assert detail["attempt_log"]
    await _answer(await c.post(f"/api/v1/deliveries/{delivery_id}/retry"), models.DeliveryOut, 202)
    sample = {"webhook_id": saved["id"]}
    await _answer(await h.post("/api/v1/webhooks/preview", sample), models.Preview)
    await _answer(await h.post("/api/v1/webhooks/test", sample), models.SentOnce)
    await _answer(await c.post("/echo-send/secret-123/", content=b"{}"), models.EchoAck)
    await _answer(await c.get("/echo-list/secret-123/"), models.EchoList)
    await _answer(await c.delete("/echo-list/secret-123/"), models.EchoCleared)
    await _answer(await c.get("/healthz"), models.Health)
    error = await c.get("/api/v1/rules/rule_nope")
    await _answer(error, models.Error, 404)


async def test_journey_answers_match_their_documented_models(
    hookline: Hookline, receiver: Receiver
) -> None:
    h, c = hookline, hookline.client
    definition = {
        "name": "welcome",
        "status": "active",
        "entry": {"trigger": {"event_type": "minigame_spin_issued"}},
        "control_group": {"percent": 0},
        "goal": {"event_type": "deposit_made", "within": "7d"},
        "exit_on": [{"event_type": "account_closed"}],
        "max_duration": "30d",
        "start": "hello",
        "blocks": {
            "hello": {"type": "webhook", "activity": {"url": receiver.url("/j")}, "next": "ask"},
            "ask": {
                "type": "wait_for_event",
                "event_type": "deposit_made",
                "timeout": "1d",
                "next": "done",
                "on_timeout": "done",
            },
            "done": {"type": "exit"},
        },
    }
    created = await _answer(await h.post("/api/v1/journeys", definition), models.JourneyOut, 201)
    assert set(DEFINITION_KEYS) <= set(created)  # the optional keys are answered, and checked
    journey_id = created["id"]
    await _answer(await c.get(f"/api/v1/journeys/{journey_id}"), models.JourneyOut)
    await _answer(await c.get("/api/v1/journeys"), models.JourneyList)
    await _answer(await h.post("/api/v1/events", spin_event()), models.EventsAccepted, 202)
    await receiver.wait_for(1, "/j")
    await h.idle()
    instances = f"/api/v1/journeys/{journey_id}/instances"
    (waiting,) = (await _answer(await c.get(instances), models.InstanceList))["data"]
    assert waiting["waiting_for"] == "deposit_made" and waiting["due_at"] is not None
    await _answer(await c.get("/api/v1/users/u-1/journeys"), models.InstanceList)
    page = await _answer(
        await c.get("/api/v1/deliveries", params={"journey_id": journey_id}), models.DeliveryList
    )
    assert [d["instance_id"] for d in page["data"]] == [waiting["id"]]
    await _answer(await c.get(f"/api/v1/journeys/{journey_id}/stats"), models.JourneyStats)
    # Rows are checked against ChainCutList where a chain is cut (test_journeys_e2e).
    await _answer(await c.get(f"/api/v1/journeys/{journey_id}/chain-cuts"), models.ChainCutList)
    replaced = {**definition, "max_duration": 3600}
    await _answer(await c.put(f"/api/v1/journeys/{journey_id}", json=replaced), models.JourneyOut)
    stopped = await c.patch(f"/api/v1/journeys/{journey_id}", json={"status": "stopped"})
    await _answer(stopped, models.JourneyOut)
    (left,) = (await _answer(await c.get(instances), models.InstanceList))["data"]
    assert left["finish_reason"] == "stopped"
    stats = await _answer(await c.get(f"/api/v1/journeys/{journey_id}/stats"), models.JourneyStats)
    assert stats["treatment"]["finished"] == {"stopped": 1}
    assert stats["blocks"]["hello"] == {"entered": 1, "passed": 1, "waiting": 0}


async def test_key_answers_match_their_documented_models(hookline: Hookline) -> None:
    c = hookline.client
    made = await c.post("/api/v1/keys", json={"role": "admin", "name": "root"})
    root = await _answer(made, models.KeyCreated, 201)
    auth = {"authorization": f"Bearer {root['key']}"}
    scoped = await c.post("/api/v1/keys", json={"role": "read", "brands": ["b1", 7]}, headers=auth)
    read = await _answer(scoped, models.KeyCreated, 201)
    assert read["brands"] == ["b1", "7"]
    # KeyOut has no `key`: a list or a revocation that held a key would fail here.
    await _answer(await c.get("/api/v1/keys", headers=auth), models.KeyList)
    revoked = await c.delete(f"/api/v1/keys/{read['id']}", headers=auth)
    assert (await _answer(revoked, models.KeyOut))["revoked_at"] is not None


def _answerable_codes() -> set[str]:
    """Every code an answer can carry: HooklineError subclasses and the API's own handlers."""
    for module in pkgutil.walk_packages(hookline.__path__, "hookline."):
        importlib.import_module(module.name)
    codes: set[str] = set()
    stack: list[type[HooklineError]] = [HooklineError]
    while stack:
        cls = stack.pop()
        codes.add(cls.code)
        stack.extend(cls.__subclasses__())
    codes -= START_UP_ONLY
    codes |= set(api_errors.HTTP_CODES.values())
    # The handlers' literal codes: error_response(400, "malformed_json", ...).
    source = inspect.getsource(api_errors)
    codes |= set(re.findall(r'error_response\(\s*\d+,\s*"([a-z_]+)"', source))
    codes.add("http_error")  # the fallback for a framework status without a code of its own
    return codes


def test_every_error_code_the_server_answers_is_in_the_readme() -> None:
    codes = _answerable_codes()
    for expected in ("bad_request", "method_not_allowed", "precondition_failed", "missing_body"):
        assert expected in codes
    errors = README.read_text().split("## Errors", 1)[1].split("\n## ", 1)[0]
    missing = sorted(code for code in codes if f"`{code}`" not in errors)
    assert not missing, f"README's Errors section does not list {missing}"


async def test_every_query_parameter_of_the_api_is_in_the_readme(hookline: Hookline) -> None:
    spec = await _spec(hookline)
    readme = README.read_text()
    missing = []
    for path, item in spec["paths"].items():
        # The README names ids `{id}`, except a user's.
        shown = re.sub(r"\{(?!user_ext_id)\w+\}", "{id}", path)
        queries = re.findall(re.escape(shown) + r"\?([\w=&\[\]<> ]*)", readme)
        for op in item.values():
            for param in op.get("parameters", []):
                if param["in"] != "query":
                    continue
                name = param["name"]
                # Where the README writes the path with a query, that query names them all.
                named = (f"{name}=" in q for q in queries) if queries else [f"{name}=" in readme]
                if not any(named):
                    missing.append(f"{shown}?{name}=")
    assert missing == []


async def test_every_path_of_the_api_is_in_the_readme(hookline: Hookline) -> None:
    spec = await _spec(hookline)
    readme = README.read_text()
    shown = [re.sub(r"\{(?!user_ext_id)\w+\}", "{id}", path) for path in spec["paths"]]
    assert len(shown) > 25
    # The echo routes are written with the secret: `/echo-send/<secret>/`.
    shown = [path.replace("{id}/", "<secret>/") if "/echo-" in path else path for path in shown]
    assert [path for path in shown if path not in readme] == []
