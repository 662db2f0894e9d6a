"""`hookline serve` as a user runs it: a subprocess, configured by flags and environment."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

SERVE = [sys.executable, "-c", "from hookline.cli import main; main()", "serve"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_healthy(client: httpx.AsyncClient, proc: asyncio.subprocess.Process) -> None:
    for _ in range(300):
        if proc.returncode is not None:
            raise AssertionError(f"hookline exited with {proc.returncode}")
        try:
            if (await client.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.05)  # polling a process we do not control: no event to await
    raise AssertionError("hookline did not become healthy")


@pytest.mark.timeout(60)
async def test_env_configured_server_drains_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "HOOKLINE_PORT": str(port), "HOOKLINE_DATA_DIR": str(tmp_path / "d")}
    log_path = tmp_path / "serve.log"
    log = log_path.open("wb")
    proc = await asyncio.create_subprocess_exec(*SERVE, env=env, stdout=log, stderr=log)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            await _wait_healthy(client, proc)
            events = [{"event_type": "x", "user_ext_id": f"u{i}"} for i in range(50)]
            resp = await client.post("/api/v1/events", json=events)
            assert resp.status_code == 202
            event_id = resp.json()["events"][-1]["id"]
            proc.send_signal(signal.SIGTERM)
            # uvicorn shuts down gracefully, then re-raises the signal it caught.
            assert await asyncio.wait_for(proc.wait(), 30) in (0, -signal.SIGTERM)
            assert b"Application shutdown complete" in log_path.read_bytes()
        assert (tmp_path / "d" / "hookline.db").exists()
        # Start again on the same data: the accepted event is there.
        proc = await asyncio.create_subprocess_exec(*SERVE, env=env, stdout=log, stderr=log)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            await _wait_healthy(client, proc)
            assert (await client.get(f"/api/v1/events/{event_id}")).status_code == 200
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()


def test_bad_setting_is_refused_with_its_name(tmp_path: Path) -> None:
    env = {**os.environ, "HOOKLINE_RETRY_SCHEDULE": "0,soon", "HOOKLINE_DATA_DIR": str(tmp_path)}
    result = subprocess.run(SERVE, env=env, capture_output=True, timeout=30, check=False)
    assert result.returncode == 2
    assert b"HOOKLINE_RETRY_SCHEDULE" in result.stderr


def test_an_unknown_log_level_flag_is_refused_with_its_name_not_a_trace(tmp_path: Path) -> None:
    env = {**os.environ, "HOOKLINE_DATA_DIR": str(tmp_path)}
    args = [*SERVE, "--port", "1", "--log-level", "verbose"]
    result = subprocess.run(args, env=env, capture_output=True, timeout=30, check=False)
    assert result.returncode == 2
    assert b"HOOKLINE_LOG_LEVEL must be one of debug, info, warning, error" in result.stderr
    assert b"Traceback" not in result.stderr
    assert b"ValueError" not in result.stderr
