"""`hookline keys` against a real server, and `hookline serve` refusing an open API on 0.0.0.0."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import typer
from typer.testing import CliRunner, Result

from hookline.cli import app
from hookline.errors import ConfigError
from hookline.keyadmin import refuse_open_exposure
from hookline.keyring import RingConfig
from hookline.keys import AuthMode, Role, is_loopback, keys_required
from hookline.settings import Settings
from tests.helpers import Hookline

runner = CliRunner()


async def _run(*args: str, key: str | None = None) -> Result:
    env = {"HOOKLINE_API_KEY": key} if key else {}
    # The environment may hold a key of its own: only the one given here counts.
    env.setdefault("HOOKLINE_API_KEY", "")
    return await asyncio.to_thread(runner.invoke, app, list(args), env=env)


async def test_first_key_on_the_data_dir_then_the_rest_over_the_api(
    hookline: Hookline,
) -> None:
    url = ("--url", hookline.base_url)
    data_dir = str(hookline.runtime.settings.data_dir)
    # Started a moment ago: let an unknown key reload at once, as it would a second later.
    hookline.runtime.keys.config = RingConfig(miss_reload=0.0)
    # The server runs open (loopback, no key); the first admin key is made on its data.
    first = await _run(
        "keys", "create", "--role", "admin", "--name", "root", "--data-dir", data_dir
    )
    assert first.exit_code == 0, first.output
    admin = first.stdout.strip()
    assert admin.startswith("hlk_") and "\n" not in admin
    assert "key_" in first.stderr and "shown this once" in first.stderr

    # The running server takes the key made behind its back at its first use (else
    # within seconds), and from then on requires keys.
    allowed = await _run("rules", "list", "--json", *url, key=admin)
    assert allowed.exit_code == 0, allowed.output
    denied = await _run("rules", "list", *url)
    assert denied.exit_code == 1
    assert "401" in denied.output

    made = await _run(
        "keys", "create", "--role", "ingest", "--brand", "b1", "--brand", "7", *url, key=admin
    )
    assert made.exit_code == 0, made.output
    ingest = made.stdout.strip()
    sent = await _run(
        "send-event", '{"event_type": "x", "user_ext_id": "u", "ext_brand_id": 7}', *url, key=ingest
    )
    assert sent.exit_code == 0, sent.output

    listed = await _run("keys", "list", *url, key=admin)
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "ROLE", "BRANDS", "PREFIX", "CREATED", "REVOKED"]
    assert len(lines) == 3
    assert "root" in lines[1] and "admin" in lines[1] and admin[:12] + "..." in lines[1]
    assert "ingest" in lines[2] and "b1,7" in lines[2]
    assert admin not in listed.output and ingest not in listed.output

    as_json = orjson.loads((await _run("keys", "list", "--json", *url, key=admin)).stdout)
    ingest_id = as_json[1]["id"]
    assert as_json[1]["revoked_at"] is None

    revoked = await _run("keys", "revoke", ingest_id, *url, key=admin)
    assert revoked.exit_code == 0, revoked.output
    assert f"revoked {ingest_id}" in revoked.stderr
    after = orjson.loads((await _run("keys", "list", "--json", *url, key=admin)).stdout)
    assert after[1]["revoked_at"] is not None
    refused = await _run("send-event", '{"event_type": "x", "user_ext_id": "u"}', *url, key=ingest)
    assert refused.exit_code == 1
    assert "401" in refused.output


async def test_without_a_key_the_cli_says_how_to_get_one(hookline: Hookline) -> None:
    await hookline.runtime.keys.create(Role.ADMIN, (), "root")
    result = await _run("keys", "list", "--url", hookline.base_url)
    assert result.exit_code == 1
    assert "--key or HOOKLINE_API_KEY" in result.output
    assert "--data-dir" in result.output


async def test_keys_on_the_data_dir_without_a_server(tmp_path: Path) -> None:
    data = ("--data-dir", str(tmp_path / "d"))
    made = await _run("keys", "create", "--role", "read", "--json", *data)
    assert made.exit_code == 0, made.output
    key = orjson.loads(made.stdout)
    assert key["role"] == "read" and key["key"].startswith("hlk_")
    revoked = await _run("keys", "revoke", key["id"], *data)
    assert revoked.exit_code == 0, revoked.output
    listed = orjson.loads((await _run("keys", "list", "--json", *data)).stdout)
    assert [k["id"] for k in listed] == [key["id"]]
    assert listed[0]["revoked_at"] is not None
    missing = await _run("keys", "revoke", "key_nope", *data)
    assert missing.exit_code == 1
    assert "no API key" in missing.output
    bad = await _run("keys", "create", "--role", "read", "--brand", "", *data)
    assert bad.exit_code == 2
    assert "brands[0]" in bad.output
    role = await _run("keys", "create", "--role", "root", *data)
    assert role.exit_code == 2


async def test_list_and_revoke_refuse_a_data_dir_with_no_database(tmp_path: Path) -> None:
    """A mistyped --data-dir must not become a new, empty database that has no keys."""
    real = tmp_path / "hookline-data"
    made = await _run("keys", "create", "--role", "admin", "--json", "--data-dir", str(real))
    assert made.exit_code == 0, made.output
    key_id = orjson.loads(made.stdout)["id"]
    empty = tmp_path / "empty"
    empty.mkdir()
    for typo in (tmp_path / "hookline-dat", empty, real / "hookline.db"):
        for command in (["list"], ["revoke", key_id]):
            result = await _run("keys", *command, "--data-dir", str(typo))
            assert result.exit_code == 2, result.output
            assert result.stdout == ""
            assert "no hookline database" in result.stderr and str(typo) in result.stderr
            assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "hookline-dat").exists()
    assert list(empty.iterdir()) == []
    # The real directory still answers, and the key was not revoked by the refusals.
    listed = await _run("keys", "list", "--json", "--data-dir", str(real))
    assert [k["revoked_at"] for k in orjson.loads(listed.stdout)] == [None]


async def test_create_makes_the_database_in_a_new_or_an_empty_directory(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for data_dir in (tmp_path / "new" / "data", empty):
        made = await _run("keys", "create", "--role", "admin", "--data-dir", str(data_dir))
        assert made.exit_code == 0, made.output
        assert (data_dir / "hookline.db").is_file()
        listed = await _run("keys", "list", "--data-dir", str(data_dir))
        assert listed.exit_code == 0 and len(listed.stdout.splitlines()) == 2
    a_file = tmp_path / "notes.txt"
    a_file.write_text("")
    made = await _run("keys", "create", "--role", "admin", "--data-dir", str(a_file))
    assert made.exit_code == 1
    assert f"cannot use the data directory {a_file}" in made.stderr


def _blocked_port() -> tuple[socket.socket, int]:
    """A port held on 127.0.0.1, so nothing can listen on 0.0.0.0 with it either.

    If the refusal ever broke, `serve` would fail to bind instead of serving the world.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


SERVE = [sys.executable, "-c", "from hookline.cli import main; main()", "serve"]


def test_serve_on_0_0_0_0_without_keys_refuses_before_listening(tmp_path: Path) -> None:
    blocker, port = _blocked_port()
    with blocker:
        env = {**os.environ, "HOOKLINE_DATA_DIR": str(tmp_path / "d")}
        env.pop("HOOKLINE_AUTH", None)
        result = subprocess.run(
            [*SERVE, "--host", "0.0.0.0", "--port", str(port)],
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert "no API keys" in err and "0.0.0.0 is not a loopback address" in err
    assert f"hookline keys create --role admin --data-dir {tmp_path / 'd'}" in err
    assert "HOOKLINE_AUTH=off" in err
    assert "address already in use" not in err.lower()  # it never tried to listen


async def test_serve_check_passes_once_a_key_exists_or_auth_is_explicit(tmp_path: Path) -> None:
    exposed = Settings(host="0.0.0.0", data_dir=tmp_path / "d")
    with pytest.raises(typer.Exit):
        await asyncio.to_thread(refuse_open_exposure, exposed)
    made = await _run("keys", "create", "--role", "admin", "--data-dir", str(tmp_path / "d"))
    assert made.exit_code == 0
    await asyncio.to_thread(refuse_open_exposure, exposed)  # no exit: keys exist
    off = Settings(host="0.0.0.0", data_dir=tmp_path / "other", auth="off")
    await asyncio.to_thread(refuse_open_exposure, off)


def test_bad_auth_setting_is_refused_with_its_name() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"HOOKLINE_AUTH": "maybe"})
    assert info.value.field == "HOOKLINE_AUTH"
    assert Settings.from_env({"HOOKLINE_AUTH": "OFF"}).auth_mode is AuthMode.OFF


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("example.com", False),
        ("", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    assert keys_required(AuthMode.AUTO, host, 0) is not loopback
    assert keys_required(AuthMode.AUTO, host, 1) is True
    assert keys_required(AuthMode.OFF, host, 1) is False
    assert keys_required(AuthMode.ON, host, 0) is True
