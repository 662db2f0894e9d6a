"""Names people give (rules, saved webhooks, journeys, API keys) are one line that prints as
written: refused with the character and its place when they are not, escaped when printed
if an older hookline stored one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from hookline.cli import app
from hookline.errors import InvalidInput
from hookline.keys import Role
from hookline.labels import check_label, describe, printable
from tests.helpers import Hookline, example_rule
from tests.test_api_errors import assert_error

MakeHookline = Callable[..., Coroutine[Any, Any, Hookline]]
runner = CliRunner()

# Each refused character, with how the error names it.
REFUSED = [
    ("\n", "U+000A (line break)"),
    ("\r", "U+000D (carriage return)"),
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


def _journey(name: str, url: str = "http://127.0.0.1:9/hi") -> dict[str, Any]:
    return {
        "name": name,
        "status": "active",
        "entry": {"trigger": {"event_type": "minigame_spin_issued"}},
        "start": "hello",
        "blocks": {
            "hello": {"type": "webhook", "activity": {"url": url}},
        },
    }


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
    journey = await hookline.post("/api/v1/journeys", _journey("walk"))
    assert webhook.status_code == journey.status_code == 201, (webhook.text, journey.text)
    writes = [
        ("POST", "/api/v1/rules", example_rule(name=bad)),
        ("POST", "/api/v1/rules/validate", example_rule(name=bad)),
        ("PUT", f"/api/v1/rules/{rule['id']}", example_rule(name=bad)),
        ("PATCH", f"/api/v1/rules/{rule['id']}", {"name": bad}),
        ("POST", "/api/v1/webhooks", {"name": bad, "url": "http://127.0.0.1:9"}),
        ("PUT", f"/api/v1/webhooks/{webhook.json()['id']}", {"name": bad, "url": "http://x.y"}),
        ("POST", "/api/v1/journeys", _journey(bad)),
        ("POST", "/api/v1/journeys/validate", _journey(bad)),
        ("PUT", f"/api/v1/journeys/{journey.json()['id']}", _journey(bad)),
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
        journey = await hookline.post("/api/v1/journeys", _journey(name))
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
        else [_journey("kept"), _journey(bad)]
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
