"""Webhook signatures as a receiver checks them, and the retry schedule."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from qrloop.webhooks.delivery import MAX_RETRY_DELAY_SECONDS, retry_delay
from qrloop.webhooks.signature import derive_secret, sign, verify

SECRET = derive_secret(b"k" * 32, 7, b"salt")
BODY = b'{"id":"evt_1","type":"order.completed"}'
NOW = 1_764_000_000


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    """The header is `t=<unix>,v1=<hex>` with v1 = HMAC-SHA256(secret, "<t>." + body)."""
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, BODY, NOW) == f"t={NOW},v1={expected}"


def test_a_fresh_signature_verifies() -> None:
    """A receiver accepts the body it was sent, signed with its secret, within the window."""
    assert verify(SECRET, sign(SECRET, BODY, NOW), BODY, now=NOW + 299)


@pytest.mark.parametrize(
    ("header", "body", "now"),
    [
        pytest.param(sign(SECRET, BODY, NOW), BODY + b" ", NOW, id="tampered body"),
        pytest.param(sign(SECRET + "x", BODY, NOW), BODY, NOW, id="another secret"),
        pytest.param(sign(SECRET, BODY, NOW), BODY, NOW + 301, id="replayed too late"),
        pytest.param(sign(SECRET, BODY, NOW), BODY, NOW - 301, id="from the future"),
        pytest.param(sign(SECRET, BODY, NOW).replace(f"t={NOW}", f"t={NOW + 1}"), BODY, NOW,
                     id="timestamp moved"),
        pytest.param("v1=00", BODY, NOW, id="no timestamp"),
        pytest.param(f"t={NOW}", BODY, NOW, id="no mac"),
    ],
)  # fmt: skip
def test_anything_else_is_refused(header: str, body: bytes, now: int) -> None:
    """A changed body, another secret, a timestamp outside 5 minutes or a moved timestamp, or
    a header missing a part, does not verify."""
    assert not verify(SECRET, header, body, now=now)


def test_endpoint_secrets_differ_by_endpoint_salt_and_key() -> None:
    """Each endpoint has its own secret; a new salt (rotation) or key gives a new one."""
    secrets = {
        derive_secret(b"k" * 32, 7, b"salt"),
        derive_secret(b"k" * 32, 8, b"salt"),
        derive_secret(b"k" * 32, 7, b"pepper"),
        derive_secret(b"j" * 32, 7, b"salt"),
    }
    assert len(secrets) == 4


def test_retries_back_off_exponentially_up_to_an_hour() -> None:
    """Each wait is about double the one before (±20 % jitter), never above an hour."""
    for attempt in range(1, 6):
        assert (
            0.8 * 10 * 2 ** (attempt - 1)
            <= retry_delay(attempt, 10)
            <= 1.2 * 10 * 2 ** (attempt - 1)
        )
    assert retry_delay(40, 10) <= MAX_RETRY_DELAY_SECONDS * 1.2
    assert retry_delay(40, 10) >= MAX_RETRY_DELAY_SECONDS * 0.8
