"""What ``hookline serve`` takes before it starts: its data directory and its port.

Both are taken before the runtime starts, so a second server on the same data, or on a
port already in use, stops at once with a message that says why, before ``hookline
ready`` is ever logged.

The data directory is held by an OS lock (``flock``) on a file inside it, which also
records the holder's pid for the message. The kernel drops the lock when its holder
exits, however it exits, so a crashed server never blocks the next one. One live server
per data directory holds until several processes can share one database safely.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from hookline.errors import HooklineError

LOCK_FILE = "hookline.lock"


class DataDirBusy(HooklineError):
    """Another live hookline serves this data directory."""

    code = "data_dir_busy"
    status = 409


class CannotListen(HooklineError):
    """The address or port cannot be listened on."""

    code = "cannot_listen"
    status = 409


@dataclass
class DataDirLock:
    """The lock on a data directory, held until :meth:`release` or the process ends."""

    path: Path
    _fd: int | None = field(default=None, repr=False)

    @classmethod
    def acquire(cls, data_dir: Path) -> DataDirLock:
        """Take the data directory (creating it), or raise DataDirBusy naming the holder."""
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / LOCK_FILE
        # Not inherited (os.open's default): sender processes must not keep it alive.
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder is not None else "a process that is starting"
            raise DataDirBusy(
                f"the data directory {data_dir.resolve()} is in use by another hookline "
                f"({who}); stop it, or give this one another --data-dir or HOOKLINE_DATA_DIR",
                field="HOOKLINE_DATA_DIR",
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)  # no stale pid for the next reader
        os.close(self._fd)  # closing the last descriptor drops the lock
        self._fd = None


def holder(data_dir: Path) -> int | None:
    """The pid of the live hookline that holds ``data_dir`` (0 if it has not written it
    yet), or None when no server holds it."""
    try:
        fd = os.open(data_dir / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_pid(fd) or 0
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


def base_url(host: str, port: int) -> str:
    """The URL a client uses for ``host:port``: an IPv6 address goes in brackets."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` for the server to accept on, or CannotListen."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # As uvicorn does: a restart may bind while old connections sit in TIME_WAIT.
        # A port with a live listener still fails with EADDRINUSE.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            detail = f"port {port} on {host} is in use; set --port or HOOKLINE_PORT"
            raise CannotListen(detail, field="HOOKLINE_PORT") from None
        reason = exc.strerror or str(exc)
        raise CannotListen(
            f"cannot listen on {host}:{port}: {reason}; set --host/--port or "
            "HOOKLINE_HOST/HOOKLINE_PORT",
            field="HOOKLINE_HOST",
        ) from None
    # Listening at once: a client that connects while hookline starts waits in the backlog
    # instead of being refused, so "ready" in the log is true when it is written.
    sock.listen(2048)
    return sock
