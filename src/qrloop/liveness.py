"""What `serve` hands its API processes: the port it holds, and a nonce to know them by.

`serve` binds the API's port before anything else and passes the listening socket down
(`LISTEN_FD_ENV`), so nothing can take the port while it starts and a restarted API process
cannot fail to bind. It also makes a random nonce for each start and hands it to its API
processes in the environment; `/health/live` echoes it in a header, so `serve` announces
"serving at" only when its own API answers, never whatever else answers on that address.
"""

from __future__ import annotations

import hmac
import os
import secrets

START_NONCE_ENV = "QRLOOP_START_NONCE"
START_NONCE_HEADER = "Qrloop-Start-Nonce"
LISTEN_FD_ENV = "QRLOOP_LISTEN_FD"


def new_nonce() -> str:
    return secrets.token_hex(16)


def own_nonce() -> str | None:
    """This process's start nonce, when a supervisor gave it one."""
    return os.environ.get(START_NONCE_ENV) or None


def answered_by(nonce: str, header: str | None) -> bool:
    """Whether a `/health/live` answer carrying `header` came from the start with `nonce`."""
    return header is not None and hmac.compare_digest(header.encode(), nonce.encode())
