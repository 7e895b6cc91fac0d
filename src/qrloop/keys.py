"""The key ring a process uses, and everything built from it, reloaded when the ring changes.

`qrloop keys rotate|revoke|retire` rewrites the ring's file; every API process notices within
a second (the refresher asks) and verifies with the new ring, so a revocation needs no restart.
"""

from __future__ import annotations

import logging

from qrloop.accounts.tokens import TokenVerifier
from qrloop.codes.format import Verifier
from qrloop.codes.keyring import KeyRing
from qrloop.settings import Settings

log = logging.getLogger("qrloop.keys")


class Keys:
    """The current key ring, its code verifier and its terminal token verifier."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._stamp: tuple[int, int] | None = None
        self.keyring, self.verifier, self.tokens = self._build()

    def reload_if_changed(self) -> bool:
        """Rebuild from the ring's file when it changed; True when it did."""
        if self._settings.keyring_json or self._file_stamp() == self._stamp:
            return False
        self.keyring, self.verifier, self.tokens = self._build()
        log.info("key ring reloaded: %d keys", len(self.keyring.entries()))
        return True

    def _build(self) -> tuple[KeyRing, Verifier, TokenVerifier]:
        if self._settings.keyring_json:
            keyring = KeyRing.from_json(self._settings.keyring_json)
        else:
            self._stamp = self._file_stamp()
            keyring = KeyRing.load(self._settings.keyring_path)
        return keyring, Verifier(keyring), TokenVerifier(keyring)

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            stat = self._settings.keyring_path.stat()
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_ino
