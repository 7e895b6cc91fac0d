"""What a running API process holds: connections, keys and caches, built once at start."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from qrloop.codes.verify_pool import VerifierPool
from qrloop.keys import Keys
from qrloop.redemption.decide import Redeemer
from qrloop.redemption.gate import TerminalGate
from qrloop.redemption.pipe import Pipe
from qrloop.redemption.rules import RulesCache
from qrloop.redis_client import Client
from qrloop.settings import Settings


@dataclass(slots=True)
class Runtime:
    """Shared by every request of one process; routes receive it by dependency injection."""

    settings: Settings
    pool: asyncpg.Pool
    redis: Client
    pipe: Pipe
    keys: Keys
    rules: RulesCache
    gate: TerminalGate
    redeemer: Redeemer
    verifiers: VerifierPool
