"""Where webhooks may go, and that an attempt connects to the address that was checked."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_address
from urllib.parse import urlsplit

import pytest

from qrloop.webhooks.destinations import (
    REFUSED_NETWORKS,
    Refused,
    destination,
    pinned,
    refused_kind,
)


def test_a_name_is_pinned_to_the_checked_address_and_kept_for_http_and_tls() -> None:
    """The URL's host becomes the checked address; the name goes in Host and in SNI (which
    is also the name the certificate is checked against)."""
    target = pinned(urlsplit("https://hooks.example.com/in?x=1"), ip_address("93.184.216.34"))
    assert target.url == "https://93.184.216.34/in?x=1"
    assert target.headers == {"Host": "hooks.example.com"}
    assert target.extensions == {"sni_hostname": "hooks.example.com"}


def test_an_ipv6_address_is_bracketed_and_the_port_kept() -> None:
    """An IPv6 address is written in brackets, the port stays, plain HTTP needs no SNI."""
    target = pinned(urlsplit("http://hooks.example:8080/in"), ip_address("2606:4700::1111"))
    assert target.url == "http://[2606:4700::1111]:8080/in"
    assert target.headers == {"Host": "hooks.example:8080"}
    assert target.extensions == {}


async def test_a_public_address_is_accepted_and_pinned() -> None:
    """A URL whose host is a public address passes, pinned to that address."""
    target = await destination("https://93.184.216.34:8443/in", private_networks=False)
    assert target.url == "https://93.184.216.34:8443/in"


@pytest.mark.parametrize(
    "url", ["http://10.1.2.3/in", "http://127.0.0.1:9/in", "http://[::1]/in", "http://localhost/"]
)
async def test_private_addresses_are_refused_unless_allowed(url: str) -> None:
    """Loopback, private and link-local destinations are refused by default, and passed on
    unchanged when private networks are allowed."""
    with pytest.raises(Refused, match="private"):
        await destination(url, private_networks=False)
    assert (await destination(url, private_networks=True)).url == url


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("64:ff9b::a00:1", "NAT64"),  # NAT64 of 10.0.0.1
        ("64:ff9b::808:808", "NAT64"),  # NAT64 of a public 8.8.8.8: still another host's door
        ("64:ff9b:1::a9fe:a9fe", "local-use NAT64"),  # 169.254.169.254
        ("2002:a9fe:a9fe::1", "6to4"),  # 6to4 of 169.254.169.254
        ("2002:808:808::1", "6to4"),
        ("::7f00:1", "IPv4-compatible"),  # ::127.0.0.1
        ("::ffff:7f00:1", "IPv4-mapped"),  # ::ffff:127.0.0.1
        ("::ffff:808:808", "IPv4-mapped"),
        ("::ffff:0:a9fe:a9fe", "IPv4-translated"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
        ("ff02::1", "multicast"),
        ("ff0e::1", "multicast"),
        ("224.0.0.251", "multicast"),
        ("239.255.255.250", "multicast"),
        ("fec0::1", "site-local"),
        ("5f00::1", "segment routing SIDs"),
        ("3fff::1", "documentation"),
        ("100::1", "discard-only"),
        ("::", "unspecified and loopback"),
        ("100.64.0.1", "shared address space (carrier-grade NAT)"),
        ("192.0.0.9", "IETF protocol assignments"),
        ("192.88.99.1", "6to4 relay anycast"),
        ("192.31.196.1", "port control protocol anycast"),
        ("198.18.0.1", "benchmarking"),
        ("240.0.0.1", "reserved and limited broadcast"),
        ("255.255.255.255", "reserved and limited broadcast"),
    ],
)
def test_transition_forms_multicast_and_reserved_ranges_are_refused(
    address: str, kind: str
) -> None:
    """SSRF through another address form: NAT64, 6to4, IPv4-compatible, IPv4-mapped and
    Teredo addresses reach an IPv4 host (private or not) that the IPv4 check never saw, so
    they are refused whatever they embed; so are multicast and the reserved ranges."""
    assert refused_kind(ip_address(address)) == kind


@pytest.mark.parametrize(("kind", "network"), REFUSED_NETWORKS, ids=str)
def test_every_range_of_the_iana_special_purpose_registries_is_refused(
    kind: str, network: IPv4Network | IPv6Network
) -> None:
    """SSRF into a special-purpose range: its first and last address are both refused."""
    assert refused_kind(network[0]) is not None
    assert refused_kind(network[-1]) is not None


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111"])
def test_public_unicast_addresses_pass(address: str) -> None:
    """Ordinary public IPv4 and IPv6 unicast addresses are not refused."""
    assert refused_kind(ip_address(address)) is None


@pytest.mark.parametrize(
    "url",
    ["http://[::ffff:10.0.0.7]/in", "http://[64:ff9b::10.0.0.7]/in", "http://[2002:a00:7::]/"],
)
async def test_a_url_naming_a_disguised_private_address_is_refused(url: str) -> None:
    """SSRF through an IPv6 literal that embeds 10.0.0.7: refused at registration."""
    with pytest.raises(Refused, match="reserved"):
        await destination(url, private_networks=False)


async def test_a_refusal_does_not_echo_the_resolved_address() -> None:
    """Network mapping through error messages: the refusal names the kind of address a name
    resolved to, never the address itself."""
    with pytest.raises(Refused) as refusal:
        await destination("http://localhost:8080/in", private_networks=False)
    message = str(refusal.value)
    assert "loopback" in message
    assert "127.0.0.1" not in message and "::1" not in message
