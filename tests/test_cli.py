"""The command line against a real server (run in a thread: the CLI blocks)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import orjson
import typer
from typer.testing import CliRunner, Result

from hookline.cli import app
from tests.helpers import Hookline, Receiver, example_rule

runner = CliRunner()


async def _run(*args: str, stdin: str | None = None) -> Result:
    return await asyncio.to_thread(runner.invoke, app, list(args), input=stdin)


async def test_send_event_from_argument_file_and_stdin(hookline: Hookline, tmp_path: Path) -> None:
    url = ("--url", hookline.base_url)
    event = '{"event_type": "level_up", "user_ext_id": "u-1", "payload": {"level": 2}}'
    result = await _run("send-event", event, *url)
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout)["accepted"] == 1
    path = tmp_path / "events.json"
    path.write_text(f"[{event}, {event}]")
    result = await _run("send-event", "-f", str(path), *url)
    assert orjson.loads(result.stdout)["accepted"] == 2
    result = await _run("send-event", *url, stdin=event)
    assert orjson.loads(result.stdout)["accepted"] == 1


def test_send_event_from_a_file_that_is_not_there_says_so_without_a_trace(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "events.json"
    # Nothing is sent: the port is the discard port, and the file is read first.
    result = runner.invoke(app, ["send-event", "-f", str(missing), "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 2
    assert f"cannot read {missing}: No such file or directory" in result.output
    assert not isinstance(result.exception, OSError)


def test_a_server_url_without_its_scheme_is_refused_saying_what_it_should_be() -> None:
    # urllib took `127.0.0.1:8080` for a scheme and a path, and the CLI said it could not
    # connect to "None:80"; `notaurl` raised a trace. Nothing is sent either way.
    for args in (["--url", "127.0.0.1:9"], ["--url", "notaurl"], ["--url", "http://127.0.0.1:x"]):
        for command in (["rules", "list"], ["keys", "list"]):
            result = runner.invoke(app, [*args, *command])
            assert result.exit_code == 1, result.output
            assert "must be http:// or https:// and a host" in result.output
            assert f"got {args[1]!r}" in result.output
            assert result.exception is None or isinstance(result.exception, SystemExit)


async def test_send_event_error_is_reported(hookline: Hookline) -> None:
    result = await _run("send-event", '{"event_type": 1}', "--url", hookline.base_url)
    assert result.exit_code == 1
    assert "event_type" in result.output


async def test_unreachable_server_is_a_clear_error() -> None:
    result = await _run("rules", "list", "--url", "http://127.0.0.1:9")
    assert result.exit_code == 1
    # The words of a failed attempt, without urllib's "[Errno 111]" or a made-up "HTTP 0".
    assert "cannot connect to 127.0.0.1:9: connection refused" in result.output
    assert "HTTP 0" not in result.output


async def test_rules_apply_is_idempotent_by_name(
    hookline: Hookline, receiver: Receiver, tmp_path: Path
) -> None:
    rules_file = tmp_path / "rules.yaml"
    rule = example_rule(activity={"url": receiver.url()})
    other = example_rule(name="levels", trigger={"event_type": "level_up"}, conditions=None)
    other["activity"]["body"] = {"user": "{{state.user_ext_id}}"}
    import yaml

    rules_file.write_text(yaml.safe_dump({"rules": [rule, other]}))
    url = ("--url", hookline.base_url)
    first = await _run("rules", "apply", "-f", str(rules_file), *url)
    assert first.exit_code == 0, first.output
    assert _verbs(first.output) == ["created", "created"]
    second = await _run("rules", "apply", "-f", str(rules_file), *url)
    assert _verbs(second.output) == ["unchanged", "unchanged"], second.output
    rule["enabled"] = False
    rules_file.write_text(yaml.safe_dump([rule, other]))
    third = await _run("rules", "apply", "-f", str(rules_file), *url)
    assert "updated   spin-to-crm" in third.output
    listed = await _run("rules", "list", "--json", *url)
    rules = {r["name"]: r for r in orjson.loads(listed.stdout)}
    assert set(rules) == {"spin-to-crm", "levels"}
    assert rules["spin-to-crm"]["enabled"] is False
    table = await _run("rules", "list", *url)
    assert "levels" in table.output


def _verbs(output: str) -> list[str]:
    """The first word of each per-rule line (the summary line is left out)."""
    return [line.split()[0] for line in output.splitlines() if "(rule_" in line]


async def test_rules_apply_reports_invalid_rule(hookline: Hookline, tmp_path: Path) -> None:
    bad = example_rule(activity={"body": '{"a": {{event.x}} }}'})
    path = tmp_path / "bad.json"
    path.write_bytes(orjson.dumps([bad]))
    result = await _run("rules", "apply", "-f", str(path), "--url", hookline.base_url)
    assert result.exit_code == 1
    assert "activity.body" in result.output


async def test_echo_list(hookline: Hookline) -> None:
    await hookline.client.post("/echo-send/cli-secret-1/", json={"hello": "world"})
    result = await _run("echo", "list", "cli-secret-1", "--url", hookline.base_url)
    assert result.exit_code == 0
    listed = orjson.loads(result.stdout)
    assert listed["requests"][0]["json"] == {"hello": "world"}


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    for command in ("serve", "send-event", "rules", "echo"):
        assert command in result.output


def _command_paths(group: Any, prefix: str) -> list[str]:
    """Every command's words, subcommands of a group included (typer keeps its own click)."""
    paths: list[str] = []
    for name, command in sorted(group.commands.items()):
        if hasattr(command, "commands"):
            paths += _command_paths(command, f"{prefix} {name}")
        else:
            paths.append(f"{prefix} {name}")
    return paths


def test_the_readme_command_line_section_shows_every_command() -> None:
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    start = text.index("## Command line")
    (block,) = re.findall(r"```sh\n(.*?)```", text[start : text.index("\n## ", start + 1)], re.S)[
        :1
    ]
    shown = {" ".join(line.split()[:3]) for line in block.splitlines()}
    commands = _command_paths(typer.main.get_command(app), "hookline")
    assert len(commands) >= 12
    missing = [c for c in commands if not any(s == c or s.startswith(c + " ") for s in shown)]
    assert missing == []


def _commands(group: Any, prefix: str) -> list[tuple[str, Any]]:
    """Every command with its words, as `_command_paths` names them."""
    found: list[tuple[str, Any]] = []
    for name, command in sorted(group.commands.items()):
        if hasattr(command, "commands"):
            found += _commands(command, f"{prefix} {name}")
        else:
            found.append((f"{prefix} {name}", command))
    return found


def test_the_readme_command_line_section_shows_every_option_of_each_command() -> None:
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    start = text.index("## Command line")
    section = text[start : text.index("\n## ", start + 1)]
    (block,) = re.findall(r"```sh\n(.*?)```", section, re.S)[:1]
    # The client options every command shares are told once, in the prose under the block.
    shared = {"--url", "--key"}
    missing = []
    for path, command in _commands(typer.main.get_command(app), "hookline"):
        lines = [line for line in block.splitlines() if line.startswith(path + " ")]
        shown = {word.strip("[]") for line in lines for word in line.split()}
        for param in command.params:
            names = [*param.opts, *param.secondary_opts]
            if param.param_type_name != "option" or "--help" in names:
                continue
            if set(names) & shared and all(f"`{n}`" in section for n in set(names) & shared):
                continue
            if not shown & set(names):
                missing.append(f"{path} {names[0]}")
    assert missing == []
