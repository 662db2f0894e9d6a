"""The tests' safety net: no connection, and no DNS query, may leave this machine.

Installed by tests/conftest.py in the test process, and in every Python process the tests
start (sender processes, ``hookline serve``, the CLI) through PYTHONPATH, where Python
imports it as ``sitecustomize`` at start-up. It is an audit hook (PEP 578): it sees every
``socket.connect``/``connect_ex``, whichever library or event loop (asyncio, uvloop) calls
it, and refuses any destination that is not a loopback address. The reqwest sender connects
from native code, out of the audit hook's sight, so it raises its own audit event with the
address each client will connect to, and the same rule applies to it. uvloop (the loop of
``hookline serve`` and of the sender processes) resolves and connects in libuv, where no
audit event is raised either: its loop is replaced, when it is imported, by one that raises
them first (``_AuditedUvloop``).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import ipaddress
import os
import sys
from collections.abc import Sequence
from types import ModuleType
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


def _audit_uvloop(uvloop: ModuleType) -> None:
    """Make uvloop's loop raise the audit events its native code skips."""
    base = uvloop.Loop
    if getattr(base, "_netsafety", False):
        return

    class AuditedLoop(base):  # type: ignore[misc, valid-type]
        _netsafety = True

        async def getaddrinfo(self, host: Any, port: Any, **kwargs: Any) -> Any:
            sys.audit("socket.getaddrinfo", host, port)
            return await super().getaddrinfo(host, port, **kwargs)

        async def create_connection(
            self, protocol_factory: Any, host: Any = None, port: Any = None, **kwargs: Any
        ) -> Any:
            if host is not None:
                # A name is resolved in libuv: judged as a lookup; an address as a connection.
                if _literal_or_local(host) and str(host).lower() != "localhost":
                    sys.audit("socket.connect", None, (str(host).strip("[]"), port))
                else:
                    sys.audit("socket.getaddrinfo", host, port)
            return await super().create_connection(protocol_factory, host, port, **kwargs)

        async def sock_connect(self, sock: Any, address: Any) -> Any:
            sys.audit("socket.connect", sock, address)
            return await super().sock_connect(sock, address)

    # new_event_loop() and uvloop.run() make this one.
    uvloop.Loop = AuditedLoop  # type: ignore[attr-defined]


class _UvloopFinder(importlib.abc.MetaPathFinder):
    """Patches uvloop as it is imported: importing it here would slow every start."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "uvloop":
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        loader = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run = loader.exec_module

        def exec_and_audit(module: ModuleType) -> None:
            run(module)
            _audit_uvloop(module)

        loader.exec_module = exec_and_audit  # type: ignore[method-assign]
        return spec


def install() -> None:
    global _installed
    if not _installed:
        sys.addaudithook(_hook)
        if "uvloop" in sys.modules:
            _audit_uvloop(sys.modules["uvloop"])
        else:
            sys.meta_path.insert(0, _UvloopFinder())
        _installed = True


if os.environ.get(ENV) == "1":
    install()
