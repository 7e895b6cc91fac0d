"""Restarting what `serve` supervises (its processes and embedded servers) after it dies."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


class Restarter:
    """Restarts one supervised thing after it dies, waiting longer after each quick death
    (`first` seconds, doubling up to `most`; back to `first` once it ran `stable` seconds), so
    one that cannot start does not spin. `down` says how it died, or None while it runs;
    `start` starts it again (an exception means it is still down, and is tried again later)."""

    def __init__(
        self,
        name: str,
        down: Callable[[], str | None],
        start: Callable[[], object],
        *,
        first: float = 1.0,
        most: float = 30.0,
        stable: float = 60.0,
    ) -> None:
        self._name, self._down, self._start = name, down, start
        self._first, self._most, self._stable = first, most, stable
        self._delay = first
        self._started = time.monotonic()
        self._restart_at: float | None = None

    def check(self, now: float | None = None) -> None:
        """Restart it when it is due; notice (and schedule a restart) when it has died."""
        now = time.monotonic() if now is None else now
        if self._restart_at is not None:
            if now >= self._restart_at:
                self._restart_at = None
                self._started = now
                try:
                    self._start()
                except (OSError, RuntimeError) as error:
                    _say(f"qrloop: {self._name} did not start: {error}")
            return
        how = self._down()
        if how is None:
            return
        if now - self._started > self._stable:
            self._delay = self._first
        _say(f"qrloop: {self._name} {how}; restarting in {self._delay:g} s")
        self._restart_at = now + self._delay
        self._delay = min(self._delay * 2, self._most)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
