"""Issue 8 read as a user would, bullet by bullet: the gaps an audit found, each pinned here.

Keys and their command line: a ``null`` among a key's brands, a key name that would print
as two lines, ``hookline --url ... keys`` (the ``--url`` before the command), a key made
or revoked on the data directory of a server that is running, and a key pasted where its
id goes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import httpx
import orjson
import pytest
from typer.testing import CliRunner, Result

from hookline.api.access import loggable_path
from hookline.cli import app
from hookline.keyring import RingConfig
from hookline.keys import KEY_PREFIX, Role
from hookline.serving import DataDirLock, holder
from tests.helpers import Hookline

runner = CliRunner()


async def _run(*args: str, key: str = "") -> Result:
    # The environment may hold a key or a URL of its own: only what is given here counts.
    env = {"HOOKLINE_API_KEY": key, "HOOKLINE_URL": ""}
    return await asyncio.to_thread(runner.invoke, app, list(args), env=env)


def _refresh_in(hookline: Hookline, monkeypatch: pytest.MonkeyPatch, seconds: float) -> float:
    """Shorten the server's key refresh and, alike, the wait of ``keys ... --data-dir`` beside it.

    The command waits ``RingConfig().refresh``, what a server started by default uses: the
    relation the tests pin holds at any length, and 5 s twice over is most of a file's time.
    """
    config = RingConfig(refresh=seconds)
    hookline.runtime.keys.config = config
    monkeypatch.setattr("hookline.keyring.RingConfig", lambda: config)
    return seconds


async def test_a_null_among_a_keys_brands_is_refused_not_made_the_brand_none(
    hookline: Hookline,
) -> None:
    """``"brands": [null]`` once made a key of the brand "None", which sees events of "None"."""
    resp = await hookline.post("/api/v1/keys", {"role": "read", "brands": ["b1", None]})
    assert resp.status_code == 422, resp.text
    assert resp.json()["code"] == "invalid_input"
    assert resp.json()["field"] == "brands[1]"
    assert (await hookline.client.get("/api/v1/keys")).json()["data"] == []


async def test_a_key_name_with_a_line_break_is_refused(hookline: Hookline) -> None:
    """A name is printed in the ``keys list`` table: a line break would forge a row there."""
    for name in ("ops\nkey_01FAKE  root  admin", "tab\there", "bell\x07", "del\x7f"):
        resp = await hookline.post("/api/v1/keys", {"role": "read", "name": name})
        assert resp.status_code == 422, (name, resp.text)
        assert resp.json()["field"] == "name"
    made = await hookline.post("/api/v1/keys", {"role": "read", "name": "Shop backend (é)"})
    assert made.status_code == 201, made.text


async def test_the_keys_commands_take_the_url_given_before_the_command(
    hookline: Hookline,
) -> None:
    """``hookline --url URL keys list`` talks to URL, as ``hookline --url URL rules list`` does."""
    _, admin = await hookline.runtime.keys.create(Role.ADMIN, (), "root")
    listed = await _run("--url", hookline.base_url, "keys", "list", "--json", key=admin)
    assert listed.exit_code == 0, listed.output
    assert [k["name"] for k in orjson.loads(listed.stdout)] == ["root"]

    made = await _run(
        "--url", hookline.base_url, "keys", "create", "--role", "read", "--json", key=admin
    )
    assert made.exit_code == 0, made.output
    read = orjson.loads(made.stdout)
    revoked = await _run("--url", hookline.base_url, "keys", "revoke", read["id"], key=admin)
    assert revoked.exit_code == 0, revoked.output
    # After the command, as before it: --url there wins over the one before the command.
    after = await _run(
        "--url", "http://127.0.0.1:9", "keys", "list", "--url", hookline.base_url, key=admin
    )
    assert after.exit_code == 0, after.output
    assert read["id"] in after.stdout


def test_holder_names_the_server_that_holds_a_data_directory(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    assert holder(data_dir) is None  # no directory yet
    lock = DataDirLock.acquire(data_dir)
    try:
        held = holder(data_dir)
        assert held is not None and held > 0
    finally:
        lock.release()
    assert holder(data_dir) is None


async def test_a_key_revoked_on_the_data_directory_is_refused_once_the_command_returns(
    hookline: Hookline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server holds the keys it knows in memory and reloads them every few seconds: with
    ``--data-dir`` while it runs, ``keys revoke`` returns only once the server must have
    dropped the key, so a leaked key is dead when the operator sees the command finish."""
    data_dir = hookline.runtime.settings.data_dir
    refresh = _refresh_in(hookline, monkeypatch, 0.5)
    _, admin = await hookline.runtime.keys.create(Role.ADMIN, (), "root")
    record, leaked = await hookline.runtime.keys.create(Role.READ, (), "leaked")
    as_leaked = {"Authorization": f"Bearer {leaked}"}
    used = await hookline.client.get("/api/v1/rules", headers=as_leaked)
    assert used.status_code == 200, used.text  # the server now holds the key in memory

    # As `hookline serve` does: the in-process test server takes no lock of its own.
    lock = DataDirLock.acquire(data_dir)
    try:
        started = time.monotonic()
        revoked = await _run("keys", "revoke", record.id, "--data-dir", str(data_dir))
        took = time.monotonic() - started
    finally:
        lock.release()
    assert revoked.exit_code == 0, revoked.output
    assert "waiting" in revoked.stderr and f"revoked {record.id}" in revoked.stderr
    assert took >= refresh

    refused = await hookline.client.get("/api/v1/rules", headers=as_leaked)
    assert refused.status_code == 401, refused.text
    assert refused.json()["field"] == "Authorization"
    still = await hookline.client.get("/api/v1/rules", headers={"Authorization": f"Bearer {admin}"})
    assert still.status_code == 200


async def test_without_a_server_the_data_directory_commands_do_not_wait(tmp_path: Path) -> None:
    data = ("--data-dir", str(tmp_path / "d"))
    started = time.monotonic()
    made = await _run("keys", "create", "--role", "admin", "--json", *data)
    revoked = await _run("keys", "revoke", orjson.loads(made.stdout)["id"], *data)
    assert made.exit_code == 0 and revoked.exit_code == 0, made.output + revoked.output
    assert "waiting" not in made.stderr + revoked.stderr
    assert time.monotonic() - started < RingConfig().refresh


async def test_an_open_server_closes_once_the_first_key_command_returns(
    hookline: Hookline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first admin key, made on the data directory of a server running open on loopback:
    when the command returns, a request without a key is refused."""
    data_dir = hookline.runtime.settings.data_dir
    _refresh_in(hookline, monkeypatch, 0.5)
    assert (await hookline.client.get("/api/v1/rules")).status_code == 200  # open
    lock = DataDirLock.acquire(data_dir)
    try:
        made = await _run("keys", "create", "--role", "admin", "--data-dir", str(data_dir))
    finally:
        lock.release()
    assert made.exit_code == 0, made.output
    assert made.stdout.strip().startswith("hlk_")
    refused = await hookline.client.get("/api/v1/rules")
    assert refused.status_code == 401, refused.text
    async with httpx.AsyncClient(base_url=hookline.base_url) as client:
        ok = await client.get(
            "/api/v1/rules", headers={"Authorization": f"Bearer {made.stdout.strip()}"}
        )
    assert ok.status_code == 200


async def test_a_key_pasted_where_its_id_goes_is_never_logged_nor_echoed(
    hookline: Hookline, caplog: pytest.LogCaptureFixture
) -> None:
    """Whoever holds a leaked key revokes it by the key (``hookline keys revoke hlk_...``):
    the path carries it, and the log line of every request shows the path."""
    caplog.set_level(logging.INFO, logger="hookline")
    _, admin = await hookline.runtime.keys.create(Role.ADMIN, (), "root")
    _, leaked = await hookline.runtime.keys.create(Role.READ, (), "leaked")
    as_admin = {"Authorization": f"Bearer {admin}"}
    resp = await hookline.client.delete(f"/api/v1/keys/{leaked}", headers=as_admin)
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"] == "key_id"
    assert "keys list" in resp.json()["detail"] and leaked not in resp.text
    other = await hookline.client.get(f"/api/v1/rules/{leaked}/x", headers=as_admin)
    assert other.status_code == 404
    assert leaked not in caplog.text and leaked[4:] not in caplog.text
    assert f"DELETE /api/v1/keys/{KEY_PREFIX}*** 422" in caplog.text

    cli = await _run(
        "keys", "revoke", leaked, "--data-dir", str(hookline.runtime.settings.data_dir)
    )
    assert cli.exit_code == 1
    assert "keys list" in cli.output and leaked not in cli.output
    assert (await hookline.client.get("/api/v1/rules", headers=as_admin)).status_code == 200


def test_api_keys_are_masked_in_logged_paths() -> None:
    assert loggable_path("/api/v1/keys/hlk_abc-DEF_123") == "/api/v1/keys/hlk_***"
    assert loggable_path("/api/v1/users/hlk_x/state") == "/api/v1/users/hlk_***/state"
    assert loggable_path("/echo-send/hlk_abcdefgh/") == "/echo-send/***/"
    assert loggable_path("/api/v1/keys/key_01J") == "/api/v1/keys/key_01J"
