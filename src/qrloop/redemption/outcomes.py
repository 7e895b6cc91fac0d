"""What the terminal gate and the code state store answer instead of admitting, consuming or
reversing: outcomes, never words. decide.py turns each into its problem and message."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum, auto
from typing import NamedTuple


class Outcome(Enum):
    # The terminal gate.
    DISABLED = auto()  # the terminal or its store is disabled
    SECRET_ROTATED = auto()  # exchanged for a secret rotated away since, or a revoked phone's
    RATE_LIMITED = auto()  # too many invalid scans from this terminal
    # The code state store.
    VOIDED = auto()
    ALREADY_REDEEMED = auto()
    NO_REDEMPTION = auto()  # none with that id, or another store's: the same to this till
    WINDOW_CLOSED = auto()  # too late to reverse
    UNAVAILABLE = auto()  # the store cannot answer (or lost its state): fail closed


class Use(NamedTuple):
    """Where and when a code was used."""

    store_id: int
    at: datetime


@dataclass(frozen=True, slots=True)
class Refused:
    """An outcome, with what its message needs: when a block ends (RATE_LIMITED) and where and
    when the code was used while Redis still remembers (ALREADY_REDEEMED)."""

    outcome: Outcome
    blocked_until: float = 0.0
    use: Use | None = None


# The outcomes that carry nothing else, made once.
DISABLED = Refused(Outcome.DISABLED)
SECRET_ROTATED = Refused(Outcome.SECRET_ROTATED)
VOIDED = Refused(Outcome.VOIDED)
ALREADY_REDEEMED = Refused(Outcome.ALREADY_REDEEMED)
NO_REDEMPTION = Refused(Outcome.NO_REDEMPTION)
WINDOW_CLOSED = Refused(Outcome.WINDOW_CLOSED)
UNAVAILABLE = Refused(Outcome.UNAVAILABLE)
