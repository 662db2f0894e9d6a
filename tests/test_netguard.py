"""The SSRF guard, tested by resolution only: no test here opens a connection."""

from __future__ import annotations

import ipaddress

import pytest

from hookline.errors import ConfigError, InvalidInput
from hookline.netguard import (
    DestinationBlocked,
    IPAddress,
    NetworkPolicy,
    check_literal_url,
    literal_address,
    parse_networks,
    resolve_checked,
)

DEFAULT = NetworkPolicy()

BLOCKED = [
    "0.0.0.0",
    "10.1.2.3",
    "100.64.0.1",
    "100.127.255.254",
    "127.0.0.1",
    "127.255.255.254",
    "169.254.169.254",  # AWS, GCP and Azure metadata
    "172.16.0.1",
    "172.31.255.255",
    "192.0.0.170",
    "192.0.2.1",
    "192.168.1.1",
    "198.18.0.1",
    "198.51.100.7",
    "203.0.113.9",
    "224.0.0.251",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fec0::1",
    "ff02::1",
    "2001:db8::1",
    "100::1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "2002:c0a8:0101::1",  # 6to4 of 192.168.1.1
    "fd00:ec2::254",  # AWS IPv6 metadata
    "::7f00:1",  # IPv4-compatible 127.0.0.1
    "::a9fe:a9fe",  # IPv4-compatible 169.254.169.254
    "::a00:1",
    "::c0a8:1",
    "64:ff9b:1::a9fe:a9fe",  # local-use NAT64 of 169.254.169.254
    "::1:0:0:0",  # reserved ::/8
    "3fff::1",  # documentation (RFC 9637), which Python's ipaddress calls global
    "5f00::1",  # SRv6 SIDs (RFC 9602), not globally reachable
    "::ffff:100.64.0.1",  # IPv4-mapped CGNAT, multicast, reserved
    "::ffff:224.0.0.1",
    "::ffff:240.0.0.1",
]

ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", BLOCKED)
def test_every_blocked_range_is_blocked_by_default(address: str) -> None:
    assert DEFAULT.blocked_reason(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ALLOWED)
def test_global_addresses_pass(address: str) -> None:
    assert DEFAULT.blocked_reason(ipaddress.ip_address(address)) is None


def test_allowed_networks_open_a_range_and_only_that_range() -> None:
    policy = NetworkPolicy(parse_networks("127.0.0.0/8, 10.1.2.0/24"))
    assert policy.blocked_reason(ipaddress.ip_address("127.0.0.1")) is None
    assert policy.blocked_reason(ipaddress.ip_address("10.1.2.200")) is None
    assert policy.blocked_reason(ipaddress.ip_address("10.1.3.1")) is not None
    assert policy.blocked_reason(ipaddress.ip_address("169.254.169.254")) is not None
    # The mapped form of an allowed address is allowed too: it is the same address.
    assert policy.blocked_reason(ipaddress.ip_address("::ffff:127.0.0.1")) is None


def test_a_bad_allowed_networks_setting_names_the_setting() -> None:
    with pytest.raises(ConfigError) as err:
        parse_networks("127.0.0.0/8, localhost")
    assert err.value.field == "HOOKLINE_ALLOWED_NETWORKS"
    assert "localhost" in err.value.detail


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("example.com", None),
        ("1e100.net", None),
    ],
)
def test_literal_addresses_include_the_legacy_forms_the_resolver_takes(
    host: str, expected: str | None
) -> None:
    found = literal_address(host)
    assert (str(found) if found is not None else None) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:10.0.0.1]/",
        "http://2130706433/",
        "http://0x7f.1/",
        # Percent-encoded: reqwest decodes a host before reading it, and then blocks it
        # when sent; it is refused when saved, as the plain literal is.
        "http://%31%32%37.0.0.1:9000/x",
        "http://127.0.0.1%2e/",
        "http://%31%36%39.254.169.254/latest/meta-data/",
    ],
)
def test_a_literal_blocked_url_is_refused_when_saved(url: str) -> None:
    with pytest.raises(InvalidInput) as err:
        check_literal_url(url, DEFAULT, field="activity.url")
    assert err.value.field == "activity.url"
    assert "HOOKLINE_ALLOWED_NETWORKS" in err.value.detail


@pytest.mark.parametrize(
    "url", ["https://api.example.com/x", "http://{{state.host}}/x", "http://8.8.8.8/"]
)
def test_names_templates_and_global_literals_pass_when_saved(url: str) -> None:
    check_literal_url(url, DEFAULT)


def _stub(answers: dict[str, list[list[str]]]):  # type: ignore[no-untyped-def]
    """A resolver that gives each name's answers in turn (the last one repeats)."""
    calls: dict[str, int] = {}

    async def lookup(host: str, port: int) -> list[IPAddress]:
        n = calls.get(host, 0)
        calls[host] = n + 1
        seq = answers[host]
        return [ipaddress.ip_address(a) for a in seq[min(n, len(seq) - 1)]]

    return lookup


async def test_a_name_resolving_to_a_blocked_address_is_refused_with_the_address() -> None:
    lookup = _stub({"metadata.internal.test": [["169.254.169.254"]]})
    with pytest.raises(DestinationBlocked) as err:
        await resolve_checked("metadata.internal.test", 80, DEFAULT, lookup)
    message = str(err.value)
    assert "169.254.169.254" in message
    assert "metadata.internal.test" in message
    assert "HOOKLINE_ALLOWED_NETWORKS=169.254.169.254/32" in message


async def test_one_blocked_answer_among_good_ones_is_refused() -> None:
    lookup = _stub({"mixed.test": [["93.184.216.34", "10.0.0.5"]]})
    with pytest.raises(DestinationBlocked):
        await resolve_checked("mixed.test", 443, DEFAULT, lookup)


async def test_rebinding_is_caught_because_every_attempt_checks_what_it_resolves() -> None:
    lookup = _stub({"rebind.test": [["93.184.216.34"], ["127.0.0.1"]]})
    first = await resolve_checked("rebind.test", 80, DEFAULT, lookup)
    assert [str(a) for a in first] == ["93.184.216.34"]
    with pytest.raises(DestinationBlocked) as err:
        await resolve_checked("rebind.test", 80, DEFAULT, lookup)
    assert "127.0.0.1" in str(err.value)


async def test_a_literal_is_checked_without_a_lookup() -> None:
    async def no_lookup(host: str, port: int) -> list[IPAddress]:
        raise AssertionError("a literal address needs no lookup")

    with pytest.raises(DestinationBlocked):
        await resolve_checked("127.1", 80, DEFAULT, no_lookup)
    assert [str(a) for a in await resolve_checked("8.8.8.8", 80, DEFAULT, no_lookup)] == ["8.8.8.8"]
