"""The tests' safety net: no connection, and no DNS query, may leave this machine.

Installed by tests/conftest.py in the test process, and in every Python process the tests
start (sender processes, ``hookline serve``, the CLI) through PYTHONPATH, where Python
imports it as ``sitecustomize`` at start-up. It is an audit hook (PEP 578): it sees every
``socket.connect``/``connect_ex``, whichever library or event loop (asyncio, uvloop) calls
it, and refuses any destination that is not a loopback address. The reqwest sender connects
from native code, out of the audit hook's sight, so it raises its own audit event with the
address each client will connect to, and the same rule applies to it.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from typing import Any

ENV = "NETSAFETY_LOOPBACK_ONLY"
# What was refused in this process; the test process fails the test that caused one.
violations: list[str] = []
_installed = False


def _loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _literal_or_local(host: Any) -> bool:
    """A host getaddrinfo answers without asking a DNS server."""
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str) or host.lower() in ("localhost", ""):
        return True
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


def _refuse(what: str) -> None:
    message = f"test safety net: {what}; tests may only reach loopback addresses"
    violations.append(message)
    print(message, file=sys.stderr)
    raise PermissionError(message)


def _origin_host(origin: Any) -> str:
    """The host of an origin such as ``http://127.0.0.1:8080`` or ``https://[::1]:443``."""
    rest = str(origin).split("://", 1)[-1]
    if rest.startswith("["):
        return rest[1 : rest.find("]")]
    return rest.rsplit(":", 1)[0] if ":" in rest else rest


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event == "hookline.sender.connect":
        # The reqwest sender connects from native code: it names its destination here.
        origin, pinned = args
        host = str(pinned) if pinned is not None else _origin_host(origin)
        if not (_loopback(host) or host.lower() == "localhost"):
            _refuse(f"a client for {origin} (address {host}) refused")
    elif event == "socket.connect":
        address = args[1]
        if isinstance(address, tuple) and not _loopback(address[0]):
            _refuse(f"connection to {address[0]}:{address[1]} refused")
    elif event == "socket.getaddrinfo" and not _literal_or_local(args[0]):
        _refuse(f"DNS lookup of {args[0]!r} refused (stub the lookup instead)")


def install() -> None:
    global _installed
    if not _installed:
        sys.addaudithook(_hook)
        _installed = True


if os.environ.get(ENV) == "1":
    install()
