"""The consumer's side: claim links proven with one-time codes, the claimed code's page, and
pools under a rush."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from qrloop.claim.pages import STATE_SCRIPT
from qrloop.codes.format import to_typed
from support import (
    Merchant,
    Stack,
    Stores,
    claim_with_code,
    eventually,
    fetch,
    fetchval,
    one_time_code,
    redeem,
    serving,
)


class Campaign:
    """A merchant's campaign with one finished order, its codes and claim links."""

    def __init__(self, stack: Stack, quantity: int = 16) -> None:
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

    def pool(self, per_consumer: int, **fields: str) -> str:
        """A pool over the whole order; its path."""
        body = {"order_id": self.order["id"], "per_consumer": per_consumer, **fields}
        created = self.merchant.created(f"/v1/campaigns/{self.id}/pools", body)
        return str(created["url"]).removeprefix(self.stack.base_url)


@pytest.fixture(scope="module")
def campaign(stack: Stack) -> Campaign:
    return Campaign(stack)


def _client(stack: Stack) -> httpx.Client:
    return httpx.Client(base_url=stack.base_url, timeout=30)


def _shows_code(page: httpx.Response, code: str) -> bool:
    return "<svg" in page.text or code in page.text or to_typed(code) in page.text


def test_link_reveals_nothing_redeemable_before_claiming(campaign: Campaign) -> None:
    """The unclaimed page shows the offer and a form for a phone or email, never the code or
    its typed form."""
    with _client(campaign.stack) as browser:
        page = browser.get(campaign.links[0])
    assert page.status_code == 200
    assert "Free cone after 22:00" in page.text
    assert "CN¥5.00" in page.text
    assert 'name="identifier"' in page.text
    assert not _shows_code(page, campaign.codes[0])


def test_claim_with_a_one_time_code_shows_the_code_which_then_redeems(
    campaign: Campaign,
) -> None:
    """Typing an email sends a one-time code and the page asks for it (no code shown yet);
    the right one-time code claims the code for this browser, whose page then shows the QR
    and typed form, which the till accepts; the live state turns to used."""
    link = campaign.links[1]
    with _client(campaign.stack) as browser:
        asked = browser.post(f"{link}/claim", data={"identifier": "ana@example.com"})
        assert asked.status_code == 303
        waiting = browser.get(link)
        assert 'name="code"' in waiting.text
        assert "a•••@example.com" in waiting.text
        assert not _shows_code(waiting, campaign.codes[1])
        code = one_time_code(campaign.stack, "ana@example.com")
        proven = browser.post(f"{link}/verify", data={"code": code})
        assert proven.status_code == 303
        page = browser.get(link)
        typed = re.search(r'id="typed"><data value="([A-Z0-9-]+)"', page.text)
        assert typed is not None
        assert typed.group(1) == to_typed(campaign.codes[1])
        assert "<svg" in page.text
        assert redeem(campaign.stack, campaign.token, typed.group(1)).status_code == 200
        state = browser.get(f"{link}/state").json()
    assert state == {"state": "used"}


def test_typing_the_owners_identifier_never_reveals_a_claimed_code(campaign: Campaign) -> None:
    """Attack: a stranger who knows (or guesses) the owner's email or phone, in any spelling,
    types it on the claim link from another browser. Before one-time codes this showed the
    code; now it only sends the owner a one-time code, five wrong guesses end the challenge,
    and no page of the stranger's ever shows the code."""
    stack, link, code = campaign.stack, campaign.links[2], campaign.codes[2]
    with _client(stack) as owner:
        assert claim_with_code(stack, owner, link, "victim@example.com", "victim@example.com")
        assert _shows_code(owner.get(link), code)
    for spelling in ("victim@example.com", "VICTIM+3@Example.com", "victim+1@example.com"):
        with _client(stack) as stranger:
            asked = stranger.post(f"{link}/claim", data={"identifier": spelling})
            assert not _shows_code(asked, code)
            assert not _shows_code(stranger.get(link), code)
    with _client(stack) as stranger:
        stranger.post(f"{link}/claim", data={"identifier": "victim@example.com"})
        guesses = [
            stranger.post(f"{link}/verify", data={"code": f"{guess:06d}"}) for guess in range(6)
        ]
        right = stranger.post(
            f"{link}/verify", data={"code": one_time_code(stack, "victim@example.com")}
        )
        assert [g.status_code for g in guesses[:4]] == [400] * 4
        assert guesses[4].status_code == 429  # the fifth wrong try ends the challenge
        assert not any(_shows_code(page, code) for page in [*guesses, right])
        assert right.status_code == 400
        assert not _shows_code(stranger.get(link), code)


def test_the_owner_gets_the_code_on_a_new_device_with_a_one_time_code(
    campaign: Campaign,
) -> None:
    """The owner, on a second device, types their phone number spelled differently, gets a
    one-time code on that phone, and sees the code again."""
    stack, link = campaign.stack, campaign.links[3]
    with _client(stack) as phone:
        claim_with_code(stack, phone, link, "+86 138 0000 0042", "+8613800000042")
    with _client(stack) as laptop:
        assert not _shows_code(laptop.get(link), campaign.codes[3])
        again = claim_with_code(stack, laptop, link, "008613800000042", "+8613800000042")
        assert again.status_code == 303
        assert _shows_code(laptop.get(link), campaign.codes[3])


def test_someone_else_cannot_take_a_claimed_code(campaign: Campaign) -> None:
    """A second person who proves their own phone is told the code is taken (409) and sees no
    code."""
    stack, link = campaign.stack, campaign.links[4]
    with _client(stack) as first:
        claim_with_code(stack, first, link, "bo@example.com", "bo@example.com")
    with _client(stack) as other:
        refused = claim_with_code(stack, other, link, "+86 138 0000 0001", "+8613800000001")
        assert refused.status_code == 409
        assert "already been claimed" in refused.text
        assert not _shows_code(other.get(link), campaign.codes[4])


def test_a_one_time_code_works_only_in_the_browser_and_link_it_was_asked_for(
    campaign: Campaign,
) -> None:
    """Attack: a one-time code read off someone's screen is useless elsewhere: typed in
    another browser, or on another claim link in the same browser, it is refused and shows
    nothing."""
    stack, link, other_link = campaign.stack, campaign.links[5], campaign.links[6]
    with _client(stack) as asking:
        asking.post(f"{link}/claim", data={"identifier": "cy@example.com"})
        code = one_time_code(stack, "cy@example.com")
        elsewhere = asking.post(f"{other_link}/verify", data={"code": code})
        assert elsewhere.status_code == 400
        assert not _shows_code(elsewhere, campaign.codes[6])
        with _client(stack) as thief:
            stolen = thief.post(f"{link}/verify", data={"code": code})
            assert stolen.status_code == 400
            assert not _shows_code(thief.get(link), campaign.codes[5])
        assert asking.post(f"{link}/verify", data={"code": code}).status_code == 303


def test_one_time_codes_are_capped_per_person_per_hour(stack: Stack) -> None:
    """At most 5 one-time codes per person per hour, however the email is spelled; the sixth
    request is refused (429) and sends nothing. The challenge lives at most 10 minutes, and
    Redis keeps neither the code nor the email."""
    shop = Campaign(stack, quantity=1)
    spellings = ["dee@example.com", "DEE+1@example.com", "dee+2@EXAMPLE.com", "Dee@Example.com"]
    with _client(stack) as browser:
        answers = [
            browser.post(f"{shop.links[0]}/claim", data={"identifier": spellings[i % 4]})
            for i in range(6)
        ]
        challenge = browser.cookies["qrloop_otp"]
    assert [a.status_code for a in answers] == [303] * 5 + [429]
    sent = fetch(
        stack,
        "SELECT body FROM consumer_messages WHERE recipient LIKE 'dee%' AND kind = 'otp'",
    )
    assert len(sent) == 5
    store = redis.Redis.from_url(stack.stores.redis_url)
    key = f"qr:otp:challenge:{challenge}"
    assert 0 < store.ttl(key) <= 600
    stored = b" ".join(v for pair in store.hgetall(key).items() for v in pair)
    latest_code = one_time_code(stack, "dee@example.com")
    assert b"dee" not in stored.lower()
    assert latest_code.encode() not in stored


def test_voided_code_page_says_voided(campaign: Campaign) -> None:
    """A voided code's link shows it as voided and cannot be claimed (no code is sent)."""
    campaign.merchant.post("/v1/codes/void", {"codes": [campaign.codes[7]]})
    with _client(campaign.stack) as browser:
        page = browser.get(campaign.links[7])
        assert "Voided by the issuer" in page.text
        refused = browser.post(f"{campaign.links[7]}/claim", data={"identifier": "ed@example.com"})
        state = browser.get(f"{campaign.links[7]}/state").json()
    assert refused.status_code == 409
    assert state == {"state": "voided"}
    assert not fetch(
        campaign.stack, "SELECT 1 FROM consumer_messages WHERE recipient = 'ed@example.com'"
    )


def test_bad_identifier_and_bad_link(campaign: Campaign) -> None:
    """A malformed phone/email is a 400 page; a forged link is 404 and says nothing more."""
    with _client(campaign.stack) as browser:
        for bad in ("call me", "+86 12", "ana@", "ana@@example.com"):
            answer = browser.post(f"{campaign.links[8]}/claim", data={"identifier": bad})
            assert answer.status_code == 400, bad
        forged = campaign.links[8][:-3] + (
            "AAA" if not campaign.links[8].endswith("AAA") else "BBB"
        )
        assert browser.get(forged).status_code == 404


def test_claims_settle_with_only_a_keyed_hash(campaign: Campaign) -> None:
    """The claim reaches PostgreSQL with a keyed hash, never the email; stats count it."""
    with _client(campaign.stack) as browser:
        claim_with_code(
            campaign.stack, browser, campaign.links[9], "fi@example.com", "fi@example.com"
        )

    def stored() -> list[str]:
        rows = fetch(
            campaign.stack, "SELECT consumer_hash FROM claims WHERE campaign_id = $1", campaign.id
        )
        return [row["consumer_hash"] for row in rows]

    eventually(lambda: len(stored()) >= 4, within=10)
    hashes = stored()
    assert all(re.fullmatch(r"\d+:[0-9a-f]{32}", value) for value in hashes)
    assert not any("example" in value for value in hashes)
    stats = campaign.merchant.get(f"/v1/campaigns/{campaign.id}/stats").json()
    assert stats["claimed"] >= 4


def test_used_code_cannot_be_claimed(campaign: Campaign) -> None:
    """A code redeemed at the till before anyone claimed it answers 409 and shows as used."""
    assert redeem(campaign.stack, campaign.token, campaign.codes[10]).status_code == 200
    with _client(campaign.stack) as browser:
        refused = browser.post(f"{campaign.links[10]}/claim", data={"identifier": "gu@example.com"})
        page = browser.get(campaign.links[10])
    assert refused.status_code == 409
    assert "Used" in page.text
    assert 'name="identifier"' not in page.text


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_consumer_pages_forbid_framing_referrers_caching_and_foreign_scripts(
    campaign: Campaign,
) -> None:
    """Every consumer page (offer, code form, claimed code, pool) sends a CSP that allows no
    source but our own hashed inline style and script and no framing, no Referer (the claim
    token is in the URL) and no caching; the hashes match the blocks the page carries."""
    stack, link = campaign.stack, campaign.links[11]
    pool = campaign.pool(1)
    with _client(stack) as browser:
        pages = [browser.get(link)]
        browser.post(f"{link}/claim", data={"identifier": "hal@example.com"})
        pages.append(browser.get(link))
        pages.append(browser.post(f"{link}/verify", data={"code": "000000x"}))
        browser.post(f"{link}/verify", data={"code": one_time_code(stack, "hal@example.com")})
        pages.append(browser.get(link))
        pages.append(browser.get(pool))
    assert "<svg" in pages[3].text
    for page in pages:
        policy = page.headers["content-security-policy"]
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
        assert directives["default-src"] == "'none'"
        assert directives["frame-ancestors"] == "'none'"
        assert "unsafe-inline" not in policy
        style = re.search(r"<style>(.*?)</style>", page.text, re.DOTALL)
        assert style is not None
        assert directives["style-src"] == _csp_hash(style.group(1))
        assert directives["script-src"] == _csp_hash(STATE_SCRIPT)
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["cache-control"] == "no-store"
    scripts = re.findall(r"<script>(.*?)</script>", pages[3].text, re.DOTALL)
    assert scripts == [STATE_SCRIPT]


def test_identifier_variants_are_one_person_for_pool_caps(stack: Stack) -> None:
    """Attack: the seven spellings of one email and one phone that each took a new code in
    review (`victim+1@…`, `VICTIM+3@…`, `+8613800000000`, `8613800000000`, `008613800000000`,
    `+86 138-0000-0000`, …) are two people, each capped at one code."""
    shop = Campaign(stack, quantity=10)
    path = shop.pool(1, verification="none")
    variants = [
        "victim+1@example.com",
        "VICTIM+3@Example.com",
        "victim@example.com",
        "+8613800000000",
        "8613800000000",
        "008613800000000",
        "+86 138-0000-0000",
    ]
    with _client(stack) as browser:
        answers = [browser.post(f"{path}/claim", data={"identifier": v}) for v in variants]
    assert [a.status_code for a in answers] == [303, 409, 409, 303, 409, 409, 409]


def test_pool_rush_gives_no_code_twice_and_never_overshoots(stack: Stack) -> None:
    """500 concurrent claims by 250 people (each trying twice) on a pool of 200 codes without
    verification, 1 each: exactly 200 codes go out, each to one person, nobody gets two, the
    rest hear 'all gone' or 'you have one'."""
    shop = Campaign(stack, quantity=200)
    path = shop.pool(1, verification="none")

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
    pool_id = path.rsplit("/", 1)[1]
    assert shop.merchant.get(f"/v1/pools/{pool_id}").json()["handed_out"] == 200


def test_pool_is_the_merchants_own(stack: Stack, campaign: Campaign) -> None:
    """Another merchant can neither read a pool nor open one on someone else's order."""
    pool = campaign.merchant.created(
        f"/v1/campaigns/{campaign.id}/pools", {"order_id": campaign.order["id"], "per_consumer": 2}
    )
    stranger: Merchant = stack.new_merchant("Stranger")
    assert stranger.get(f"/v1/pools/{pool['id']}").status_code == 404
    opened = stranger.post(f"/v1/campaigns/{campaign.id}/pools", {"order_id": campaign.order["id"]})
    assert opened.status_code == 404


def test_new_pools_verify_and_cap_verified_people(stack: Stack) -> None:
    """A pool made without saying otherwise asks for a one-time code before handing out a
    code (an unknown `verification` is a 400); a verified person takes at most K = 2, however
    they spell their phone; a code typed with no challenge in the browser is refused."""
    shop = Campaign(stack, quantity=5)
    created = shop.merchant.created(
        f"/v1/campaigns/{shop.id}/pools", {"order_id": shop.order["id"], "per_consumer": 2}
    )
    assert created["verification"] == "otp"
    unknown = shop.merchant.post(
        f"/v1/campaigns/{shop.id}/pools", {"order_id": shop.order["id"], "verification": "sms"}
    )
    assert unknown.status_code == 400
    assert unknown.json()["reason"] == "bad_request"
    path = created["url"].removeprefix(stack.base_url)
    taken = []
    with _client(stack) as browser:
        for spelling in ("+8613800000077", "8613800000077", "+86 138 0000 0077"):
            asked = browser.post(f"{path}/claim", data={"identifier": spelling})
            assert asked.status_code == 303
            assert asked.headers["location"] == path
            assert 'name="code"' in browser.get(path).text
            code = one_time_code(stack, "+8613800000077")
            taken.append(browser.post(f"{path}/verify", data={"code": code}))
    assert [r.status_code for r in taken] == [303, 303, 409]
    assert len({r.headers["location"] for r in taken[:2]}) == 2
    with _client(stack) as stranger:
        wrong = stranger.post(f"{path}/verify", data={"code": "123456"})
        assert wrong.status_code == 400


def test_pool_limit_page_sends_the_links_instead_of_listing_them(stack: Stack) -> None:
    """Attack: today's 'you already have N' page listed the links to anyone typing the
    person's identifier. Now it lists none and offers to send them: the links go, through the
    outbox, only to the identifier, in the browser's language; asking for an identifier that
    holds nothing gets the same answer and sends nothing."""
    shop = Campaign(stack, quantity=5)
    path = shop.pool(2, verification="none")
    with _client(stack) as owner:
        held = [owner.post(f"{path}/claim", data={"identifier": "ivy@example.com"}) for _ in "ab"]
    links = {r.headers["location"] for r in held}
    with _client(stack) as stranger:
        limit = stranger.post(f"{path}/claim", data={"identifier": "Ivy+x@example.com"})
        assert limit.status_code == 409
        assert "You already have 2" in limit.text
        assert "/c/" not in limit.text
        headers = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}
        sent = stranger.post(
            f"{path}/links", data={"identifier": "ivy+x@example.com"}, headers=headers
        )
        nobody = stranger.post(f"{path}/links", data={"identifier": "joe@example.com"})
    assert sent.status_code == nobody.status_code == 200
    assert "/c/" not in sent.text
    messages = fetch(
        stack,
        "SELECT recipient, language, body FROM consumer_messages WHERE kind = 'links'"
        " AND recipient IN ('ivy+x@example.com', 'joe@example.com')",
    )
    assert [(m["recipient"], m["language"]) for m in messages] == [("ivy+x@example.com", "zh-CN")]
    assert {link for link in links if stack.base_url + link in messages[0]["body"]} == links
    assert "券码" in messages[0]["body"]


def test_pool_skips_voided_and_claimed_codes_without_charging_the_quota(stack: Stack) -> None:
    """A pool never hands out a voided code or one already claimed through its own link:
    they are skipped atomically, the person still gets their K = 2 good codes, and a person
    who finds only bad codes left is told the pool is empty and keeps their place."""
    shop = Campaign(stack, quantity=6)
    shop.merchant.post("/v1/codes/void", {"codes": [shop.codes[0], shop.codes[2], shop.codes[5]]})
    with _client(stack) as other:
        claim_with_code(stack, other, shop.links[1], "kim@example.com", "kim@example.com")
    path = shop.pool(2, verification="none")
    with _client(stack) as browser:
        lee = [browser.post(f"{path}/claim", data={"identifier": "lee@example.com"}) for _ in "ab"]
        late = browser.post(f"{path}/claim", data={"identifier": "max@example.com"})
    assert [r.status_code for r in lee] == [303, 303]
    assert [r.headers["location"] for r in lee] == [shop.links[3], shop.links[4]]
    assert late.status_code == 409
    assert "All gone" in late.text
    pool_id = path.rsplit("/", 1)[1]
    held = redis.Redis.from_url(stack.stores.redis_url).hgetall(f"qr:{{pool:{pool_id}}}:taken")
    assert sorted(held.values()) == [b"3,4"]


def test_messages_leave_through_the_development_sender_and_outbox_tail(
    campaign: Campaign,
) -> None:
    """A one-time code asked in Chinese is queued in zh-CN, delivered by the development
    sender (kept for the developer), and `qrloop outbox tail` prints recipient and body."""
    stack, link = campaign.stack, campaign.links[12]
    with _client(stack) as browser:
        browser.post(
            f"{link}/claim",
            data={"identifier": "oz@example.com"},
            headers={"Accept-Language": "zh-TW,en;q=0.5"},
        )

    def delivered() -> bool:
        rows = fetch(
            stack,
            "SELECT status, delivered_by FROM consumer_messages WHERE recipient = 'oz@example.com'",
        )
        return [tuple(row) for row in rows] == [("sent", "DevSender")]

    eventually(delivered, within=10)
    code = one_time_code(stack, "oz@example.com")
    tail = stack.cli("outbox", "tail", "-n", "1").stdout
    assert tail.startswith("oz@example.com  ")
    assert f"验证码是 {code}" in tail


def test_caps_and_claims_survive_a_rotation_of_the_consumer_key(
    stores: Stores, tmp_path: Path
) -> None:
    """Attack: places in a pool were counted under the newest consumer key's hash only, so
    `qrloop keys rotate --purpose consumer` gave everyone a fresh quota. After a rotation a
    person holding 1 of K = 2 gets one more and then the limit, and a code claimed before the
    rotation still comes back to its owner on a new device with a one-time code."""
    with serving(stores, tmp_path / "serve") as stack:
        shop = Campaign(stack, quantity=4)
        path = shop.pool(2, verification="none")
        with _client(stack) as browser:
            before = browser.post(f"{path}/claim", data={"identifier": "pat@example.com"})
            assert before.status_code == 303
        with _client(stack) as owner:
            claim_with_code(stack, owner, shop.links[3], "quinn@example.com", "quinn@example.com")
        rotated = stack.cli("keys", "rotate", "--purpose", "consumer", "--algorithm", "hmac-sha256")
        new_key = re.match(r"key (\d+):", rotated.stdout)
        assert new_key is not None
        store = redis.Redis.from_url(stack.stores.redis_url)
        probes = iter(range(1000))

        def api_uses_the_new_key() -> bool:
            """A one-time code asked now is counted under the new key's hash."""
            with _client(stack) as probe:
                probe.post(
                    f"{shop.links[2]}/claim",
                    data={"identifier": f"probe{next(probes)}@example.com"},
                )
            return bool(store.keys(f"qr:otp:sends:{new_key.group(1)}:*"))

        eventually(api_uses_the_new_key, within=15)
        with _client(stack) as browser:
            after = [
                browser.post(f"{path}/claim", data={"identifier": "Pat@example.com"}) for _ in "ab"
            ]
        assert [r.status_code for r in after] == [303, 409]
        assert "You already have 2" in after[1].text
        with _client(stack) as laptop:
            again = claim_with_code(
                stack, laptop, shop.links[3], "quinn@example.com", "quinn@example.com"
            )
            assert again.status_code == 303
            assert _shows_code(laptop.get(shop.links[3]), shop.codes[3])


# Caps on sends: a stranger must not make qrloop send thousands of messages (SMS pumping).
# The capped stack trusts 127.0.0.1 as a proxy, so each test plays clients of its own address.


@pytest.fixture(scope="module")
def capped(stores: Stores, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack with low caps on sends, behind a trusted proxy at 127.0.0.1."""
    with serving(
        stores,
        tmp_path_factory.mktemp("capped"),
        QRLOOP_OTP_SENDS_PER_LINK_HOUR="3",
        QRLOOP_OTP_SENDS_PER_IP_HOUR="5",
        QRLOOP_OTP_SENDS_PER_POOL_HOUR="4",
        QRLOOP_OTP_SENDS_PER_POOL_CODE_HOUR="0",
        QRLOOP_TRUSTED_PROXIES="127.0.0.1/32, ::1/128",
    ) as running:
        yield running


def _ask(stack: Stack, path: str, identifier: str, client: str, **headers: str) -> httpx.Response:
    """One visitor, at `client` (behind the trusted proxy), asking for a code on `path`."""
    with _client(stack) as browser:
        return browser.post(
            path, data={"identifier": identifier}, headers={"X-Forwarded-For": client, **headers}
        )


def _otps_to(stack: Stack, recipients: list[str]) -> int:
    return int(
        fetchval(
            stack,
            "SELECT count(*) FROM consumer_messages WHERE kind = 'otp' AND recipient = ANY($1)",
            recipients,
        )
    )


def test_sms_pumping_on_one_claim_link_is_capped(capped: Stack) -> None:
    """Attack: SMS pumping. A stranger types many different phone numbers on one claim link
    (each a new person, so the per-person cap never bites) to make the merchant pay for SMS.
    Only 3 (the link's cap) are queued; the rest get 429 with a localised message, and
    nothing is queued for them."""
    link = Campaign(capped, quantity=1).links[0]
    phones = [f"+8613900000{n:03d}" for n in range(8)]
    answers = [_ask(capped, f"{link}/claim", phone, "198.51.100.1") for phone in phones[:7]]
    chinese = _ask(
        capped, f"{link}/claim", phones[7], "198.51.100.1", **{"Accept-Language": "zh-CN"}
    )
    assert [a.status_code for a in answers] == [303] * 3 + [429] * 4
    assert "Too many codes were asked for on this link" in answers[-1].text
    assert chinese.status_code == 429
    assert "这个链接在一小时内请求的验证码过多" in chinese.text
    assert _otps_to(capped, phones) == 3


def test_a_rush_of_sends_on_one_link_never_overshoots_its_cap(capped: Stack) -> None:
    """Attack: 40 different numbers sent at once on one claim link from 40 addresses, racing
    to slip between a check of the cap and its count. Exactly 3 codes are queued; every other
    answer is 429."""
    link = Campaign(capped, quantity=1).links[0]
    phones = [f"+8613600000{n:03d}" for n in range(40)]

    async def rush() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=capped.base_url, timeout=120) as c:
            return await asyncio.gather(
                *(
                    c.post(
                        f"{link}/claim",
                        data={"identifier": phone},
                        headers={"X-Forwarded-For": f"198.51.100.{100 + n}"},
                    )
                    for n, phone in enumerate(phones)
                )
            )

    statuses = Counter(r.status_code for r in asyncio.run(rush()))
    assert statuses == {303: 3, 429: 37}
    assert _otps_to(capped, phones) == 3


def test_one_address_is_capped_across_links_and_refusals_use_up_nothing(capped: Stack) -> None:
    """Attack: SMS pumping spread over many claim links from one address. The address gets 5
    sends an hour across all links (attempts the link's cap refused do not count), then 429
    naming the network; another address is not held back."""
    links = Campaign(capped, quantity=3).links
    emails = [f"pump{n}@example.com" for n in range(8)]
    first = [_ask(capped, f"{links[0]}/claim", email, "198.51.100.2") for email in emails[:5]]
    second = [_ask(capped, f"{links[1]}/claim", email, "198.51.100.2") for email in emails[5:]]
    elsewhere = _ask(capped, f"{links[2]}/claim", "other@example.com", "198.51.100.3")
    assert [a.status_code for a in first] == [303] * 3 + [429] * 2  # the link's cap
    assert [a.status_code for a in second] == [303] * 2 + [429]  # the address's cap
    assert "from your network" in second[-1].text
    assert elsewhere.status_code == 303
    assert _otps_to(capped, emails) == 5


def test_one_ipv6_network_is_one_address(capped: Stack) -> None:
    """Attack: rotating through the addresses of one IPv6 /64 (2^64 of them, one subscriber's)
    to escape the per-address cap. The /64 is one address for the cap."""
    links = Campaign(capped, quantity=2).links
    answers = [
        _ask(capped, f"{links[n // 3]}/claim", f"six{n}@example.com", f"2001:db8:6::{n + 1}")
        for n in range(6)
    ]
    assert [a.status_code for a in answers] == [303] * 5 + [429]


def test_sends_on_one_pool_are_capped_from_any_address(capped: Stack) -> None:
    """Attack: SMS pumping on a pool page from many addresses (a botnet), by one-time codes
    and by "send me my links". The pool's cap (4 here) holds across addresses and both
    forms; what it refuses is 429 and queues nothing."""
    path = Campaign(capped, quantity=1).pool(per_consumer=1)
    phones = [f"+8613700000{n:03d}" for n in range(6)]
    answers = [_ask(capped, f"{path}/claim", p, f"203.0.113.{n}") for n, p in enumerate(phones)]
    links = _ask(capped, f"{path}/links", "held@example.com", "203.0.113.99")
    assert [a.status_code for a in answers] == [303] * 4 + [429] * 2
    assert "Too many codes were asked for on this offer" in answers[-1].text
    assert links.status_code == 429
    assert _otps_to(capped, phones) == 4


def test_forwarded_for_counts_only_the_hop_the_trusted_proxy_saw(capped: Stack) -> None:
    """Attack: writing a fresh address in X-Forwarded-For on every request, behind a trusted
    proxy that appends the real one. Only the hop the proxy appended is read; the forged ones
    before it change nothing."""
    links = Campaign(capped, quantity=2).links
    answers = [
        _ask(capped, f"{links[n // 3]}/claim", f"hop{n}@example.com", f"10.9.9.{n}, 198.51.100.7")
        for n in range(6)
    ]
    assert [a.status_code for a in answers] == [303] * 5 + [429]


def test_forwarded_for_is_ignored_from_an_untrusted_peer(stores: Stores, tmp_path: Path) -> None:
    """Attack: a client connecting directly forges X-Forwarded-For, a new address each time,
    to reset the per-address cap. Without QRLOOP_TRUSTED_PROXIES the header is never read:
    the peer (127.0.0.1) is capped at 3."""
    with serving(stores, tmp_path / "serve", QRLOOP_OTP_SENDS_PER_IP_HOUR="3") as stack:
        links = Campaign(stack, quantity=2).links
        answers = [
            _ask(stack, f"{links[n // 2]}/claim", f"fake{n}@example.com", f"192.0.2.{n}")
            for n in range(4)
        ]
    assert [a.status_code for a in answers] == [303] * 3 + [429]
