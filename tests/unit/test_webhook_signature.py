"""Webhook signatures as a receiver checks them, and the retry schedule."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from qrloop.webhooks.delivery import MAX_RETRY_DELAY_SECONDS, retry_delay
from qrloop.webhooks.signature import (
    derive_key,
    legacy_secret_text,
    secret_text,
    sign,
    standard_headers,
    verify,
)

KEY = derive_key(b"k" * 32, 7, b"salt")
SECRET = legacy_secret_text(KEY)
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


def test_the_shown_secret_verifies_standard_webhooks_headers() -> None:
    """The secret in today's spelling, given as is to the `standardwebhooks` package's
    verifier, accepts the Standard Webhooks headers of a body and refuses them for any other
    body, message id or secret."""
    now = int(time.time())
    headers = standard_headers(KEY, "evt_1", BODY, now)
    assert Webhook(secret_text(KEY)).verify(BODY, headers) == {
        "id": "evt_1",
        "type": "order.completed",
    }
    for body, message_id, secret in [
        (BODY + b" ", "evt_1", secret_text(KEY)),
        (BODY, "evt_2", secret_text(KEY)),
        (BODY, "evt_1", secret_text(derive_key(b"k" * 32, 8, b"salt"))),
    ]:
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(body, {**headers, "webhook-id": message_id})


def test_the_secret_is_standard_base64_of_the_key_in_both_spellings() -> None:
    """Today's spelling is `whsec_` and padded standard base64 of the key (what strict
    decoders in other languages need); the first spelling, the key of `Qrloop-Signature`,
    is URL-safe base64 without padding of the same key."""
    assert base64.b64decode(secret_text(KEY).removeprefix("whsec_"), validate=True) == KEY
    assert base64.urlsafe_b64decode(SECRET.removeprefix("whsec_") + "=") == KEY


def test_the_legacy_header_verifies_with_either_spelling() -> None:
    """`verify` accepts a `Qrloop-Signature` keyed by the first spelling whether it is given
    that spelling or today's."""
    header = sign(SECRET, BODY, NOW)
    assert verify(SECRET, header, BODY, now=NOW)
    assert verify(secret_text(KEY), header, BODY, now=NOW)
    assert not verify(secret_text(derive_key(b"j" * 32, 7, b"salt")), header, BODY, now=NOW)


def test_endpoint_secrets_differ_by_endpoint_salt_and_key() -> None:
    """Each endpoint has its own secret; a new salt (rotation) or key gives a new one."""
    secrets = {
        derive_key(b"k" * 32, 7, b"salt"),
        derive_key(b"k" * 32, 8, b"salt"),
        derive_key(b"k" * 32, 7, b"pepper"),
        derive_key(b"j" * 32, 7, b"salt"),
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
