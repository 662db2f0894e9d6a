"""Child processes of the benchmark: start, wait until ready, always stop; the receiver's remote."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
HOST = "127.0.0.1"


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on uvloop when it is installed, else on the default asyncio loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def free_port_range(count: int, start: int = 21000) -> int:
    """The first of ``count`` consecutive free ports at or above ``start``."""
    port = start
    while port + count < 60000:
        for offset in range(count):
            with socket.socket() as sock:
                try:
                    sock.bind((HOST, port + offset))
                except OSError:
                    port += offset + 1
                    break
        else:
            return port
    raise RuntimeError(f"no {count} consecutive free ports on {HOST}")


class Child:
    """One subprocess with its output in a log file; ``stop()`` is safe to call twice."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_dir: Path,
        env: dict[str, str] | None = None,
        drop_prefix: str | None = None,
    ) -> None:
        """Start ``argv`` with ``env`` added to this process's environment, less the
        variables named ``drop_prefix``* (those the child must not inherit)."""
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            list(argv),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**inherited(drop_prefix), **(env or {})},
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM the child's process group, SIGKILL it after ``grace`` seconds."""
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait(5)
        else:
            # The leader is gone; make sure nothing it started is left behind.
            self._signal(signal.SIGKILL)
        self._log.close()
        return self.proc.returncode

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def tail(self, lines: int = 20) -> str:
        """The last lines of the child's log, for error messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def inherited(drop_prefix: str | None) -> dict[str, str]:
    """This process's environment without the variables starting with ``drop_prefix``."""
    if not drop_prefix:
        return dict(os.environ)
    return {k: v for k, v in os.environ.items() if not k.startswith(drop_prefix)}


def python_module(module: str, *args: str) -> list[str]:
    """The argv that runs ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def wait_http(url: str, child: Child, timeout: float = 60.0) -> None:
    """Poll ``url`` until it answers anything below 500; fail early if the child died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited while starting:\n{child.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{child.name} did not answer {url} within {timeout:.0f} s")


def wait_port(port: int, child: Child, timeout: float = 30.0) -> None:
    """Wait until something accepts TCP connections on ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited while starting:\n{child.tail()}")
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{child.name} did not listen on {port} within {timeout:.0f} s")


class ReceiverRemote:
    """The orchestrator's line-protocol client for the receiver's control port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._sock: socket.socket | None = None
        self._file: Any = None

    def _ask(self, line: str) -> str:
        if self._sock is None:
            self._sock = socket.create_connection((HOST, self.port), timeout=120)
            self._file = self._sock.makefile("rwb")
        self._file.write(line.encode() + b"\n")
        self._file.flush()
        return str(self._file.readline().decode().strip())

    def count(self) -> tuple[int, int, int]:
        """(requests received, requests that carried a seq, distinct seqs)."""
        requests, with_seq, distinct = self._ask("count").split()
        return int(requests), int(with_seq), int(distinct)

    def reset(self) -> None:
        self._ask("reset")

    def dump(self, path: Path) -> None:
        """Have the receiver write every arrival, duplicates too, as ``seq,t_ns`` lines."""
        if self._ask(f"dump {path}") != "ok":
            raise RuntimeError("the receiver could not dump its arrivals")

    def arrivals(self, path: Path) -> dict[int, int]:
        """seq -> arrival time (monotonic ns); the first arrival wins for a duplicate."""
        if self._ask(f"dump {path}") != "ok":
            raise RuntimeError("the receiver could not dump its arrivals")
        found: dict[int, int] = {}
        with path.open() as lines:
            for line in lines:
                seq, _, t = line.partition(",")
                found.setdefault(int(seq), int(t))
        path.unlink()
        return found

    def wait_for(
        self, expected: int, timeout: float, stall: float | None = None
    ) -> tuple[int, float]:
        """Poll until ``expected`` distinct seqs arrived, ``timeout`` passed, or (with
        ``stall``) nothing new arrived for ``stall`` seconds; (requests, waited)."""
        started = last_progress = time.monotonic()
        seen = -1
        while True:
            requests, _, distinct = self.count()
            now = time.monotonic()
            if distinct != seen:
                seen, last_progress = distinct, now
            waited = now - started
            stalled = stall is not None and now - last_progress > stall
            if distinct >= expected or waited > timeout or stalled:
                return requests, waited
            time.sleep(0.05)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class RssSampler:
    """Samples a process's VmRSS every ``interval`` seconds in a thread; reads VmHWM on stop."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[int, int]] = []  # (monotonic ns, RSS KiB)
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def _read(self) -> dict[str, int]:
        found: dict[str, int] = {}
        try:
            with open(f"/proc/{self.pid}/status") as status:
                for line in status:
                    key, _, value = line.partition(":")
                    if key in ("VmRSS", "VmHWM"):
                        found[key] = int(value.split()[0])
        except OSError:
            pass
        return found

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            rss = self._read().get("VmRSS")
            if rss is not None:
                self.samples.append((time.monotonic_ns(), rss))

    def stop(self) -> int:
        """Stop sampling; the peak RSS (VmHWM) in KiB, read while the process still runs."""
        self.peak_kib = self._read().get("VmHWM", 0)
        self._stop.set()
        self._thread.join()
        return self.peak_kib
