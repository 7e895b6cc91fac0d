"""The address a request comes from, as a cap on sends counts it.

The peer of the connection, unless it is a proxy named in QRLOOP_TRUSTED_PROXIES: then the
address that proxy appended to X-Forwarded-For, and so on down a chain of trusted proxies.
Anyone can write X-Forwarded-For, so an untrusted peer's header is never read.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import cache

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
UNKNOWN = "unknown"  # no peer address (a Unix socket): all such requests share one count
IPV6_PREFIX = 64  # one subscriber's network: an attacker holding a /64 has 2^64 addresses


@cache
def trusted_networks(setting: str | None) -> tuple[IPNetwork, ...]:
    """The CIDRs of QRLOOP_TRUSTED_PROXIES (comma-separated); ValueError names a bad one."""
    if not setting:
        return ()
    return tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in setting.split(","))


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: tuple[IPNetwork, ...]
) -> str:
    """The client's address (an IPv6 address as its /64) behind `peer`."""
    address = _parse(peer)
    if address is None:
        return UNKNOWN
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",")]
    while hops and _is_trusted(address, trusted):
        # The nearest hop is the one the trusted proxy appended; a garbled one ends the chain
        # at the proxy itself (its count, not a count of the sender's choosing).
        previous = _parse(hops.pop())
        if previous is None:
            break
        address = previous
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX}", strict=False))
    return str(address)


def _parse(text: str | None) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text or "")
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_trusted(address: IPAddress, trusted: tuple[IPNetwork, ...]) -> bool:
    return any(address in network for network in trusted)


def from_trusted_proxy(peer: str | None, trusted: tuple[IPNetwork, ...]) -> bool:
    """Whether the connection's peer is a proxy named in QRLOOP_TRUSTED_PROXIES, whose
    X-Forwarded-* headers may be believed."""
    address = _parse(peer)
    return address is not None and _is_trusted(address, trusted)
