"""The SSRF guard: which addresses a webhook may reach, checked on resolved addresses.

By default a webhook may reach only global unicast addresses. Loopback, private, link-local
(cloud metadata lives there), CGNAT, multicast, unspecified, reserved and documentation
ranges are blocked, and so are IPv6 forms that embed a blocked IPv4 address (mapped,
NAT64, 6to4, Teredo). ``HOOKLINE_ALLOWED_NETWORKS`` opens ranges on purpose.

The check runs on the addresses a name resolves to at send time, and the sender connects
to those very addresses, so a name that changes its answer (DNS rebinding) cannot slip past.

hookline's own echo service, on the address hookline itself listens on, is always reachable
(``NetworkPolicy.own_echo``): the walk-through sends to it on loopback with no setting.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from yarl import URL

from hookline.errors import ConfigError, InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Named so the error can say which range an address fell in.
BLOCKED_RANGES: Final[tuple[tuple[str, IPNetwork], ...]] = tuple(
    (name, ipaddress.ip_network(cidr))
    for name, cidr in (
        ("unspecified", "0.0.0.0/8"),
        ("private (RFC 1918)", "10.0.0.0/8"),
        ("shared address space (CGNAT)", "100.64.0.0/10"),
        ("loopback", "127.0.0.0/8"),
        ("link-local (cloud metadata)", "169.254.0.0/16"),
        ("private (RFC 1918)", "172.16.0.0/12"),
        ("IETF protocol assignments", "192.0.0.0/24"),
        ("documentation", "192.0.2.0/24"),
        ("6to4 relay anycast", "192.88.99.0/24"),
        ("private (RFC 1918)", "192.168.0.0/16"),
        ("benchmarking", "198.18.0.0/15"),
        ("documentation", "198.51.100.0/24"),
        ("documentation", "203.0.113.0/24"),
        ("multicast", "224.0.0.0/4"),
        ("reserved", "240.0.0.0/4"),
        ("unspecified", "::/128"),
        ("loopback", "::1/128"),
        ("reserved (IETF)", "::/8"),
        ("discard-only", "100::/64"),
        ("IETF protocol assignments", "2001::/23"),
        ("documentation", "2001:db8::/32"),
        ("documentation", "3fff::/20"),  # RFC 9637; newer than Python's ipaddress tables
        ("segment routing (SRv6 SIDs)", "5f00::/16"),  # RFC 9602, not globally reachable
        ("unique local (private)", "fc00::/7"),
        ("link-local", "fe80::/10"),
        ("site-local (deprecated)", "fec0::/10"),
        ("multicast", "ff00::/8"),
    )
)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries (mapped, NAT64, 6to4, Teredo), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    compatible = address in _IPV4_COMPATIBLE and int(address) > 1  # not :: or ::1
    if address in _NAT64 or address in _NAT64_LOCAL or compatible:
        # NAT64 (well-known and local-use prefixes) and the deprecated IPv4-compatible form
        # (::a.b.c.d) all carry the IPv4 address in their last 32 bits.
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL: Final = ipaddress.ip_network("64:ff9b:1::/48")
# ::a.b.c.d, the deprecated IPv4-compatible form (:: and ::1 are not: BLOCKED_RANGES names them).
_IPV4_COMPATIBLE: Final = ipaddress.ip_network("::/96")


@dataclass(frozen=True)
class NetworkPolicy:
    """What the guard lets through: global addresses, plus ``allowed`` ranges.

    ``own_echo`` lists the ``(host, port)`` pairs of hookline's own listening address: a
    request to ``/echo-send/<secret>/`` there is always allowed.
    """

    allowed: tuple[IPNetwork, ...] = ()
    own_echo: frozenset[tuple[str, int]] = frozenset()

    def as_json(self) -> dict[str, Any]:
        """A plain form, to hand the policy to a sender process."""
        return {
            "allowed": [str(net) for net in self.allowed],
            "own_echo": sorted([host, port] for host, port in self.own_echo),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NetworkPolicy:
        return cls(
            tuple(ipaddress.ip_network(net) for net in data.get("allowed", ())),
            frozenset((str(host), int(port)) for host, port in data.get("own_echo", ())),
        )

    def is_own_echo(self, url: str, *, saved: bool = False) -> bool:
        """Whether ``url`` is hookline's own echo service on hookline's own address.

        At send time the path must be exactly ``/echo-send/<secret>/`` (nothing else of
        hookline's own API is reachable this way); when a URL is saved, the secret may
        still be a template.
        """
        if not self.own_echo:
            return False
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return False
        return self.owns_echo(parts.scheme, parts.hostname, port, parts.path, saved=saved)

    def owns_echo(
        self, scheme: str, host: str | None, port: int | None, path: str, *, saved: bool = False
    ) -> bool:
        """:meth:`is_own_echo` on a URL's parts, as the sender parsed them (no second parser
        to disagree with the one that connects)."""
        pattern = _SAVED_ECHO_PATH if saved else _ECHO_PATH
        return (
            scheme == "http"
            and (host or "", port or 80) in self.own_echo
            and pattern.fullmatch(path) is not None
        )

    def blocked_reason(self, address: IPAddress) -> str | None:
        """Why ``address`` may not be reached, or None when it may."""
        if any(address in net for net in self.allowed if net.version == address.version):
            return None
        if isinstance(address, ipaddress.IPv6Address):
            inner = _embedded_ipv4(address)
            if inner is not None:
                why = self.blocked_reason(inner)
                return f"{why}, embedded in {address}" if why else None
            if address.scope_id:
                return "link-local (scoped)"
        for name, net in BLOCKED_RANGES:
            if net.version == address.version and address in net:
                return f"{name} {net}"
        if not address.is_global:
            return "not a global address"
        return None

    def check(self, addresses: Iterable[IPAddress], host: str) -> None:
        """Refuse when any address ``host`` resolved to is blocked (all must be reachable).

        One blocked answer among good ones is refused too: it is what rebinding looks like.
        """
        for address in addresses:
            why = self.blocked_reason(address)
            if why is not None:
                raise DestinationBlocked(host, address, why)


# The echo routes, and no other: a secret is made of A-Za-z0-9_- (the route checks its
# length). When saved, parts of it may be tags, whose rendering is checked when sent.
_ECHO_PATH: Final = re.compile(r"/echo-send/[A-Za-z0-9_-]{1,128}/?")
_SAVED_ECHO_PATH: Final = re.compile(r"/echo-send/(?:[A-Za-z0-9_-]|\{\{[^{}/]{1,200}\}\}){1,128}/?")
_WILDCARDS: Final = frozenset({"0.0.0.0", "::", ""})
_LOOPBACK_NAMES: Final = ("127.0.0.1", "::1", "localhost")


def own_addresses(host: str, port: int) -> frozenset[tuple[str, int]]:
    """The ``(host, port)`` pairs that reach a server listening on ``host:port``.

    A server on a loopback or wildcard address is reached through loopback too.
    """
    bound = host.strip("[]").lower()
    pairs = {(bound, port)}
    literal = literal_address(bound)
    if bound in _WILDCARDS or bound == "localhost" or (literal is not None and literal.is_loopback):
        pairs.update((name, port) for name in _LOOPBACK_NAMES)
    return frozenset(pairs)


class DestinationBlocked(OSError):
    """A webhook's destination resolved to an address the SSRF guard blocks."""

    def __init__(self, host: str, address: IPAddress, why: str) -> None:
        self.host = host
        self.address = address
        self.why = why
        shown = host if host == str(address) else f"{host} resolved to {address}"
        super().__init__(
            f"destination_blocked: {shown}, which is {why}; "
            f"allow it on purpose with HOOKLINE_ALLOWED_NETWORKS={_suggest(address)}"
        )


def _suggest(address: IPAddress) -> str:
    return f"{address}/32" if address.version == 4 else f"{address}/128"


def parse_networks(
    text: str, *, setting: str = "HOOKLINE_ALLOWED_NETWORKS"
) -> tuple[IPNetwork, ...]:
    """Parse comma-separated CIDRs such as ``"127.0.0.0/8, 10.1.2.0/24"``."""
    networks: list[IPNetwork] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigError(
                f"{setting} takes comma-separated CIDRs such as '10.1.2.0/24', got {part!r}",
                field=setting,
            ) from None
    return tuple(networks)


class LiteralVerdicts:
    """The guard's verdicts on hosts that spell an address, kept (the policy does not change
    while hookline runs), so a sender judges each literal host once, not per request."""

    def __init__(self, policy: NetworkPolicy, keep: int = 10_000) -> None:
        """``keep`` bounds the verdicts held: when full they are forgotten, so a stream of
        distinct hosts cannot grow it without end."""
        self.policy = policy
        self.keep = keep
        # host -> the blocked address and why, or None: allowed, or a name (judged later).
        self._verdicts: dict[str, tuple[IPAddress, str] | None] = {}

    def check(self, host: str) -> None:
        """DestinationBlocked if ``host`` spells an address the policy blocks."""
        if host in self._verdicts:
            verdict = self._verdicts[host]
        else:
            address = literal_address(host)
            why = self.policy.blocked_reason(address) if address is not None else None
            verdict = (address, why) if address is not None and why is not None else None
            if len(self._verdicts) >= self.keep:
                self._verdicts.clear()
            self._verdicts[host] = verdict
        if verdict is not None:
            raise DestinationBlocked(host, *verdict)


def literal_address(host: str) -> IPAddress | None:
    """The address a URL host spells out, including the legacy forms the C resolver takes.

    ``127.1``, ``2130706433`` and ``0x7f.0.0.1`` all mean 127.0.0.1 to ``getaddrinfo``, so
    they are treated as the literal they stand for; a name returns None.
    """
    bare = host.strip("[]")
    if bare.endswith(".") and not bare.endswith(".."):
        bare = bare[:-1]  # "127.0.0.1." is 127.0.0.1 to the resolver (a rooted name)
    try:
        return ipaddress.ip_address(bare.split("%", 1)[0] if ":" in bare else bare)
    except ValueError:
        pass
    if (
        bare
        and all(c in "0123456789abcdefABCDEFxX." for c in bare)
        and any(c.isdigit() for c in bare)
    ):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(bare))
        except OSError:
            return None
    return None


def check_literal_url(url: str, policy: NetworkPolicy, *, field: str = "url") -> None:
    """Refuse, when saved, a URL whose host is a literal blocked address.

    hookline's own echo service on its own address is allowed (see ``own_echo``).
    """
    if policy.is_own_echo(url, saved=True):
        return
    host = sent_host(url)
    if not host or "{{" in host:
        return
    address = literal_address(host)
    if address is None and "%" in host:
        # reqwest (a WHATWG URL parser) percent-decodes a host before it reads it:
        # %31%32%37.0.0.1 is 127.0.0.1 to it, and is judged so when saved too.
        decoded = sent_host(f"http://{unquote(host)}/")
        address = literal_address(decoded) if decoded else None
    if address is None:
        return
    why = policy.blocked_reason(address)
    if why is not None:
        raise InvalidInput(
            f"{host} is {why}: webhooks may not call it; allow it on purpose with "
            f"HOOKLINE_ALLOWED_NETWORKS={_suggest(address)}",
            field=field,
        )


def sent_host(url: str) -> str | None:
    """The host the sender will reach for ``url``, as it parses it (None: unparsable).

    Non-ASCII hosts are normalised as yarl does when sending: 127 written in full-width
    digits reaches 127.0.0.1, so it is judged as 127.0.0.1 when saved too.
    """
    try:
        parsed = URL(url, encoded=True) if url.isascii() else URL(url)
        return parsed.raw_host  # yarl splits the netloc here, lazily: it may raise too
    except ValueError:
        return None  # the URL checks elsewhere say what is wrong with it


Lookup = Callable[[str, int], Awaitable[list[IPAddress]]]


async def system_lookup(host: str, port: int) -> list[IPAddress]:
    """The addresses the system resolver gives for ``host`` (every family)."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


async def resolve_checked(
    host: str, port: int, policy: NetworkPolicy, lookup: Lookup = system_lookup
) -> list[IPAddress]:
    """Resolve ``host`` once and check every answer; the caller connects to these only."""
    literal = literal_address(host)
    addresses = [literal] if literal is not None else await lookup(host, port)
    if not addresses:
        raise OSError(f"{host} resolved to no address")
    policy.check(addresses, host)
    return addresses
