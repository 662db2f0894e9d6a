"""`hookline journeys apply` as config as code: the server ends equal to the file, or untouched."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import yaml
from typer.testing import CliRunner, Result

from hookline.cli import app
from tests.helpers import Hookline

runner = CliRunner()


async def _run(*args: str) -> Result:
    return await asyncio.to_thread(runner.invoke, app, list(args))


async def _apply(hookline: Hookline, path: Path, *flags: str) -> Result:
    return await _run("journeys", "apply", "-f", str(path), *flags, "--url", hookline.base_url)


def _write(path: Path, journeys: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"journeys": journeys}, sort_keys=False))
    return path


def _journey(
    name: str = "welcome", url: str = "http://127.0.0.1:9/hi", **more: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "status": "active",
        "entry": {"trigger": {"event_type": "minigame_spin_issued"}},
        "start": "hello",
        "blocks": {
            "hello": {"type": "webhook", "activity": {"url": url}, "next": "wait"},
            "wait": {"type": "delay", "duration": "2h", "next": "bye"},
            "bye": {"type": "exit"},
        },
        **more,
    }


async def _stored(hookline: Hookline) -> dict[str, dict[str, Any]]:
    resp = await hookline.client.get("/api/v1/journeys")
    return {j["name"]: j for j in resp.json()["data"]}


async def test_applying_the_same_file_twice_changes_nothing_the_second_time(
    hookline: Hookline, tmp_path: Path
) -> None:
    path = _write(tmp_path / "journeys.yaml", [_journey(), _journey("other", status="draft")])
    first = await _apply(hookline, path)
    assert first.exit_code == 0, first.output
    stored = await _stored(hookline)
    assert first.stdout.splitlines() == [
        f"created   welcome ({stored['welcome']['id']})",
        f"created   other ({stored['other']['id']})",
        "2 created, 0 updated, 0 unchanged, 0 deleted",
    ]
    again = await _apply(hookline, path)
    assert again.exit_code == 0, again.output
    assert again.stdout.splitlines()[-1] == "0 created, 0 updated, 2 unchanged, 0 deleted"
    assert await _stored(hookline) == stored  # not even a new revision


async def test_a_changed_active_journey_is_replaced_as_a_new_version(
    hookline: Hookline, tmp_path: Path
) -> None:
    path = _write(tmp_path / "journeys.yaml", [_journey()])
    assert (await _apply(hookline, path)).exit_code == 0
    before = (await _stored(hookline))["welcome"]
    changed = _journey(url="http://127.0.0.1:9/changed")
    dry = await _apply(hookline, _write(path, [changed]), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.splitlines() == [
        f"update    welcome ({before['id']})",
        '    blocks.hello.activity.url: "http://127.0.0.1:9/hi" -> "http://127.0.0.1:9/changed"',
        "dry run, nothing written: 0 create, 1 update, 0 unchanged, 0 delete",
    ]
    assert (await _stored(hookline))["welcome"] == before
    result = await _apply(hookline, path)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == (
        f"updated   welcome ({before['id']}): blocks.hello.activity.url"
    )
    after = (await _stored(hookline))["welcome"]
    assert after["id"] == before["id"] and after["version"] == 2


async def test_a_bad_block_is_named_with_its_field_and_nothing_is_applied(
    hookline: Hookline, tmp_path: Path
) -> None:
    bad = _journey("broken")
    bad["blocks"]["wait"]["next"] = "nowhere"
    path = _write(tmp_path / "journeys.yaml", [_journey("fine"), bad])
    result = await _apply(hookline, path)
    assert result.exit_code == 1
    assert 'journey "broken": blocks.wait.next: ' in result.stderr, result.stderr
    assert "nothing was applied (1 problem(s))" in result.stderr
    assert await _stored(hookline) == {}


async def test_a_local_shape_problem_names_the_journey_and_field(
    hookline: Hookline, tmp_path: Path
) -> None:
    path = _write(tmp_path / "journeys.yaml", [_journey(start=""), _journey("welcome")])
    result = await _apply(hookline, path)
    assert result.exit_code == 1
    assert 'journey "welcome": start: ' in result.stderr, result.stderr
    assert 'journey "welcome": the name appears more than once in the file' in result.stderr
    assert await _stored(hookline) == {}


async def test_going_back_to_draft_is_refused_before_anything_is_written(
    hookline: Hookline, tmp_path: Path
) -> None:
    path = _write(tmp_path / "journeys.yaml", [_journey()])
    assert (await _apply(hookline, path)).exit_code == 0
    before = await _stored(hookline)
    result = await _apply(hookline, _write(path, [_journey(status="draft"), _journey("new")]))
    assert result.exit_code == 1
    assert 'journey "welcome": status: a journey that has run cannot go back' in result.stderr
    assert await _stored(hookline) == before


async def test_a_file_without_status_applies_again_after_the_journey_was_activated(
    hookline: Hookline, tmp_path: Path
) -> None:
    unmanaged = _journey()
    del unmanaged["status"]
    path = _write(tmp_path / "journeys.yaml", [unmanaged])
    assert (await _apply(hookline, path)).exit_code == 0
    journey = (await _stored(hookline))["welcome"]
    assert journey["status"] == "draft"  # created as a POST without status is
    resp = await hookline.client.patch(
        f"/api/v1/journeys/{journey['id']}", json={"status": "active"}
    )
    assert resp.status_code == 200, resp.text
    again = await _apply(hookline, path)
    assert again.exit_code == 0, again.output
    assert again.stdout.splitlines()[-1] == "0 created, 0 updated, 1 unchanged, 0 deleted"
    changed = await _apply(hookline, _write(path, [{**unmanaged, "description": "edited"}]))
    assert changed.exit_code == 0, changed.output
    after = (await _stored(hookline))["welcome"]
    assert after["status"] == "active" and after["description"] == "edited"


async def test_prune_deletes_the_journeys_the_file_leaves_out_and_only_then(
    hookline: Hookline, tmp_path: Path
) -> None:
    path = _write(tmp_path / "journeys.yaml", [_journey(), _journey("old")])
    assert (await _apply(hookline, path)).exit_code == 0
    old_id = (await _stored(hookline))["old"]["id"]
    kept = await _apply(hookline, _write(path, [_journey()]))
    assert f"kept      old ({old_id}): not in the file (--prune deletes it)" in kept.stdout
    assert set(await _stored(hookline)) == {"welcome", "old"}
    pruned = await _apply(hookline, path, "--prune")
    assert pruned.exit_code == 0, pruned.output
    assert f"deleted   old ({old_id})" in pruned.stdout
    assert set(await _stored(hookline)) == {"welcome"}


async def test_journeys_list_shows_whole_ids_and_versions(
    hookline: Hookline, tmp_path: Path
) -> None:
    assert (await _apply(hookline, _write(tmp_path / "j.yaml", [_journey()]))).exit_code == 0
    stored = (await _stored(hookline))["welcome"]
    result = await _run("--url", hookline.base_url, "journeys", "list")
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()
    assert header.split() == ["NAME", "ID", "STATUS", "VERSION", "EVENT", "TYPE"]
    assert row.split() == ["welcome", stored["id"], "active", "1", "minigame_spin_issued"]


async def test_validate_answers_the_journey_as_stored_and_writes_nothing(
    hookline: Hookline,
) -> None:
    resp = await hookline.post("/api/v1/journeys/validate", _journey())
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["valid"] is True and answer["journey"]["description"] == ""
    assert "id" not in answer["journey"] and "revision" not in answer["journey"]
    assert await _stored(hookline) == {}


async def test_journeys_as_listed_apply_with_their_ids_versions_and_secrets_left_out(
    hookline: Hookline, tmp_path: Path
) -> None:
    path = _write(tmp_path / "journeys.yaml", [_journey()])
    assert (await _apply(hookline, path)).exit_code == 0
    listed = await _run("--url", hookline.base_url, "journeys", "list", "--json")
    assert listed.exit_code == 0, listed.output
    (journey,) = orjson.loads(listed.stdout)
    # As saved from another server: its own id, versions and secret; one field edited.
    elsewhere = {**journey, "id": "jrn_elsewhere", "revision": 9, "description": "edited"}
    elsewhere["signing_secret"] = "whsec_" + "B" * 32
    path.write_text(orjson.dumps([elsewhere]).decode())
    result = await _apply(hookline, path)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == f"updated   welcome ({journey['id']}): description"
    after = (await _stored(hookline))["welcome"]
    assert after == {
        **journey,  # its id and signing secret
        "description": "edited",
        "revision": journey["revision"] + 1,
        "updated_at": after["updated_at"],
    }
