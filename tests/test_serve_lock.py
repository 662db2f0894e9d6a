"""`hookline serve` refuses what it cannot hold: a data directory in use, a port in use."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from hookline.serving import DataDirBusy, DataDirLock, base_url
from tests.test_serve import SERVE, _free_port, _wait_healthy


def _env(port: int, data_dir: Path) -> dict[str, str]:
    return {**os.environ, "HOOKLINE_PORT": str(port), "HOOKLINE_DATA_DIR": str(data_dir)}


@asynccontextmanager
async def _serving(
    port: int, data_dir: Path, log: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *SERVE, env=_env(port, data_dir), stdout=out, stderr=out
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            await _wait_healthy(client, proc)
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def _serve_once(port: int, data_dir: Path) -> subprocess.CompletedProcess[str]:
    """A server that is expected to refuse to start: it must exit on its own."""
    return subprocess.run(
        SERVE, env=_env(port, data_dir), capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.timeout(90)
async def test_second_server_on_the_same_data_dir_refuses_and_names_the_holder(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    async with _serving(_free_port(), data, tmp_path / "first.log") as first:
        second = await asyncio.to_thread(_serve_once, _free_port(), data)
        assert second.returncode == 1
        message = " ".join(second.stderr.split())
        assert f"the data directory {data.resolve()} is in use by another hookline" in message
        assert f"(pid {first.pid})" in message
        assert "hookline ready" not in second.stderr
        assert first.returncode is None  # the holder is untouched


@pytest.mark.timeout(90)
async def test_a_killed_holder_does_not_block_the_next_server(tmp_path: Path) -> None:
    data, port = tmp_path / "data", _free_port()
    async with _serving(port, data, tmp_path / "first.log") as first:
        first.send_signal(signal.SIGKILL)
        await first.wait()
    assert (data / "hookline.lock").read_text().strip() == str(first.pid)  # stale, unlocked
    async with _serving(port, data, tmp_path / "second.log") as second:
        assert (data / "hookline.lock").read_text().strip() == str(second.pid)


@pytest.mark.timeout(60)
def test_port_in_use_is_reported_before_ready(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _serve_once(port, tmp_path / "data")
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use; set --port or HOOKLINE_PORT" in result.stderr
    assert "hookline ready" not in result.stderr
    # It let go of the data directory on the way out.
    DataDirLock.acquire(tmp_path / "data").release()


def test_lock_in_one_process_refuses_a_second_taker(tmp_path: Path) -> None:
    held = DataDirLock.acquire(tmp_path)
    try:
        with pytest.raises(DataDirBusy) as refused:
            DataDirLock.acquire(tmp_path)
        assert f"(pid {os.getpid()})" in refused.value.detail
    finally:
        held.release()
    DataDirLock.acquire(tmp_path).release()  # released means free


def test_the_url_logged_at_start_can_be_pasted_for_an_ipv6_host_too() -> None:
    assert base_url("127.0.0.1", 8080) == "http://127.0.0.1:8080"
    assert base_url("localhost", 8080) == "http://localhost:8080"
    # http://::1:8080 is no URL: the brackets tell the address from the port.
    assert base_url("::1", 8080) == "http://[::1]:8080"
    assert httpx.URL(base_url("::1", 8080)).port == 8080
