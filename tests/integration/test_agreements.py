"""Acceptance agreements: a merchant's tills accept another merchant's codes only with its
consent, given with its own API key; either side ends it; tills learn within a second."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
import pytest

from qrloop import db
from support import (
    Stack,
    Stores,
    check_status,
    eventually,
    fetchval,
    own_stores,
    reason,
    redeem,
)

# The refresher re-reads campaigns four times a second: acceptances and endings reach every
# API process within this bound.
WITHIN = 1.0


class Alliance:
    """An issuer with a campaign and codes, and a would-be acceptor with a till."""

    def __init__(self, stack: Stack, **campaign: Any) -> None:
        self.stack = stack
        self.issuer = stack.new_merchant("Cone & Co")
        self.acceptor = stack.new_merchant("Corner Shop")
        store = self.acceptor.created("/v1/stores", {"name": "Corner"})["id"]
        self.till = self.acceptor.terminal_token(store)
        self.campaign_id = self.issuer.campaign(face_value=800, **campaign)
        self._codes = iter(self.issuer.codes(self.campaign_id, 10))

    def code(self) -> str:
        return next(self._codes)

    def propose(self) -> dict[str, Any]:
        return self.issuer.created(
            "/v1/agreements",
            {"campaign_id": self.campaign_id, "acceptor_merchant_id": self.acceptor.id},
        )

    def status_at_till(self, code: str) -> str:
        return check_status(self.stack, self.till, code)


def _status(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, reason(response)


def _settled(stack: Stack, campaign_id: int) -> int:
    count: int = fetchval(
        stack, "SELECT count(*) FROM redemptions WHERE campaign_id = $1", campaign_id
    )
    return count


def test_listing_a_merchant_no_longer_makes_its_tills_accept(stack: Stack) -> None:
    """Attack: an issuer lists a merchant in accepted_merchants, and that merchant's till then
    redeemed the issuer's codes (200), booking a receivable it never agreed to. Now the till
    answers 403 not_accepted_here and nothing is consumed or booked until the acceptor
    accepts with its own key; then it redeems, and the answer names the issuer."""
    alliance = Alliance(stack, accepted_merchants=[])
    patched = httpx.patch(
        f"{stack.base_url}/v1/campaigns/{alliance.campaign_id}",
        json={"accepted_merchants": [alliance.acceptor.id]},
        headers=alliance.issuer.headers,
    )
    assert patched.status_code == 200, patched.text
    code = alliance.code()
    refused = redeem(stack, alliance.till, code)
    assert _status(refused) == (403, "not_accepted_here")
    stats = alliance.issuer.get(f"/v1/campaigns/{alliance.campaign_id}/stats").json()
    assert (stats["redeemed"], stats["settled"]) == (0, 0)

    alliance.acceptor.accept(alliance.campaign_id)
    eventually(lambda: alliance.status_at_till(code) == "valid", within=WITHIN)
    redeemed = redeem(stack, alliance.till, code)
    assert redeemed.status_code == 200, redeemed.text
    assert redeemed.json()["issuer_merchant_id"] == alliance.issuer.id
    assert redeemed.json()["issuer_name"] == "Cone & Co"
    eventually(lambda: _settled(stack, alliance.campaign_id) == 1, within=10)


def test_accepting_then_ending_reaches_the_till_within_a_second(stack: Stack) -> None:
    """Accepting lets the acceptor's till redeem within a second; the acceptor ending the
    agreement, or the issuer ending a new one, makes it refuse within a second."""
    alliance = Alliance(stack)
    code = alliance.code()
    first = alliance.propose()
    assert alliance.status_at_till(code) == "not_accepted_here"

    accepted = alliance.acceptor.created(f"/v1/agreements/{first['id']}/accept", {})
    assert (accepted["status"], accepted["accepted_at"] is not None) == ("active", True)
    eventually(lambda: alliance.status_at_till(code) == "valid", within=WITHIN)
    check = httpx.post(
        stack.base_url + "/v1/check",
        json={"code": code},
        headers={"Authorization": f"Bearer {alliance.till}"},
    ).json()
    assert (check["issuer_merchant_id"], check["issuer_name"]) == (alliance.issuer.id, "Cone & Co")

    ended = alliance.acceptor.created(f"/v1/agreements/{first['id']}/end", {})
    assert (ended["status"], ended["ended_by"]) == ("ended", "acceptor")
    eventually(lambda: alliance.status_at_till(code) == "not_accepted_here", within=WITHIN)
    assert _status(redeem(stack, alliance.till, code)) == (403, "not_accepted_here")

    second = alliance.propose()
    assert second["id"] != first["id"]
    alliance.acceptor.created(f"/v1/agreements/{second['id']}/accept", {})
    eventually(lambda: alliance.status_at_till(code) == "valid", within=WITHIN)
    ended = alliance.issuer.created(f"/v1/agreements/{second['id']}/end", {})
    assert (ended["status"], ended["ended_by"]) == ("ended", "issuer")
    eventually(lambda: alliance.status_at_till(code) == "not_accepted_here", within=WITHIN)
    again = alliance.acceptor.post(f"/v1/agreements/{second['id']}/accept", {})
    assert _status(again) == (409, "conflict")


def test_the_acceptor_cannot_be_forced(stack: Stack) -> None:
    """Attack: the issuer accepts its own proposal, proposes again or re-lists the merchant.
    Only the acceptor's own key can accept: the issuer gets 403 forbidden, the agreement stays
    proposed and the acceptor's till keeps refusing."""
    alliance = Alliance(stack, accepted_merchants=[])
    code = alliance.code()
    proposal = alliance.propose()
    forced = alliance.issuer.post(f"/v1/agreements/{proposal['id']}/accept", {})
    assert _status(forced) == (403, "forbidden")
    again = alliance.issuer.post(
        "/v1/agreements",
        {"campaign_id": alliance.campaign_id, "acceptor_merchant_id": alliance.acceptor.id},
    )
    assert (again.status_code, again.json()["id"]) == (200, proposal["id"])
    relisted = httpx.patch(
        f"{stack.base_url}/v1/campaigns/{alliance.campaign_id}",
        json={"accepted_merchants": [alliance.acceptor.id]},
        headers=alliance.issuer.headers,
    ).json()
    assert (relisted["accepted_merchants"], relisted["proposed_merchants"]) == (
        [],
        [alliance.acceptor.id],
    )
    assert alliance.issuer.get(f"/v1/agreements/{proposal['id']}").json()["status"] == "proposed"
    assert _status(redeem(stack, alliance.till, code)) == (403, "not_accepted_here")


def test_the_acceptor_may_decline_a_proposal(stack: Stack) -> None:
    """The acceptor ending a proposal declines it: it can no longer be accepted, its tills
    never accept the campaign, and the issuer sees who ended it."""
    alliance = Alliance(stack)
    proposal = alliance.propose()
    declined = alliance.acceptor.created(f"/v1/agreements/{proposal['id']}/end", {})
    assert (declined["status"], declined["accepted_at"], declined["ended_by"]) == (
        "ended",
        None,
        "acceptor",
    )
    assert _status(alliance.acceptor.post(f"/v1/agreements/{proposal['id']}/accept", {})) == (
        409,
        "conflict",
    )
    assert alliance.status_at_till(alliance.code()) == "not_accepted_here"
    seen = alliance.issuer.get(f"/v1/agreements/{proposal['id']}").json()
    assert (seen["ended_by"], seen["acceptor_name"]) == ("acceptor", None)


def test_a_third_merchant_can_neither_see_nor_accept_nor_end(stack: Stack) -> None:
    """Attack: a merchant that is not a party reads, accepts or ends someone else's agreement
    (to make its own tills accept, or to break an alliance). Each answers 404 exactly like an
    agreement id that does not exist, and the agreement is unchanged."""
    alliance = Alliance(stack)
    proposal = alliance.propose()
    third = stack.new_merchant("Third")
    missing = 10**12

    def answers(agreement_id: int) -> list[tuple[int, str, str]]:
        path = f"/v1/agreements/{agreement_id}"
        calls = (third.get(path), third.post(path + "/accept", {}), third.post(path + "/end", {}))
        return [(*_status(r), r.json()["detail"].replace(str(agreement_id), "N")) for r in calls]

    assert answers(proposal["id"]) == answers(missing)
    assert {status for status, *_ in answers(missing)} == {404}
    assert third.get("/v1/agreements").json() == []
    assert alliance.issuer.get(f"/v1/agreements/{proposal['id']}").json() == proposal


def test_proposing_to_an_unknown_merchant_answers_like_a_real_one(stack: Stack) -> None:
    """Attack: an issuer probes merchant ids by proposing agreements. A merchant that has not
    consented is indistinguishable from an id nobody holds: same status, same body (no
    acceptor name), same listing, and the same refusal at the tills."""
    alliance = Alliance(stack)
    unknown_id = 10**12

    def propose(acceptor_id: int) -> httpx.Response:
        body = {"campaign_id": alliance.campaign_id, "acceptor_merchant_id": acceptor_id}
        return alliance.issuer.post("/v1/agreements", body)

    def anonymous(agreement: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in agreement.items() if k not in ("id", "acceptor_merchant_id")}

    real, unknown = propose(alliance.acceptor.id), propose(unknown_id)
    assert real.status_code == unknown.status_code == 201
    assert anonymous(real.json()) | {"proposed_at": 0} == anonymous(unknown.json()) | {
        "proposed_at": 0
    }
    assert real.json()["acceptor_name"] is None
    listed = alliance.issuer.get("/v1/agreements").json()
    assert [a["acceptor_merchant_id"] for a in listed] == [alliance.acceptor.id, unknown_id]
    campaign = alliance.issuer.get(f"/v1/campaigns/{alliance.campaign_id}").json()
    assert campaign["proposed_merchants"] == sorted([alliance.acceptor.id, unknown_id])

    stranger = stack.new_merchant("Stranger")
    stranger_till = stranger.terminal_token(stranger.created("/v1/stores", {"name": "S"})["id"])
    code = alliance.code()
    at_acceptor, at_stranger = (
        redeem(stack, alliance.till, code),
        redeem(stack, stranger_till, code),
    )
    assert at_acceptor.json() == at_stranger.json()
    assert _status(at_acceptor) == (403, "not_accepted_here")


def test_each_side_sees_the_other_as_it_may(stack: Stack) -> None:
    """The acceptor sees the issuer, the campaign, its face value and currency; the issuer
    sees the acceptor's name once it has accepted; the campaign lists only active acceptors
    in accepted_merchants; re-listing without the acceptor ends the agreement (issuer)."""
    alliance = Alliance(stack, accepted_merchants=[])
    proposal = alliance.propose()
    [seen] = alliance.acceptor.get("/v1/agreements").json()
    assert seen["id"] == proposal["id"]
    assert (seen["role"], seen["status"], seen["campaign_id"]) == (
        "acceptor",
        "proposed",
        alliance.campaign_id,
    )
    assert (seen["issuer_merchant_id"], seen["issuer_name"]) == (alliance.issuer.id, "Cone & Co")
    assert (seen["face_value"], seen["currency"], seen["campaign_name"]) == (
        800,
        "CNY",
        "Free cone",
    )
    assert seen["acceptor_name"] == "Corner Shop"

    alliance.acceptor.created(f"/v1/agreements/{proposal['id']}/accept", {})
    mine = alliance.issuer.get(f"/v1/agreements/{proposal['id']}").json()
    assert (mine["role"], mine["acceptor_name"]) == ("issuer", "Corner Shop")
    campaign = alliance.issuer.get(f"/v1/campaigns/{alliance.campaign_id}").json()
    assert (campaign["accepted_merchants"], campaign["proposed_merchants"]) == (
        [alliance.acceptor.id],
        [],
    )
    delisted = httpx.patch(
        f"{stack.base_url}/v1/campaigns/{alliance.campaign_id}",
        json={"accepted_merchants": []},
        headers=alliance.issuer.headers,
    ).json()
    assert delisted["accepted_merchants"] == []
    ended = alliance.acceptor.get(f"/v1/agreements/{proposal['id']}").json()
    assert (ended["status"], ended["ended_by"]) == ("ended", "issuer")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"campaign_id": 10**12, "acceptor_merchant_id": 1}, 404),
        ({"campaign_id": 1, "acceptor_merchant_id": 0}, 400),
        ({"campaign_id": 1}, 400),
    ],
)
def test_bad_proposals(stack: Stack, body: dict[str, int], status: int) -> None:
    """A proposal for a campaign that is not the caller's is 404; a malformed one is 400."""
    merchant = stack.new_merchant()
    response = merchant.post("/v1/agreements", body)
    assert _status(response) == (status, {404: "not_found", 400: "bad_request"}[status])


def test_a_proposal_to_oneself_is_a_bad_request(stack: Stack) -> None:
    """The issuer's own stores accept its codes already; proposing to itself is 400."""
    issuer = stack.new_merchant()
    body = {"campaign_id": issuer.campaign(), "acceptor_merchant_id": issuer.id}
    assert _status(issuer.post("/v1/agreements", body)) == (400, "bad_request")


def test_an_ended_agreement_keeps_its_ledger_and_reports(stack: Stack) -> None:
    """Redemptions made under an agreement stay booked after it ends: the ledger still holds
    them and both sides' settlement reports still show them."""
    alliance = Alliance(stack)
    codes = [alliance.code(), alliance.code()]
    proposal = alliance.propose()
    alliance.acceptor.created(f"/v1/agreements/{proposal['id']}/accept", {})
    eventually(lambda: alliance.status_at_till(codes[0]) == "valid", within=WITHIN)
    for code in codes:
        assert redeem(stack, alliance.till, code).status_code == 200
    eventually(lambda: _settled(stack, alliance.campaign_id) == 2, within=10)
    alliance.issuer.created(f"/v1/agreements/{proposal['id']}/end", {})
    eventually(lambda: alliance.status_at_till(alliance.code()) == "not_accepted_here", WITHIN)

    stats = alliance.issuer.get(f"/v1/campaigns/{alliance.campaign_id}/stats").json()
    assert (stats["settled"], stats["settled_value"]) == (2, 1_600)
    day = fetchval(
        stack,
        "SELECT max(booked_at)::date FROM ledger_transactions WHERE campaign_id = $1",
        alliance.campaign_id,
    )
    owes = alliance.issuer.get("/v1/settlements", date=str(day)).json()
    assert owes["net"] == {"CNY": -1_600}
    owed = alliance.acceptor.get("/v1/settlements", date=str(day)).json()
    assert owed["lines"] == [
        {"direction": "owed", "counterparty_id": alliance.issuer.id, "currency": "CNY",
         "amount": 1_600, "redemptions": 2, "reversals": 0},
    ]  # fmt: skip


# ---- the migration: allies named before agreements existed become proposals ----

_BEFORE = 8  # the acceptance agreements migration


async def _migrate_with_old_allies(database_url: str) -> dict[str, Any]:
    """Build the schema as it was before migration 008, with a campaign naming allies (one of
    them the issuer itself, one twice) and a settled redemption; then run `migrate`."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for version, name, sql in db.migrations():
            if version < _BEFORE:
                await connection.execute(sql)
                await connection.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
        issuer, ally, other = [
            await connection.fetchval("INSERT INTO merchants (name) VALUES ($1) RETURNING id", n)
            for n in ("Issuer", "Ally", "Other")
        ]
        campaign = await connection.fetchval(
            "INSERT INTO campaigns (merchant_id, name, face_value, currency, algorithm,"
            " accepted_merchants) VALUES ($1, 'Old', 500, 'CNY', 'hmac-sha256', $2) RETURNING id",
            issuer,
            [ally, issuer, other, ally],
        )
        store = await connection.fetchval(
            "INSERT INTO stores (merchant_id, name) VALUES ($1, 'S') RETURNING id", ally
        )
        terminal = await connection.fetchval(
            "INSERT INTO terminals (store_id, name, secret_digest) VALUES ($1, 'T', $2)"
            " RETURNING id",
            store,
            b"\0" * 32,
        )
        await connection.execute(
            "INSERT INTO redemptions (campaign_id, serial, use_no, terminal_id, store_id,"
            " accepting_merchant_id, redeemed_at, stream_entry)"
            " VALUES ($1, 0, 1, $2, $3, $4, now(), '1-0')",
            campaign,
            terminal,
            store,
            ally,
        )
    finally:
        await connection.close()

    applied = await db.migrate(database_url, progress=lambda _: None)
    connection = await asyncpg.connect(database_url)
    try:
        return {
            "applied": applied,
            "ids": (issuer, ally, other, campaign),
            "agreements": [
                tuple(row)
                for row in await connection.fetch(
                    "SELECT campaign_id, acceptor_merchant_id, status, accepted_at, ended_at"
                    " FROM acceptance_agreements ORDER BY acceptor_merchant_id"
                )
            ],
            "column_left": await connection.fetchval(
                "SELECT count(*) FROM information_schema.columns"
                " WHERE table_name = 'campaigns' AND column_name = 'accepted_merchants'"
            ),
            "redemptions": await connection.fetchval("SELECT count(*) FROM redemptions"),
        }
    finally:
        await connection.close()


def test_migration_turns_old_allies_into_proposals(stores: Stores) -> None:
    """On a database whose campaign named allies in accepted_merchants, the migration makes
    each ally (once, never the issuer itself) a proposed agreement, so no till accepts the
    campaign until the ally consents; the column goes, past redemptions stay."""
    with own_stores(stores) as fresh:
        result = asyncio.run(_migrate_with_old_allies(fresh.database_url))
    issuer, ally, other, campaign = result["ids"]
    assert _BEFORE in result["applied"]
    assert result["agreements"] == [
        (campaign, ally, "proposed", None, None),
        (campaign, other, "proposed", None, None),
    ]
    assert result["column_left"] == 0
    assert result["redemptions"] == 1
    assert issuer not in {acceptor for _, acceptor, *_ in result["agreements"]}


def test_accept_needs_the_acceptor_key(stack: Stack) -> None:
    """Without an API key the agreement routes answer 401, like every merchant route."""
    for response in (
        httpx.get(stack.base_url + "/v1/agreements"),
        httpx.post(stack.base_url + "/v1/agreements/1/accept"),
    ):
        assert _status(response) == (401, "unauthorized")
