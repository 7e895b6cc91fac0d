"""The consumer's side: claim links, the claimed code's page, and pools under a rush."""

from __future__ import annotations

import asyncio
import re
from collections import Counter

import asyncpg
import httpx
import pytest

from qrloop.codes.format import to_typed
from support import Merchant, Stack, eventually, redeem


class Campaign:
    """A merchant's campaign with one finished order, its codes and claim links."""

    def __init__(self, stack: Stack, quantity: int = 10) -> None:
        self.stack = stack
        self.merchant = stack.new_merchant("Cone & Co")
        self.store_id = self.merchant.created("/v1/stores", {"name": "Main"})["id"]
        self.token = self.merchant.terminal_token(self.store_id)
        self.id = self.merchant.campaign(name="Free cone after 22:00")
        self.order = self.merchant.order(self.id, quantity)
        export = self.merchant.get(f"/v1/orders/{self.order['id']}/codes", format="csv")
        rows = [line.split(",") for line in export.text.splitlines()[1:]]
        self.codes = [row[0] for row in rows]
        self.links = [row[2].removeprefix(stack.base_url) for row in rows]


@pytest.fixture(scope="module")
def campaign(stack: Stack) -> Campaign:
    return Campaign(stack)


def _client(stack: Stack) -> httpx.Client:
    return httpx.Client(base_url=stack.base_url, timeout=30)


def test_link_reveals_nothing_redeemable_before_claiming(campaign: Campaign) -> None:
    """The unclaimed page shows the offer and a claim form, never the code or its typed form."""
    with _client(campaign.stack) as browser:
        page = browser.get(campaign.links[0])
    assert page.status_code == 200
    assert "Free cone after 22:00" in page.text
    assert "5.00 CNY" in page.text
    assert 'name="identifier"' in page.text
    code = campaign.codes[0]
    assert code not in page.text
    assert to_typed(code) not in page.text
    assert "<svg" not in page.text


def test_claim_shows_the_code_which_then_redeems(campaign: Campaign) -> None:
    """Claiming binds the code to the consumer; the page then shows the QR and typed form,
    which the till accepts; the live state turns to used."""
    with _client(campaign.stack) as browser:
        claimed = browser.post(f"{campaign.links[1]}/claim", data={"identifier": "ana@example.com"})
        assert claimed.status_code == 303
        page = browser.get(campaign.links[1])
        assert "<svg" in page.text
        typed = re.search(r'id="typed">([A-Z0-9-]+)<', page.text)
        assert typed is not None
        assert typed.group(1) == to_typed(campaign.codes[1])
        assert redeem(campaign.stack, campaign.token, typed.group(1)).status_code == 200
        state = browser.get(f"{campaign.links[1]}/state").json()
    assert state == {"state": "used"}


def test_someone_else_cannot_take_a_claimed_code(campaign: Campaign) -> None:
    """A second consumer is told the code is taken (409) and sees no code; the first consumer,
    on a new device with the same email typed differently, gets it back."""
    link = campaign.links[2]
    with _client(campaign.stack) as first:
        assert first.post(f"{link}/claim", data={"identifier": "bo@example.com"}).status_code == 303
    with _client(campaign.stack) as other:
        refused = other.post(f"{link}/claim", data={"identifier": "+86 138 0000 0001"})
        assert refused.status_code == 409
        assert "already been claimed" in refused.text
        assert "<svg" not in other.get(link).text
    with _client(campaign.stack) as new_device:
        again = new_device.post(f"{link}/claim", data={"identifier": "  BO@Example.com "})
        assert again.status_code == 303
        assert "<svg" in new_device.get(link).text


def test_voided_code_page_says_voided(campaign: Campaign) -> None:
    """A voided code's link shows it as voided and cannot be claimed."""
    campaign.merchant.post("/v1/codes/void", {"codes": [campaign.codes[3]]})
    with _client(campaign.stack) as browser:
        page = browser.get(campaign.links[3])
        assert "Voided by the issuer" in page.text
        refused = browser.post(f"{campaign.links[3]}/claim", data={"identifier": "cy@example.com"})
        state = browser.get(f"{campaign.links[3]}/state").json()
    assert refused.status_code == 409
    assert state == {"state": "voided"}


def test_bad_identifier_and_bad_link(campaign: Campaign) -> None:
    """A malformed phone/email is a 400 page; a forged link is 404 and says nothing more."""
    with _client(campaign.stack) as browser:
        bad = browser.post(f"{campaign.links[4]}/claim", data={"identifier": "call me"})
        assert bad.status_code == 400
        forged = campaign.links[4][:-3] + (
            "AAA" if not campaign.links[4].endswith("AAA") else "BBB"
        )
        assert browser.get(forged).status_code == 404


def test_claims_settle_with_only_a_keyed_hash(campaign: Campaign) -> None:
    """The claim reaches PostgreSQL with a keyed hash, never the email; stats count it."""
    with _client(campaign.stack) as browser:
        browser.post(f"{campaign.links[5]}/claim", data={"identifier": "dee@example.com"})

    async def stored() -> list[str]:
        connection = await asyncpg.connect(campaign.stack.stores.database_url)
        try:
            rows = await connection.fetch(
                "SELECT consumer_hash FROM claims WHERE campaign_id = $1", campaign.id
            )
            return [row["consumer_hash"] for row in rows]
        finally:
            await connection.close()

    eventually(lambda: len(asyncio.run(stored())) >= 3, within=10)
    hashes = asyncio.run(stored())
    assert all(re.fullmatch(r"\d+:[0-9a-f]{32}", value) for value in hashes)
    assert not any("example" in value for value in hashes)
    stats = campaign.merchant.get(f"/v1/campaigns/{campaign.id}/stats").json()
    assert stats["claimed"] >= 3


def test_pool_rush_gives_no_code_twice_and_never_overshoots(stack: Stack) -> None:
    """500 concurrent claims by 250 people (each trying twice) on a pool of 200 codes, 1 each:
    exactly 200 codes go out, each to one person, nobody gets two, the rest hear 'all gone'."""
    shop = Campaign(stack, quantity=200)
    pool = shop.merchant.created(
        f"/v1/campaigns/{shop.id}/pools", {"order_id": shop.order["id"], "per_consumer": 1}
    )
    path = pool["url"].removeprefix(stack.base_url)

    async def rush() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=120, limits=limits) as c:
            return await asyncio.gather(
                *(
                    c.post(f"{path}/claim", data={"identifier": f"+86138{person:08d}"})
                    for person in [*range(250), *range(250)]
                )
            )

    responses = asyncio.run(rush())
    given = [r.headers["location"] for r in responses if r.status_code == 303]
    by_person = Counter(r.request.content.decode() for r in responses if r.status_code == 303)
    assert len(given) == 200
    assert len(set(given)) == 200
    assert max(by_person.values()) == 1
    assert {r.status_code for r in responses if r.status_code != 303} == {409}
    assert shop.merchant.get(f"/v1/pools/{pool['id']}").json()["handed_out"] == 200


def test_pool_is_the_merchants_own(stack: Stack, campaign: Campaign) -> None:
    """Another merchant can neither read a pool nor open one on someone else's order."""
    pool = campaign.merchant.created(
        f"/v1/campaigns/{campaign.id}/pools", {"order_id": campaign.order["id"], "per_consumer": 2}
    )
    stranger: Merchant = stack.new_merchant("Stranger")
    assert stranger.get(f"/v1/pools/{pool['id']}").status_code == 404
    opened = stranger.post(f"/v1/campaigns/{campaign.id}/pools", {"order_id": campaign.order["id"]})
    assert opened.status_code == 404


def test_used_code_cannot_be_claimed(campaign: Campaign) -> None:
    """A code redeemed at the till before anyone claimed it answers 409 and shows as used."""
    assert redeem(campaign.stack, campaign.token, campaign.codes[6]).status_code == 200
    with _client(campaign.stack) as browser:
        refused = browser.post(f"{campaign.links[6]}/claim", data={"identifier": "eve@example.com"})
        page = browser.get(campaign.links[6])
    assert refused.status_code == 409
    assert "Used" in page.text
    assert 'name="identifier"' not in page.text


def test_pool_limit_lists_the_codes_already_taken(stack: Stack) -> None:
    """With K = 2, a third request by the same person is refused (409) with links to the two
    codes they hold; another person still gets one."""
    shop = Campaign(stack, quantity=5)
    pool = shop.merchant.created(
        f"/v1/campaigns/{shop.id}/pools", {"order_id": shop.order["id"], "per_consumer": 2}
    )
    path = pool["url"].removeprefix(stack.base_url)
    with _client(stack) as browser:
        taken = [
            browser.post(f"{path}/claim", data={"identifier": "+8613800000009"}) for _ in range(3)
        ]
        assert [r.status_code for r in taken] == [303, 303, 409]
        held = {r.headers["location"] for r in taken[:2]}
        assert held == set(re.findall(r'href="(/c/[A-Z2-7]+)"', taken[2].text))
        other = browser.post(f"{path}/claim", data={"identifier": "fay@example.com"})
    assert other.status_code == 303
    assert other.headers["location"] not in held
