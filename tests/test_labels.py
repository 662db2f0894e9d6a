"""Names people give (rules, saved webhooks, journeys, API keys) are one line that prints as
written: refused with the character and its place when they are not, escaped when printed
if an older hookline stored one."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from typer.testing import CliRunner, Result

from hookline.cli import app
from hookline.errors import InvalidInput
from hookline.keys import Role
from hookline.labels import check_label, describe, printable
from tests.helpers import Hookline, Receiver, example_journey, example_rule, spin_event
from tests.test_api_errors import assert_error

MakeHookline = Callable[..., Coroutine[Any, Any, Hookline]]
runner = CliRunner()

# Each refused character, with how the error names it.
REFUSED = [
    ("\n", "U+000A (line break)"),
    ("\r", "U+000D (carriage return, a line break)"),
    ("\x00", "U+0000 (NUL)"),
    ("\t", "U+0009 (tab)"),
    ("\x1b", "U+001B (escape)"),
    ("\x7f", "U+007F (delete)"),
    ("\x85", "U+0085 (next line)"),
    ("\x9b", "U+009B (control character)"),  # C1 CSI: an escape sequence in one character
    ("\u2028", "U+2028 (line separator)"),
    ("\u2029", "U+2029 (paragraph separator)"),
    ("\u202e", "U+202E (right-to-left override)"),
    ("\u2066", "U+2066 (left-to-right isolate)"),
    ("\ud800", "U+D800 (lone surrogate)"),
]
# Any script, emoji (a family joined by U+200D), marks and punctuation stay names.
ACCEPTED = [
    "Приветственная серия",
    "ようこそキャンペーン",
    "🎰 spins 👨‍👩‍👧",
    "عرض خاص\u200f",  # a right-to-left mark is a mark, not an override
    'VIP "gold" \\ tier: 50% off',
]


async def _run(*args: str) -> Result:
    env = {"HOOKLINE_API_KEY": "", "HOOKLINE_URL": ""}
    return await asyncio.to_thread(runner.invoke, app, list(args), env=env)


@pytest.mark.parametrize(("char", "named"), REFUSED)
def test_check_label_names_the_character_and_its_index(char: str, named: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_label(f"abc{char}def", "name", "a rule's name")
    assert caught.value.field == "name"
    assert caught.value.detail.startswith(f"a rule's name cannot hold {named} at index 3;")
    assert describe(char) == named


@pytest.mark.parametrize("name", ACCEPTED)
def test_names_in_any_script_are_labels_and_print_as_they_are(name: str) -> None:
    assert check_label(name, "name") == name
    assert printable(name) == name


@pytest.mark.parametrize(("char", "_named"), REFUSED)
def test_printable_escapes_what_a_label_may_not_hold_on_one_line(char: str, _named: str) -> None:
    shown = printable(f"evil{char}row")
    assert shown == repr(f"evil{char}row")
    assert shown.isprintable() and shown.isascii()


@pytest.mark.parametrize(("char", "named"), REFUSED[:-1])  # JSON cannot carry a lone surrogate
async def test_every_name_a_user_gives_is_refused_with_the_character(
    hookline: Hookline, char: str, named: str
) -> None:
    bad = f"ops{char}rule_01FAKE  yes"
    rule = await hookline.create_rule(name="fine")
    webhook = await hookline.post("/api/v1/webhooks", {"name": "hook", "url": "http://127.0.0.1:9"})
    journey = await hookline.post("/api/v1/journeys", example_journey("walk"))
    assert webhook.status_code == journey.status_code == 201, (webhook.text, journey.text)
    writes = [
        ("POST", "/api/v1/rules", example_rule(name=bad)),
        ("POST", "/api/v1/rules/validate", example_rule(name=bad)),
        ("PUT", f"/api/v1/rules/{rule['id']}", example_rule(name=bad)),
        ("PATCH", f"/api/v1/rules/{rule['id']}", {"name": bad}),
        ("POST", "/api/v1/webhooks", {"name": bad, "url": "http://127.0.0.1:9"}),
        ("PUT", f"/api/v1/webhooks/{webhook.json()['id']}", {"name": bad, "url": "http://x.y"}),
        ("POST", "/api/v1/journeys", example_journey(bad)),
        ("POST", "/api/v1/journeys/validate", example_journey(bad)),
        ("PUT", f"/api/v1/journeys/{journey.json()['id']}", example_journey(bad)),
        ("PATCH", f"/api/v1/journeys/{journey.json()['id']}", {"name": bad}),
        ("POST", "/api/v1/keys", {"role": "read", "name": bad}),
    ]
    for method, path, body in writes:
        resp = await hookline.client.request(method, path, json=body)
        assert_error(resp, 422, field="name", says=f"{named} at index 3")
    names = {
        kind: [
            item["name"] for item in (await hookline.client.get(f"/api/v1/{kind}")).json()["data"]
        ]
        for kind in ("rules", "webhooks", "journeys", "keys")
    }
    assert names == {"rules": ["fine"], "webhooks": ["hook"], "journeys": ["walk"], "keys": []}


async def test_names_in_any_script_are_saved_everywhere(hookline: Hookline) -> None:
    _, admin = await hookline.runtime.keys.create(Role.ADMIN, (), "root")
    hookline.client.headers["Authorization"] = f"Bearer {admin}"  # keys now in use
    for i, name in enumerate(ACCEPTED):
        rule = await hookline.post("/api/v1/rules", example_rule(name=name))
        hook = await hookline.post(
            "/api/v1/webhooks", {"name": name, "url": f"http://127.0.0.1:9/{i}"}
        )
        journey = await hookline.post("/api/v1/journeys", example_journey(name))
        key = await hookline.post("/api/v1/keys", {"role": "read", "name": name})
        for resp in (rule, hook, journey, key):
            assert resp.status_code == 201, resp.text
            assert resp.json()["name"] == name


async def test_keys_create_on_the_data_directory_refuses_the_name_too(tmp_path: Path) -> None:
    made = await _run(
        "keys", "create", "--role", "read", "--name", "a\x1b[2Jb", "--data-dir", str(tmp_path)
    )
    assert made.exit_code == 2, made.output
    assert "name: a key's name cannot hold U+001B (escape) at index 1" in made.stderr


@pytest.mark.parametrize("kind", ["rules", "journeys"])
async def test_apply_files_refuse_a_name_with_a_line_break_and_change_nothing(
    hookline: Hookline, tmp_path: Path, kind: str
) -> None:
    bad = "spin\nupdated   forged (rule_01FAKE)"
    items = (
        [example_rule(name="kept"), example_rule(name=bad)]
        if kind == "rules"
        else [example_journey("kept"), example_journey(bad)]
    )
    path = tmp_path / f"{kind}.yaml"
    path.write_text(yaml.safe_dump({kind: items}, sort_keys=False))
    result = await _run(kind, "apply", "-f", str(path), "--url", hookline.base_url)
    assert result.exit_code == 1, result.output
    noun = kind[:-1]
    # The file's name is quoted escaped, not printed as two lines.
    assert f'{noun} "spin\\nupdated   forged (rule_01FAKE)": name: a name cannot hold ' in (
        result.stderr
    )
    assert "U+000A (line break) at index 4" in result.stderr
    assert "nothing was applied" in result.stderr
    assert result.stdout == ""
    assert (await hookline.client.get(f"/api/v1/{kind}")).json()["data"] == []


def _rename(db: Path, table: str, row_id: str, name: str) -> None:
    """Write a name as an older hookline could, behind this one's back."""
    conn = sqlite3.connect(db)
    try:
        cur = conn.execute(f"UPDATE {table} SET name = ? WHERE id = ?", (name, row_id))
        assert cur.rowcount == 1
        conn.commit()
    finally:
        conn.close()


async def test_names_stored_by_an_older_version_load_work_and_print_escaped(
    make_hookline: MakeHookline,
    receiver: Receiver,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = await make_hookline()
    rule = await first.create_rule(name="spins", activity={"url": receiver.url()})
    broken = await first.create_rule(name="broken")
    hook = (await first.post("/api/v1/webhooks", {"name": "hook", "url": receiver.url()})).json()
    walk = example_journey("walk", receiver.url("/walk"))
    journey = (await first.post("/api/v1/journeys", walk)).json()
    await first.stop()
    db = tmp_path / "data" / "hookline.db"
    forged = "spins\nbroken  rule_01FAKE  yes"
    _rename(db, "rules", rule["id"], forged)
    _rename(db, "rules", broken["id"], "broken\x1b[2J")
    _rename(db, "webhooks", hook["id"], "hook\u202e")
    _rename(db, "journeys", journey["id"], "walk\u2028more")
    conn = sqlite3.connect(db)
    conn.execute("UPDATE rules SET conditions = ? WHERE id = ?", (b'{"all": [', broken["id"]))
    conn.commit()
    conn.close()

    caplog.set_level(logging.ERROR, logger="hookline")
    h = await make_hookline()
    # Started; only the rule whose conditions cannot be read is a problem, not any name.
    health = (await h.client.get("/healthz")).json()
    assert [p["id"] for p in health["problems"]] == [broken["id"]]
    [skipped] = [r.getMessage() for r in caplog.records if broken["id"] in r.getMessage()]
    assert skipped.startswith("rule 'broken\\x1b[2J' (")
    assert "\x1b" not in skipped

    # A name decides nothing: the rule and the journey with such names still send.
    resp = await h.post("/api/v1/events", spin_event())
    assert resp.status_code == 202, resp.text
    assert len(resp.json()["events"][0]["deliveries"]) == 2
    await receiver.wait_for(1, path="/hook")
    await receiver.wait_for(1, path="/walk")

    listed = await _run("rules", "list", "--url", h.base_url)
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert len(lines) == 3  # the header and two rules: no forged row
    assert any(line.startswith(repr(forged)) for line in lines), lines
    assert "\x1b" not in listed.stdout
    journeys = await _run("journeys", "list", "--url", h.base_url)
    assert journeys.exit_code == 0, journeys.output
    assert journeys.stdout.splitlines()[1].startswith("'walk\\u2028more'  ")
    # The API answers JSON, which carries the name exactly.
    by_id = {r["id"]: r["name"] for r in (await h.client.get("/api/v1/rules")).json()["data"]}
    assert by_id[rule["id"]] == forged

    # Still managed: a change that keeps the old name is taken, a new bad name is not.
    paused = await h.client.patch(f"/api/v1/journeys/{journey['id']}", json={"status": "paused"})
    assert paused.status_code == 200, paused.text
    off = await h.client.patch(f"/api/v1/rules/{rule['id']}", json={"enabled": False})
    assert off.status_code == 200, off.text
    renamed = await h.client.patch(f"/api/v1/rules/{rule['id']}", json={"name": "spins"})
    assert renamed.status_code == 200, renamed.text
    same = await h.client.put(f"/api/v1/journeys/{journey['id']}", json=example_journey(forged))
    assert_error(same, 422, field="name", says="U+000A (line break) at index 5")


async def test_keys_list_prints_a_stored_name_escaped(tmp_path: Path) -> None:
    made = await _run(
        "keys", "create", "--role", "read", "--name", "ci", "--data-dir", str(tmp_path), "--json"
    )
    assert made.exit_code == 0, made.output
    key_id = orjson.loads(made.stdout)["id"]
    _rename(tmp_path / "hookline.db", "api_keys", key_id, "ci\rkey_01FAKE")
    listed = await _run("keys", "list", "--data-dir", str(tmp_path))
    assert listed.exit_code == 0, listed.output
    [_header, row] = listed.stdout.splitlines()
    assert row.startswith(f"{key_id}  'ci\\rkey_01FAKE'  read")
    assert "\r" not in listed.stdout
