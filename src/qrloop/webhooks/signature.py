"""Webhook signatures: how qrloop signs a delivery, and how a receiver should check one.

Each delivery carries two signatures, both keyed by the endpoint's 32-byte secret key:

* Standard Webhooks (standardwebhooks.com), so any of its verifiers checks it:
  `webhook-id` (the event id, the same on every attempt), `webhook-timestamp` (unix seconds)
  and `webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>." + body)>`. The
  secret merchants are shown, `whsec_<standard base64 of the key>`, is what those verifiers
  take.
* `Qrloop-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(legacy secret, "<t>." + body)>`,
  deprecated and sent for one more release. Its HMAC key is the secret as it was first spelled
  (`whsec_` and URL-safe base64 without padding), so receivers holding such a secret keep
  working unchanged.

Both timestamps are signed with the body, so a receiver that refuses stale timestamps (5
minutes by default) cannot be fed a recorded delivery later. Every attempt is signed anew.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time

SIGNATURE_HEADER = "Qrloop-Signature"
TOLERANCE_SECONDS = 300
_SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix that marks secrets, not one


def derive_key(key_secret: bytes, endpoint_id: int, salt: bytes) -> bytes:
    """An endpoint's signing key, recomputed from the key ring whenever it is needed."""
    message = b"qrloop-webhook-endpoint|%d|" % endpoint_id + salt
    return hmac.new(key_secret, message, hashlib.sha256).digest()


def secret_text(key: bytes) -> str:
    """The secret as merchants are shown it: Standard Webhooks' `whsec_<base64>`."""
    return _SECRET_PREFIX + base64.b64encode(key).decode()


def legacy_secret_text(key: bytes) -> str:
    """The secret's first spelling, the HMAC key of `Qrloop-Signature`."""
    return _SECRET_PREFIX + base64.urlsafe_b64encode(key).rstrip(b"=").decode()


def standard_headers(key: bytes, message_id: str, body: bytes, timestamp: int) -> dict[str, str]:
    """The Standard Webhooks headers for `body` sent as `message_id` at `timestamp`."""
    signed = b"%s.%d." % (message_id.encode(), timestamp) + body
    mac = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": f"v1,{mac}",
    }


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The `Qrloop-Signature` value for `body` sent at `timestamp`, keyed by `secret`."""
    return f"t={timestamp},v1={_mac(secret, body, timestamp)}"


def verify(
    secret: str,
    header: str,
    body: bytes,
    now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> bool:
    """Whether the `Qrloop-Signature` `header` signs `body` with `secret` (either spelling of
    a webhook secret) at a time within `tolerance` of now."""
    timestamp: int | None = None
    macs: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1":
            macs.append(value)
    if timestamp is None or not macs:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = _mac(_legacy_spelling(secret), body, timestamp)
    return any(hmac.compare_digest(expected, mac) for mac in macs)


def _legacy_spelling(secret: str) -> str:
    """A secret in today's spelling (standard base64, padded) respelled as it first was."""
    if not (secret.startswith(_SECRET_PREFIX) and secret.endswith("=")):
        return secret
    try:
        key = base64.b64decode(secret[len(_SECRET_PREFIX) :], validate=True)
    except binascii.Error:
        return secret
    return legacy_secret_text(key)


def _mac(secret: str, body: bytes, timestamp: int) -> str:
    return hmac.new(secret.encode(), b"%d." % timestamp + body, hashlib.sha256).hexdigest()
