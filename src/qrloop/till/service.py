"""Phones paired as tills, in PostgreSQL: one-time pairing tokens, the devices they made, and
the exchange of a device's credential for an access token. Every merchant query is scoped to
the merchant that asks; the dashboard calls these functions as the API routes do."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from qrloop.accounts.secrets import digest, new_secret
from qrloop.accounts.service import no_terminal
from qrloop.accounts.tokens import TerminalClaims, epoch_ms
from qrloop.codes.render import svg_markup
from qrloop.errors import Problem, Reason
from qrloop.pagination import Page, newest_page, page_sql
from qrloop.till.schemas import DeviceOut, PairingOut

PAIRING_TTL = timedelta(minutes=10)
PAIRING_PREFIX = "qrl_pair_"
DEVICE_PREFIX = "qrl_dev_"
PAIR_PATH = "/till/pair/"
# A phone's last use is stamped at most this often: a busy till writes one row a minute.
_LAST_USED_EVERY = "1 minute"
_DEVICE = "id, terminal_id, label, paired_at, last_used_at, revoked_at"


def _no_device(device_id: int) -> Problem:
    return Problem(Reason.NOT_FOUND, f"No paired device {device_id} of this terminal.")


async def start_pairing(
    pool: asyncpg.Pool, base_url: str, merchant_id: int, terminal_id: int
) -> PairingOut:
    """A one-time pairing link (and its QR) for one of the merchant's enabled terminals; only
    its digest is stored. The terminal's expired links go meanwhile: a link unknown reads as
    one spent, so nothing but a terminal's few live links is ever kept."""
    token, token_digest = new_secret(PAIRING_PREFIX)
    expires_at = await pool.fetchval(
        "WITH expired AS (DELETE FROM till_pairings"
        " WHERE terminal_id = $1 AND merchant_id = $2 AND expires_at <= now())"
        " INSERT INTO till_pairings (merchant_id, terminal_id, digest, expires_at)"
        " SELECT merchant_id, id, $3, now() + $4::interval FROM terminals"
        " WHERE id = $1 AND merchant_id = $2 AND disabled_at IS NULL"
        " RETURNING expires_at",
        terminal_id,
        merchant_id,
        token_digest,
        PAIRING_TTL,
    )
    if expires_at is None:
        raise no_terminal(terminal_id)
    url = base_url + PAIR_PATH + token
    return PairingOut(token=token, url=url, expires_at=expires_at, qr_svg=svg_markup(url))


@dataclass(frozen=True, slots=True)
class PairingTarget:
    """What a pairing link will pair: shown on the phone before it is consumed."""

    terminal_name: str
    store_name: str


async def pairing_target(pool: asyncpg.Pool, token: str) -> PairingTarget | None:
    """The terminal an unused, unexpired pairing token names, or None; consumes nothing."""
    row = await pool.fetchrow(
        "SELECT t.name AS terminal_name, s.name AS store_name FROM till_pairings p"
        " JOIN terminals t ON t.id = p.terminal_id JOIN stores s ON s.id = t.store_id"
        " WHERE p.digest = $1 AND p.used_at IS NULL AND p.expires_at > now()",
        digest(token),
    )
    return None if row is None else PairingTarget(row["terminal_name"], row["store_name"])


async def consume_pairing(pool: asyncpg.Pool, token: str, label: str) -> str | None:
    """Use the pairing token once: a new device of its terminal, whose credential (shown this
    once) is returned; None for a token unknown, used or expired. Two phones racing for one
    token: the UPDATE lets one through."""
    credential, credential_digest = new_secret(DEVICE_PREFIX)
    async with pool.acquire() as connection, connection.transaction():
        pairing = await connection.fetchrow(
            "UPDATE till_pairings SET used_at = now()"
            " WHERE digest = $1 AND used_at IS NULL AND expires_at > now()"
            " RETURNING merchant_id, terminal_id",
            digest(token),
        )
        if pairing is None:
            return None
        await connection.execute(
            "INSERT INTO till_devices (merchant_id, terminal_id, digest, label)"
            " VALUES ($1, $2, $3, $4)",
            pairing["merchant_id"],
            pairing["terminal_id"],
            credential_digest,
            label[:200],
        )
    return credential


DEVICES_PAGE = page_sql(f"SELECT {_DEVICE} FROM till_devices", " AND terminal_id = $4")


async def devices(
    pool: asyncpg.Pool, merchant_id: int, terminal_id: int, cursor: str | None, limit: int
) -> Page[DeviceOut]:
    """The phones ever paired with one of the merchant's terminals, revoked ones included."""
    await _own_terminal(pool, merchant_id, terminal_id)
    return await newest_page(
        pool,
        DEVICES_PAGE,
        merchant_id,
        cursor,
        limit,
        terminal_id,
        out=lambda row: DeviceOut(**row),
    )


async def revoke_device(
    pool: asyncpg.Pool, merchant_id: int, terminal_id: int, device_id: int
) -> DeviceOut:
    """End a phone's credential: the exchange refuses it at once, its access tokens are refused
    within a second on every API process (TerminalGate). Revoking twice answers the same."""
    row = await pool.fetchrow(
        "UPDATE till_devices SET revoked_at = coalesce(revoked_at, now())"
        f" WHERE id = $1 AND terminal_id = $2 AND merchant_id = $3 RETURNING {_DEVICE}",
        device_id,
        terminal_id,
        merchant_id,
    )
    if row is None:
        raise _no_device(device_id)
    return DeviceOut(**row)


async def _own_terminal(pool: asyncpg.Pool, merchant_id: int, terminal_id: int) -> None:
    found = await pool.fetchval(
        "SELECT 1 FROM terminals WHERE id = $1 AND merchant_id = $2", terminal_id, merchant_id
    )
    if found is None:
        raise no_terminal(terminal_id)


# The device with its terminal's claims, if the device, its terminal and its store are live;
# the same statement stamps the device's last use when that stamp is a minute old.
_EXCHANGE = f"""
WITH live AS (
    SELECT d.id, d.digest, t.id AS terminal_id, t.store_id, s.merchant_id, t.credentials_since,
        t.name AS terminal_name, s.name AS store_name
    FROM till_devices d
    JOIN terminals t ON t.id = d.terminal_id
    JOIN stores s ON s.id = t.store_id
    WHERE d.digest = $1 AND d.revoked_at IS NULL
      AND t.disabled_at IS NULL AND s.disabled_at IS NULL
), stamped AS (
    UPDATE till_devices SET last_used_at = now()
    WHERE id = (SELECT id FROM live)
      AND (last_used_at IS NULL OR last_used_at < now() - interval '{_LAST_USED_EVERY}')
)
SELECT * FROM live
"""


@dataclass(frozen=True, slots=True)
class PairedDevice:
    """A live paired phone: its access token's claims, and the names its page shows."""

    claims: TerminalClaims
    terminal_name: str
    store_name: str


async def device_claims(pool: asyncpg.Pool, credential: str, ttl_seconds: int) -> PairedDevice:
    """The claims of an access token for a paired phone's credential, or 401."""
    presented = digest(credential)
    row = await pool.fetchrow(_EXCHANGE, presented)
    # The row was found by this digest; the comparison is constant-time all the same.
    if row is None or not hmac.compare_digest(row["digest"], presented):
        raise Problem(
            Reason.UNAUTHORIZED,
            "This phone is not paired, or its pairing was revoked; pair it again.",
        )
    claims = TerminalClaims(
        terminal_id=row["terminal_id"],
        store_id=row["store_id"],
        merchant_id=row["merchant_id"],
        expires_at=int(time.time()) + ttl_seconds,
        credentials_since_ms=epoch_ms(row["credentials_since"]),
        device_id=row["id"],
    )
    return PairedDevice(claims, row["terminal_name"], row["store_name"])
