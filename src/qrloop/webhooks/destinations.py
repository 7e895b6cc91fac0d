"""Where a webhook may be sent: http(s) only, and not into private networks unless allowed.

Without the check, a merchant could register `http://169.254.169.254/...` or an internal
admin address and have qrloop's workers call it (server-side request forgery). The address
is checked at registration and again before every attempt, since DNS answers change.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048


async def refusal(url: str, private_networks: bool) -> str | None:
    """Why qrloop will not post to `url`, or None when it may."""
    parts = urlsplit(url)
    if len(url) > MAX_URL_LENGTH:
        return f"the URL is longer than {MAX_URL_LENGTH} characters"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "the URL must be http:// or https:// with a host"
    if parts.username or parts.password:
        return "the URL must not carry a user name or password"
    if private_networks:
        return None
    try:
        answers = await asyncio.get_running_loop().getaddrinfo(
            parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
            type=socket.SOCK_STREAM,
        )  # fmt: skip
    except (socket.gaierror, UnicodeError):
        return f"the host {parts.hostname!r} does not resolve"
    for *_, address in answers:
        ip = ipaddress.ip_address(address[0])
        if not ip.is_global:
            return (
                f"{parts.hostname} resolves to a private address ({ip}); qrloop does not post"
                " into private networks unless QRLOOP_WEBHOOK_PRIVATE_NETWORKS=true"
            )
    return None
