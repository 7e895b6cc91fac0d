"""Where a webhook may be sent: http(s) only, and not into private networks unless allowed.

Without the check, a merchant could register `http://169.254.169.254/...` or an internal
admin address and have qrloop's workers call it (server-side request forgery). The address
is checked at registration and again before every attempt, and the attempt connects to the
very address that was checked (the name still goes in the Host header and, for TLS, in SNI
and the certificate check), so a DNS answer that changes in between cannot redirect it.

Refused: every range of IANA's special-purpose address registries (IPv4 and IPv6, whether or
not IANA marks it globally reachable), multicast, and every IPv6 form that carries an IPv4
address (mapped, compatible, NAT64, 6to4, Teredo), since each can reach an IPv4 host the IPv4
check never saw. IPv6 must also lie in the global unicast space 2000::/3.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

MAX_URL_LENGTH = 2048

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (what it is, the network): IANA IPv4 and IPv6 special-purpose registries, multicast, and the
# IPv6 forms that embed an IPv4 address.
REFUSED_NETWORKS: tuple[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network], ...] = tuple(
    (name, ipaddress.ip_network(network))
    for name, network in (
        ("this network", "0.0.0.0/8"),
        ("private", "10.0.0.0/8"),
        ("shared address space (carrier-grade NAT)", "100.64.0.0/10"),
        ("loopback", "127.0.0.0/8"),
        ("link-local", "169.254.0.0/16"),
        ("private", "172.16.0.0/12"),
        ("IETF protocol assignments", "192.0.0.0/24"),
        ("documentation", "192.0.2.0/24"),
        ("port control protocol anycast", "192.31.196.0/24"),
        ("automatic multicast tunneling", "192.52.193.0/24"),
        ("6to4 relay anycast", "192.88.99.0/24"),
        ("private", "192.168.0.0/16"),
        ("AS112 direct delegation", "192.175.48.0/24"),
        ("benchmarking", "198.18.0.0/15"),
        ("documentation", "198.51.100.0/24"),
        ("documentation", "203.0.113.0/24"),
        ("multicast", "224.0.0.0/4"),
        ("reserved and limited broadcast", "240.0.0.0/4"),
        ("unspecified and loopback", "::/127"),
        ("IPv4-compatible", "::/96"),
        ("IPv4-mapped", "::ffff:0:0/96"),
        ("IPv4-translated", "::ffff:0:0:0/96"),
        ("NAT64", "64:ff9b::/96"),
        ("local-use NAT64", "64:ff9b:1::/48"),
        ("discard-only", "100::/64"),
        ("dummy prefix", "100:0:0:1::/64"),
        ("Teredo", "2001::/32"),
        ("IETF protocol assignments", "2001::/23"),
        ("documentation", "2001:db8::/32"),
        ("6to4", "2002::/16"),
        ("AS112 direct delegation", "2620:4f:8000::/48"),
        ("documentation", "3fff::/20"),
        ("segment routing SIDs", "5f00::/16"),
        ("unique local", "fc00::/7"),
        ("link-local", "fe80::/10"),
        ("site-local", "fec0::/10"),
        ("multicast", "ff00::/8"),
    )
)
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")


class Refused(Exception):
    """qrloop will not post there; the message says why."""


@dataclass(frozen=True)
class Destination:
    """What to connect to, and what keeps the endpoint's name in the request."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, Any] = field(default_factory=dict)


async def destination(url: str, private_networks: bool) -> Destination:
    """Where to post `url`'s deliveries; Refused when qrloop will not."""
    parts = urlsplit(url)
    if len(url) > MAX_URL_LENGTH:
        raise Refused(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused("the URL must be http:// or https:// with a host")
    if parts.username or parts.password:
        raise Refused("the URL must not carry a user name or password")
    if private_networks:
        return Destination(url)
    try:
        answers = await asyncio.get_running_loop().getaddrinfo(
            parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
            type=socket.SOCK_STREAM,
        )  # fmt: skip
    except (socket.gaierror, UnicodeError):
        raise Refused(f"the host {parts.hostname!r} does not resolve") from None
    addresses = [ipaddress.ip_address(address[0]) for *_, address in answers]
    for ip in addresses:
        kind = refused_kind(ip)
        if kind is not None:
            # The address itself is not echoed: the answer would map the internal network.
            raise Refused(
                f"{parts.hostname} resolves to a private or reserved address ({kind}); qrloop"
                " does not post there unless QRLOOP_WEBHOOK_PRIVATE_NETWORKS=true"
            )
    return pinned(parts, addresses[0])


def refused_kind(ip: IPAddress) -> str | None:
    """What kind of non-public address `ip` is, or None for a public unicast address."""
    for name, network in REFUSED_NETWORKS:
        if ip.version == network.version and ip in network:
            return name
    if ip.version == 6 and ip not in _GLOBAL_UNICAST_V6:
        return "outside IPv6 global unicast"
    if not ip.is_global:
        return "not globally reachable"
    return None


def pinned(parts: SplitResult, ip: IPAddress) -> Destination:
    """`parts` with its host replaced by `ip`; the name kept for HTTP (Host) and TLS (SNI)."""
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    netloc = f"{host}:{parts.port}" if parts.port else host
    assert parts.hostname is not None
    return Destination(
        url=urlunsplit(parts._replace(netloc=netloc)),
        headers={"Host": parts.netloc},
        extensions={"sni_hostname": parts.hostname} if parts.scheme == "https" else {},
    )
