"""Where webhooks may go, and that an attempt connects to the address that was checked."""

from __future__ import annotations

from ipaddress import ip_address
from urllib.parse import urlsplit

import pytest

from qrloop.webhooks.destinations import Refused, destination, pinned


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
