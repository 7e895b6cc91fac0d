"""Where a webhook may be sent: http(s) only, and not into private networks unless allowed.

Without the check, a merchant could register `http://169.254.169.254/...` or an internal
admin address and have qrloop's workers call it (server-side request forgery). The address
is checked at registration and again before every attempt, and the attempt connects to the
very address that was checked (the name still goes in the Host header and, for TLS, in SNI
and the certificate check), so a DNS answer that changes in between cannot redirect it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

MAX_URL_LENGTH = 2048


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
        if not ip.is_global:
            raise Refused(
                f"{parts.hostname} resolves to a private address ({ip}); qrloop does not post"
                " into private networks unless QRLOOP_WEBHOOK_PRIVATE_NETWORKS=true"
            )
    return pinned(parts, addresses[0])


def pinned(parts: SplitResult, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Destination:
    """`parts` with its host replaced by `ip`; the name kept for HTTP (Host) and TLS (SNI)."""
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    netloc = f"{host}:{parts.port}" if parts.port else host
    assert parts.hostname is not None
    return Destination(
        url=urlunsplit(parts._replace(netloc=netloc)),
        headers={"Host": parts.netloc},
        extensions={"sni_hostname": parts.hostname} if parts.scheme == "https" else {},
    )
