"""Random bearer secrets (API keys, terminal secrets) and their stored digests.

The secrets carry 256 bits of entropy, so a plain SHA-256 digest is safe to store and to look
up by; a slow password hash would only add latency.
"""

from __future__ import annotations

import hashlib
import secrets

API_KEY_PREFIX = "qrl_live_"
TERMINAL_SECRET_PREFIX = "qrl_term_"  # noqa: S105 (a prefix, not a secret)


def new_secret(prefix: str) -> tuple[str, bytes]:
    """A fresh secret (shown once) and the digest to store in its place."""
    text = prefix + secrets.token_urlsafe(32)
    return text, digest(text)


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()
