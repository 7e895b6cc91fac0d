"""The SMTP server and SMS gateway the settings name, parsed and checked when qrloop starts.

Kept free of the senders' libraries so settings can check these values without loading them.
Every error is a ValueError whose text never holds a password or token.
"""

from __future__ import annotations

import email.errors
import email.policy
import ipaddress
import ssl
from dataclasses import dataclass, field
from email.headerregistry import Address
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

_DEFAULT_PORTS = {"smtp": 587, "smtps": 465}  # mail submission, and submission over TLS
_BOOLEANS = {"true": True, "false": False}


@dataclass(frozen=True, slots=True)
class SmtpServer:
    """Where and how the SMTP sender connects."""

    host: str
    port: int
    implicit_tls: bool  # smtps://: TLS from the first byte
    starttls: bool  # smtp://: upgrade to TLS before anything else is said, or give up
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def smtp_server(url: str) -> SmtpServer:
    """Parse `smtp://[user:pass@]host[:port][?starttls=true|false]` or `smtps://…`.

    STARTTLS is required unless the URL says `starttls=false`, and credentials are only ever
    sent over TLS, so a server that does not offer TLS never sees the password."""
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS:
        raise ValueError(f"the scheme must be smtp:// or smtps://, not {parts.scheme!r}")
    if not parts.hostname:
        raise ValueError("name the server, e.g. smtp://user:pass@mail.example.com:587")
    if parts.path not in ("", "/") or parts.fragment:
        raise ValueError("the URL takes no path or fragment")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - {"starttls"})
    if unknown:
        raise ValueError(f"unknown options {unknown}; the only option is starttls=true|false")
    implicit_tls = parts.scheme == "smtps"
    if implicit_tls and "starttls" in options:
        raise ValueError("smtps:// is TLS from the start; starttls applies to smtp:// only")
    starttls = _BOOLEANS.get(options.get("starttls", "true").lower())
    if starttls is None:
        raise ValueError("starttls must be true or false")
    if (parts.username is None) != (parts.password is None):
        raise ValueError("give both a user name and a password, or neither")
    if parts.password is not None and not (implicit_tls or starttls):
        raise ValueError("a password is never sent unencrypted: use starttls=true or smtps://")
    return SmtpServer(
        host=parts.hostname,
        port=parts.port or _DEFAULT_PORTS[parts.scheme],
        implicit_tls=implicit_tls,
        starttls=starttls and not implicit_tls,
        username=None if parts.username is None else unquote(parts.username),
        password=None if parts.password is None else unquote(parts.password),
    )


def one_address(value: str) -> Address:
    """The single email address in `value` (`name <user@example.com>` or `user@example.com`).

    Anything else, such as two addresses separated by a comma, is refused: a message goes to
    exactly the one address it names."""
    try:
        header = email.policy.default.header_factory("To", value)
    except (ValueError, IndexError, email.errors.MessageError):
        header = None
    if header is None or header.defects or len(header.addresses) != 1:
        raise ValueError(f"{value!r} is not one email address")
    address: Address = header.addresses[0]
    if not address.domain or not address.addr_spec.isascii():
        raise ValueError(f"{value!r} is not an address with an ASCII (xn--) domain")
    return address


def sms_gateway_url(url: str) -> str:
    """Check the gateway URL: https, or http to this machine only, so the token never crosses
    a network in the clear."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"give an https:// URL with a host, not one with scheme {parts.scheme!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ValueError("plain http is allowed to this machine (loopback) only; use https://")
    return url


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """A context that verifies the server's certificate and name: against `ca_file` when
    given (a private CA), else against the system's trusted CAs."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except OSError as error:  # ssl.SSLError included
        raise ValueError(f"cannot load CA certificates from {ca_file}: {error}") from None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
