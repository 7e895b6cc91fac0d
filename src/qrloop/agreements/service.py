"""Acceptance agreements in PostgreSQL: each query is scoped to a merchant that is a party.

A proposal to a merchant id that no merchant holds is stored and answered like any other and
simply never becomes active, so proposing cannot tell an issuer which merchants exist. Tills
learn of acceptances and endings through the rules cache (redemption/rules.py), which reads
the active acceptors of every campaign four times a second.
"""

from __future__ import annotations

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from qrloop.agreements.schemas import AgreementOut
from qrloop.errors import Problem, Reason

# $1 is the merchant asking: it sees the agreements it is a party to, and the acceptor's name
# only once the acceptor has shown itself by accepting.
_VISIBLE = """
SELECT a.id, a.status,
    CASE WHEN c.merchant_id = $1 THEN 'issuer' ELSE 'acceptor' END AS role,
    a.campaign_id, c.name AS campaign_name, c.face_value, c.currency,
    c.merchant_id AS issuer_merchant_id, issuer.name AS issuer_name, a.acceptor_merchant_id,
    CASE WHEN a.acceptor_merchant_id = $1 OR a.accepted_at IS NOT NULL THEN acceptor.name END
        AS acceptor_name,
    a.proposed_at, a.accepted_at, a.ended_at, a.ended_by
FROM acceptance_agreements a
JOIN campaigns c ON c.id = a.campaign_id
JOIN merchants issuer ON issuer.id = c.merchant_id
LEFT JOIN merchants acceptor ON acceptor.id = a.acceptor_merchant_id
WHERE (c.merchant_id = $1 OR a.acceptor_merchant_id = $1)
"""


def _out(row: asyncpg.Record) -> AgreementOut:
    return AgreementOut(**{key: row[key] for key in row.keys()})  # noqa: SIM118 (Record is not a dict)


def _not_found(agreement_id: int) -> Problem:
    return Problem(Reason.NOT_FOUND, f"No agreement {agreement_id} for this merchant.")


async def propose_to(
    connection: PoolConnectionProxy, campaign_id: int, acceptor_ids: list[int]
) -> bool:
    """Open a proposal to each acceptor that has no open agreement on the campaign; whether
    any was opened. The caller has checked that the campaign is the issuer's."""
    opened = await connection.fetch(
        "INSERT INTO acceptance_agreements (campaign_id, acceptor_merchant_id)"
        " SELECT $1, acceptor FROM unnest($2::bigint[]) AS acceptor ORDER BY acceptor"
        " ON CONFLICT (campaign_id, acceptor_merchant_id) WHERE status <> 'ended' DO NOTHING"
        " RETURNING id",
        campaign_id,
        sorted(set(acceptor_ids)),
    )
    return bool(opened)


async def end_all_but(
    connection: PoolConnectionProxy, campaign_id: int, acceptor_ids: list[int]
) -> None:
    """The issuer ends its open agreements on the campaign with every acceptor not listed."""
    await connection.execute(
        "UPDATE acceptance_agreements SET status = 'ended', ended_at = now(), ended_by = 'issuer'"
        " WHERE campaign_id = $1 AND status <> 'ended'"
        " AND acceptor_merchant_id <> ALL($2::bigint[])",
        campaign_id,
        acceptor_ids,
    )


async def propose(
    pool: asyncpg.Pool, issuer_id: int, campaign_id: int, acceptor_id: int
) -> tuple[AgreementOut, bool]:
    """The open agreement between the issuer's campaign and the acceptor, proposed now unless
    one was open already; and whether it is new."""
    if acceptor_id == issuer_id:
        raise Problem(Reason.BAD_REQUEST, "A campaign's own stores accept it without agreement.")
    async with pool.acquire() as connection, connection.transaction():
        owned = await connection.fetchval(
            "SELECT true FROM campaigns WHERE id = $1 AND merchant_id = $2", campaign_id, issuer_id
        )
        if not owned:
            raise Problem(Reason.NOT_FOUND, f"No campaign {campaign_id} in this account.")
        created = await propose_to(connection, campaign_id, [acceptor_id])
        row = await connection.fetchrow(
            _VISIBLE + " AND a.campaign_id = $2 AND a.acceptor_merchant_id = $3"
            " AND a.status <> 'ended'",
            issuer_id,
            campaign_id,
            acceptor_id,
        )
    assert row is not None
    return _out(row), created


async def listed(pool: asyncpg.Pool, merchant_id: int) -> list[AgreementOut]:
    """Every agreement the merchant is a party to, as issuer or as acceptor."""
    rows = await pool.fetch(_VISIBLE + " ORDER BY a.id", merchant_id)
    return [_out(row) for row in rows]


async def get(
    connection: asyncpg.Pool | PoolConnectionProxy, merchant_id: int, agreement_id: int
) -> AgreementOut:
    """One agreement the merchant is a party to; any other id is not found, alike."""
    row = await connection.fetchrow(_VISIBLE + " AND a.id = $2", merchant_id, agreement_id)
    if row is None:
        raise _not_found(agreement_id)
    return _out(row)


async def accept(pool: asyncpg.Pool, merchant_id: int, agreement_id: int) -> AgreementOut:
    """The acceptor consents to a proposal: its tills accept the campaign within a second.
    Accepting an active agreement again changes nothing."""
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(
            "UPDATE acceptance_agreements SET status = 'active', accepted_at = now()"
            " WHERE id = $1 AND acceptor_merchant_id = $2 AND status = 'proposed'",
            agreement_id,
            merchant_id,
        )
        agreement = await get(connection, merchant_id, agreement_id)
    if agreement.role == "issuer":
        raise Problem(Reason.FORBIDDEN, "Only the acceptor can accept an agreement.")
    if agreement.status == "ended":
        raise Problem(Reason.CONFLICT, "This agreement has ended; the issuer can propose anew.")
    return agreement


async def end(pool: asyncpg.Pool, merchant_id: int, agreement_id: int) -> AgreementOut:
    """Either side ends the agreement: tills refuse the campaign's codes within a second.
    Ending an ended agreement changes nothing."""
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(
            "UPDATE acceptance_agreements a SET status = 'ended', ended_at = now(),"
            " ended_by = CASE WHEN a.acceptor_merchant_id = $2 THEN 'acceptor' ELSE 'issuer' END"
            " FROM campaigns c WHERE a.id = $1 AND c.id = a.campaign_id"
            " AND (c.merchant_id = $2 OR a.acceptor_merchant_id = $2) AND a.status <> 'ended'",
            agreement_id,
            merchant_id,
        )
        return await get(connection, merchant_id, agreement_id)
