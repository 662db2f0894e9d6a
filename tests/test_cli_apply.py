"""`hookline rules apply` as config as code: the server ends equal to the file, or untouched."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import yaml
from typer.testing import CliRunner, Result

from hookline.cli import app
from hookline.rulefile import check, diff, same
from tests.helpers import Hookline, example_rule

runner = CliRunner()


async def _run(*args: str, env: dict[str, str] | None = None) -> Result:
    return await asyncio.to_thread(runner.invoke, app, list(args), env=env)


async def _apply(hookline: Hookline, path: Path, *flags: str) -> Result:
    return await _run("rules", "apply", "-f", str(path), *flags, "--url", hookline.base_url)


def _write(path: Path, rules: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"rules": rules}, sort_keys=False))
    return path


async def _stored(hookline: Hookline) -> dict[str, dict[str, Any]]:
    resp = await hookline.client.get("/api/v1/rules")
    return {r["name"]: r for r in resp.json()["data"]}


def _lines(result: Result) -> list[str]:
    return result.stdout.splitlines()


async def test_removing_conditions_and_headers_from_the_file_clears_them(
    hookline: Hookline, tmp_path: Path
) -> None:
    path = _write(tmp_path / "rules.yaml", [example_rule()])
    assert (await _apply(hookline, path)).exit_code == 0
    stored = (await _stored(hookline))["spin-to-crm"]
    assert stored["conditions"] is not None
    assert stored["activity"]["headers"] == {"X-Api-Key": "***"}  # stored, never shown

    rule = example_rule()
    del rule["conditions"]
    del rule["activity"]["headers"]
    result = await _apply(hookline, _write(path, [rule]))
    assert result.exit_code == 0, result.output
    (line, _summary) = _lines(result)
    assert line.startswith(f"updated   spin-to-crm ({stored['id']}): ")
    assert line.endswith(": activity.headers.X-Api-Key, conditions")
    after = (await _stored(hookline))["spin-to-crm"]
    assert after["conditions"] is None
    assert after["activity"]["headers"] == {}
    assert after["id"] == stored["id"]


async def test_integer_retry_schedule_applies_once_then_is_unchanged(
    hookline: Hookline, tmp_path: Path
) -> None:
    rule = example_rule(activity={"retry_schedule": [0, 1, 2], "timeout": 5})
    path = _write(tmp_path / "rules.yaml", [rule])
    first = await _apply(hookline, path)
    assert first.stdout.startswith("created   spin-to-crm (rule_")
    stored = (await _stored(hookline))["spin-to-crm"]
    assert stored["activity"]["retry_schedule"] == [0.0, 1.0, 2.0]
    for _ in range(2):
        again = await _apply(hookline, path)
        assert again.exit_code == 0, again.output
        assert _lines(again) == [
            f"unchanged spin-to-crm ({stored['id']})",
            "0 created, 0 updated, 1 unchanged, 0 deleted",
        ]
    assert (await _stored(hookline))["spin-to-crm"]["updated_at"] == stored["updated_at"]


async def test_moving_a_rule_to_another_brand_is_a_change(
    hookline: Hookline, tmp_path: Path
) -> None:
    path = _write(tmp_path / "rules.yaml", [example_rule(ext_brand_id="b1")])
    assert (await _apply(hookline, path)).exit_code == 0
    moved = await _apply(hookline, _write(path, [example_rule(ext_brand_id="b9")]))
    assert moved.exit_code == 0, moved.output
    assert _lines(moved)[-1] == "0 created, 1 updated, 0 unchanged, 0 deleted"
    assert (await _stored(hookline))["spin-to-crm"]["ext_brand_id"] == "b9"


async def test_a_bad_rule_in_the_middle_is_named_and_nothing_is_applied(
    hookline: Hookline, tmp_path: Path
) -> None:
    good = example_rule(name="first")
    bad = example_rule(name="broken", activity={"url": ""})
    last = example_rule(name="last")
    result = await _apply(hookline, _write(tmp_path / "rules.yaml", [good, bad, last]))
    assert result.exit_code == 1
    assert 'rule "broken": activity.url: String should have at least 1 character' in (
        " ".join(result.stderr.split())
    )
    assert "nothing was applied" in result.stderr
    assert await _stored(hookline) == {}


async def test_every_local_problem_is_listed_with_its_rule(
    hookline: Hookline, tmp_path: Path
) -> None:
    bad_template = example_rule(name="t", activity={"body": '{"a": {{event.x}} }}'})
    bad_op = example_rule(name="c", conditions={"field": "event.n", "op": "bigger", "value": 1})
    unnamed = example_rule()
    del unnamed["name"]
    twice = [example_rule(name="same"), example_rule(name="same")]
    path = _write(tmp_path / "rules.yaml", [bad_template, bad_op, unnamed, *twice])
    result = await _apply(hookline, path)
    assert result.exit_code == 1
    text = " ".join(result.stderr.split())
    assert 'rule "t": activity.body' in text
    assert 'rule "c": conditions.op' in text
    assert "rule #3: name: Field required" in text
    assert 'rule "same": the name appears more than once' in text
    assert await _stored(hookline) == {}


async def test_a_rule_only_the_server_can_refuse_stops_the_whole_file(
    hookline: Hookline, tmp_path: Path
) -> None:
    # Valid on its own, but the saved webhook it names does not exist: only the server knows.
    good = example_rule(name="first")
    dangling = example_rule(name="dangling")
    dangling["activity"] = {"type": "webhook", "webhook_id": "wh_missing"}
    result = await _apply(hookline, _write(tmp_path / "rules.yaml", [good, dangling]))
    assert result.exit_code == 1
    assert 'rule "dangling": activity.webhook_id: no saved webhook' in (
        " ".join(result.stderr.split())
    )
    assert await _stored(hookline) == {}


async def test_dry_run_shows_the_diff_and_writes_nothing(
    hookline: Hookline, tmp_path: Path
) -> None:
    path = _write(tmp_path / "rules.yaml", [example_rule(), example_rule(name="gone")])
    assert (await _apply(hookline, path)).exit_code == 0
    before = await _stored(hookline)

    changed = example_rule(enabled=False)
    changed["activity"]["headers"] = {"X-Api-Key": "k-456"}
    path = _write(path, [changed, example_rule(name="new")])
    result = await _apply(hookline, path, "--dry-run", "--prune")
    assert result.exit_code == 0, result.output
    assert _lines(result) == [
        f"update    spin-to-crm ({before['spin-to-crm']['id']})",
        # The console never shows a secret header's value, old or new, only that it changed.
        '    activity.headers.X-Api-Key: "***" -> "*** (changed)"',
        "    enabled: true -> false",
        "create    new",
        f"delete    gone ({before['gone']['id']})",
        "dry run, nothing written: 1 create, 1 update, 0 unchanged, 1 delete",
    ]
    assert await _stored(hookline) == before


async def test_a_new_secret_header_value_is_a_change_though_answers_mask_it(
    hookline: Hookline, tmp_path: Path
) -> None:
    path = _write(tmp_path / "rules.yaml", [example_rule()])
    assert (await _apply(hookline, path)).exit_code == 0
    assert _lines(await _apply(hookline, path))[0].startswith("unchanged spin-to-crm")

    changed = example_rule()
    changed["activity"]["headers"] = {"X-Api-Key": "k-456"}
    result = await _apply(hookline, _write(path, [changed]))
    assert result.exit_code == 0, result.output
    assert _lines(result)[0].endswith(": activity.headers.X-Api-Key")
    assert "k-456" not in result.output and "k-123" not in result.output
    (rule,) = await hookline.runtime.store.list_rules()
    assert rule.webhook is not None and rule.webhook.headers == {"X-Api-Key": "k-456"}
    assert _lines(await _apply(hookline, path))[0].startswith("unchanged spin-to-crm")


async def test_prune_deletes_what_the_file_leaves_out_and_only_then(
    hookline: Hookline, tmp_path: Path
) -> None:
    path = _write(tmp_path / "rules.yaml", [example_rule(), example_rule(name="extra")])
    assert (await _apply(hookline, path)).exit_code == 0
    extra_id = (await _stored(hookline))["extra"]["id"]
    path = _write(path, [example_rule()])

    kept = await _apply(hookline, path)
    assert f"kept      extra ({extra_id}): not in the file (--prune deletes it)" in _lines(kept)
    assert set(await _stored(hookline)) == {"spin-to-crm", "extra"}

    pruned = await _apply(hookline, path, "--prune")
    assert pruned.exit_code == 0, pruned.output
    assert f"deleted   extra ({extra_id})" in _lines(pruned)
    assert pruned.stdout.endswith("0 created, 0 updated, 1 unchanged, 1 deleted\n")
    assert set(await _stored(hookline)) == {"spin-to-crm"}


async def test_url_goes_before_or_after_the_command_or_in_the_environment(
    hookline: Hookline,
) -> None:
    await hookline.create_rule()
    nowhere = "http://127.0.0.1:9"
    before = await _run("--url", hookline.base_url, "rules", "list", "--json")
    assert before.exit_code == 0, before.output
    assert [r["name"] for r in orjson.loads(before.stdout)] == ["spin-to-crm"]
    from_env = await _run("rules", "list", "--json", env={"HOOKLINE_URL": hookline.base_url})
    assert from_env.stdout == before.stdout
    # The flag after the command is the nearest, so it wins over the one before and the env.
    after = await _run(
        "--url", nowhere, "rules", "list", "--json", "--url", hookline.base_url,
        env={"HOOKLINE_URL": nowhere},
    )  # fmt: skip
    assert after.stdout == before.stdout
    flag_over_env = await _run(
        "--url", hookline.base_url, "rules", "list", "--json", env={"HOOKLINE_URL": nowhere}
    )
    assert flag_over_env.stdout == before.stdout


async def test_rules_list_shows_whole_ids_on_a_narrow_terminal(hookline: Hookline) -> None:
    created = [await hookline.create_rule(name=f"rule-with-a-long-name-{i}") for i in range(2)]
    result = await _run("rules", "list", "--url", hookline.base_url, env={"COLUMNS": "40"})
    assert result.exit_code == 0, result.output
    for rule in created:
        assert rule["id"] in result.stdout
        assert rule["name"] in result.stdout
    as_json = await _run("rules", "list", "--json", "--url", hookline.base_url)
    assert (
        orjson.loads(as_json.stdout) == (await hookline.client.get("/api/v1/rules")).json()["data"]
    )


async def test_validate_answers_the_rule_as_stored_and_writes_nothing(
    hookline: Hookline,
) -> None:
    rule = example_rule(activity={"retry_schedule": [0, 1], "method": "post"})
    resp = await hookline.post("/api/v1/rules/validate", rule)
    assert resp.status_code == 200, resp.text
    normal = resp.json()["rule"]
    assert normal["activity"]["retry_schedule"] == [0.0, 1.0]
    assert normal["activity"]["method"] == "POST"
    assert normal["activity"]["query"] == {}
    assert set(normal) == {
        *("name", "description", "enabled", "trigger", "conditions", "activity"),
        *("once_per_user", "frequency", "accumulate"),
    }
    assert (normal["once_per_user"], normal["frequency"], normal["accumulate"]) == (
        False,
        None,
        None,
    )
    assert (await hookline.client.get("/api/v1/rules")).json()["data"] == []
    bad = await hookline.post("/api/v1/rules/validate", example_rule(conditions={"x": 1}))
    assert bad.status_code == 422
    assert bad.json()["field"].startswith("conditions")


def test_a_misspelt_key_in_the_file_is_named_with_the_key_meant() -> None:
    rule = example_rule(name="typo", activity={"header": {"X-Api-Key": "k"}})
    assert check([rule]) == [
        "rule \"typo\": activity.header: unknown key 'header'; did you mean 'headers'?"
    ]


def test_same_compares_numbers_numerically_but_never_bools_as_numbers() -> None:
    assert same([0, 1, 2], [0.0, 1.0, 2.0])
    assert same({"a": {"b": 1}}, {"a": {"b": 1.0}})
    assert not same(True, 1)
    assert not same(1, True)
    assert not same({"a": 1}, {"a": 1, "b": None})
    assert not same([1], [1, 2])
    assert not same("1", 1)
    assert same(None, None)


def test_diff_names_nested_fields_and_keys_on_one_side_only() -> None:
    old = {"activity": {"headers": {"A": "1"}, "timeout": 5}, "conditions": {"all": []}}
    new = {"activity": {"headers": {}, "timeout": 5.0}, "conditions": None}
    assert [(c.path, c.old, c.new) for c in diff(old, new)] == [
        ("activity.headers.A", "1", None),
        ("conditions", {"all": []}, None),
    ]


def test_help_shows_the_defaults_and_where_else_they_come_from() -> None:
    # Square brackets are rich markup in typer's help: text inside them used to vanish.
    wide = {"COLUMNS": "200"}
    root = runner.invoke(app, ["--help"], env=wide).stdout
    assert "(default: http://127.0.0.1:8080)" in root
    listing = runner.invoke(app, ["rules", "list", "--help"], env=wide).stdout
    assert "(else HOOKLINE_URL, else http://127.0.0.1:8080)" in listing
    serve = runner.invoke(app, ["serve", "--help"], env=wide).stdout
    for shown in ("HOOKLINE_HOST; default 127.0.0.1", "HOOKLINE_PORT; default 8080"):
        assert shown in serve


async def test_rules_as_listed_apply_here_or_elsewhere_with_their_ids_and_secrets_left_out(
    hookline: Hookline, tmp_path: Path
) -> None:
    created = await hookline.create_rule()
    listed = await _run("--url", hookline.base_url, "rules", "list", "--json")
    assert listed.exit_code == 0, listed.output
    path = tmp_path / "rules.json"
    path.write_text(listed.stdout)
    here = await _apply(hookline, path)
    assert here.exit_code == 0, here.output
    assert _lines(here)[0] == f"unchanged spin-to-crm ({created['id']})"

    # As saved from another server: its own ids, versions and secrets; one field edited.
    (rule,) = orjson.loads(listed.stdout)
    elsewhere = {**rule, "id": "rule_elsewhere", "version": 9, "description": "edited"}
    elsewhere["activity"] = {**rule["activity"], "signing_secret": "whsec_" + "B" * 32}
    path.write_text(orjson.dumps([elsewhere]).decode())
    result = await _apply(hookline, path)
    assert result.exit_code == 0, result.output
    assert _lines(result)[0] == f"updated   spin-to-crm ({created['id']}): description"
    after = (await _stored(hookline))["spin-to-crm"]
    assert after == {
        **rule,  # its id and signing secret, the stored header value behind ***
        "description": "edited",
        "updated_at": after["updated_at"],
        "version": rule["version"] + 1,
    }
