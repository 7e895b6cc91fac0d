"""The client address a cap on sends counts: X-Forwarded-For only from trusted proxies."""

from __future__ import annotations

import pytest

from qrloop.claim.client_address import UNKNOWN, client_address, trusted_networks
from qrloop.settings import SettingsError, load

PROXIES = trusted_networks("10.0.0.0/8, 192.168.1.1/32")


def test_an_untrusted_peers_forwarded_for_is_never_read() -> None:
    """Attack: a client forging X-Forwarded-For to reset its count; its peer address counts."""
    assert client_address("198.51.100.1", ["203.0.113.9"], ()) == "198.51.100.1"
    assert client_address("198.51.100.1", ["203.0.113.9"], PROXIES) == "198.51.100.1"


def test_a_chain_of_trusted_proxies_is_walked_back_to_the_first_untrusted_hop() -> None:
    """Attack: forged hops written before the real ones; only the hops that trusted proxies
    appended are read, from the nearest back to the first address not a trusted proxy."""
    header = ["6.6.6.6, 203.0.113.5", "10.1.2.3"]
    assert client_address("192.168.1.1", header, PROXIES) == "203.0.113.5"


def test_a_garbled_hop_ends_the_chain_at_the_proxy() -> None:
    """A hop that is no address (a port, a name, junk) leaves the count with the proxy."""
    assert client_address("10.0.0.7", ["1.2.3.4:80"], PROXIES) == "10.0.0.7"
    assert client_address("10.0.0.7", ["evil, "], PROXIES) == "10.0.0.7"


def test_an_ipv6_network_counts_as_one_address() -> None:
    """Attack: rotating through the 2^64 addresses of one /64; an IPv4-mapped address is IPv4."""
    assert client_address("2001:db8:1:2::abcd", [], ()) == "2001:db8:1:2::/64"
    assert client_address("2001:db8:1:2:ffff::1", [], ()) == "2001:db8:1:2::/64"
    assert client_address("::ffff:198.51.100.4", [], ()) == "198.51.100.4"


def test_a_request_without_a_peer_address_shares_one_count() -> None:
    """No peer (a Unix socket): all such requests count as one client, never as none."""
    assert client_address(None, ["203.0.113.9"], PROXIES) == UNKNOWN


@pytest.mark.parametrize("value", ["10.0.0.0/33", "proxy.example.com", "10.0.0.0/8,"])
def test_bad_trusted_proxies_are_refused_at_start(value: str) -> None:
    """QRLOOP_TRUSTED_PROXIES that are not all CIDRs stop the start, naming the variable."""
    with pytest.raises(SettingsError, match="QRLOOP_TRUSTED_PROXIES"):
        load({"QRLOOP_TRUSTED_PROXIES": value})
