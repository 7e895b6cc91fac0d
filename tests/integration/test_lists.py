"""Lists and reads of a merchant's objects: cursor pages newest first, stable while rows are
added, filters, and nothing of another merchant's."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from support import Merchant, Stack, eventually, reason

# A public address, so the endpoint is accepted; nothing here ever triggers a delivery to it.
HOOK_URL = "https://8.8.8.8/qrloop-hook"


@dataclass(frozen=True)
class Shop:
    """A merchant that made two or more of everything a merchant can list."""

    merchant: Merchant
    stores: list[int]
    terminals: list[int]
    campaigns: list[int]
    orders: list[int]  # all of `campaigns[0]`
    pools: list[str]
    webhooks: list[int]
    api_keys: list[int]


def _made(merchant: Merchant) -> Shop:
    stores = [merchant.created("/v1/stores", {"name": f"Store {i}"})["id"] for i in range(3)]
    terminals = [
        merchant.created("/v1/terminals", {"store_id": stores[i % 2], "name": f"Till {i}"})["id"]
        for i in range(3)
    ]
    campaigns = [merchant.campaign(name=f"Campaign {i}") for i in range(3)]
    orders = [merchant.order(campaigns[0], 2)["id"] for _ in range(3)]
    pools = [
        merchant.created(f"/v1/campaigns/{campaigns[0]}/pools", {"order_id": order_id})["id"]
        for order_id in orders
    ]
    webhooks = [merchant.created("/v1/webhooks", {"url": HOOK_URL})["id"] for _ in range(3)]
    api_keys = [merchant.created("/v1/api-keys", {"label": f"key {i}"})["id"] for i in range(2)]
    initial = merchant.get("/v1/api-keys", limit="1000").json()["items"][-1]["id"]
    return Shop(
        merchant, stores, terminals, campaigns, orders, pools, webhooks, [initial, *api_keys]
    )


@pytest.fixture(scope="module")
def shop(stack: Stack) -> Shop:
    return _made(stack.new_merchant("Lister"))


@pytest.fixture(scope="module")
def stranger(stack: Stack) -> Merchant:
    """A second merchant with one of everything of its own (so its lists are not empty merely
    for having nothing)."""
    merchant = stack.new_merchant("Stranger")
    store_id = merchant.created("/v1/stores", {"name": "Stranger's"})["id"]
    merchant.created("/v1/terminals", {"store_id": store_id, "name": "Stranger's till"})
    campaign_id = merchant.campaign(name="Stranger's campaign")
    order_id = merchant.order(campaign_id, 1)["id"]
    merchant.created(f"/v1/campaigns/{campaign_id}/pools", {"order_id": order_id})
    merchant.created("/v1/webhooks", {"url": HOOK_URL})
    return merchant


def _lists(shop: Shop) -> dict[str, tuple[str, list[Any]]]:
    """Each list by name: its path and the ids it should hold, oldest first."""
    return {
        "stores": ("/v1/stores", shop.stores),
        "terminals": ("/v1/terminals", shop.terminals),
        "campaigns": ("/v1/campaigns", shop.campaigns),
        "orders": ("/v1/orders", shop.orders),
        "campaign orders": (f"/v1/campaigns/{shop.campaigns[0]}/orders", shop.orders),
        "pools": ("/v1/pools", shop.pools),
        "webhooks": ("/v1/webhooks", shop.webhooks),
        "api keys": ("/v1/api-keys", shop.api_keys),
    }


LISTS = [
    "stores",
    "terminals",
    "campaigns",
    "orders",
    "campaign orders",
    "pools",
    "webhooks",
    "api keys",
]
# Lists the other merchant can ask for (a campaign's orders is a 404 to it: tested below).
ITS_OWN_LISTS = [name for name in LISTS if name != "campaign orders"]


def _page(merchant: Merchant, path: str, **params: str) -> dict[str, Any]:
    response = merchant.get(path, **params)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    assert page.keys() == {"items", "next_cursor"}
    return page


def _all_pages(merchant: Merchant, path: str, limit: int, **params: str) -> list[Any]:
    """Every item's id, following `next_cursor` page by page."""
    ids: list[Any] = []
    cursor: str | None = None
    while True:
        extra = {"cursor": cursor} if cursor else {}
        page = _page(merchant, path, limit=str(limit), **params, **extra)
        assert len(page["items"]) <= limit
        ids += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids
        assert page["items"], "a page with a next cursor holds items"


@pytest.mark.parametrize("name", LISTS)
def test_a_list_pages_through_every_object_newest_first(shop: Shop, name: str) -> None:
    """Two at a time, the pages hold each of the merchant's objects once, newest first, and
    the last page says there is no next one; one page of 1000 holds them all."""
    path, made = _lists(shop)[name]
    assert _all_pages(shop.merchant, path, limit=2) == made[::-1]
    whole = _page(shop.merchant, path, limit="1000")
    assert [item["id"] for item in whole["items"]] == made[::-1]
    assert whole["next_cursor"] is None


@pytest.mark.parametrize("name", ITS_OWN_LISTS)
def test_another_merchant_lists_none_of_it(shop: Shop, stranger: Merchant, name: str) -> None:
    """Cross-tenant listing: the stranger's list, page by page, holds none of the merchant's
    objects (and the merchant's holds none of the stranger's)."""
    path, mine = _lists(shop)[name]
    theirs = _all_pages(stranger, path, limit=1)
    assert theirs, "the stranger has something of its own in every list"
    assert not set(mine) & set(theirs)
    assert not set(theirs) & set(_all_pages(shop.merchant, path, limit=1000))


def test_another_merchants_campaign_has_no_orders_to_list(shop: Shop, stranger: Merchant) -> None:
    """A campaign's orders: another merchant's campaign id is 404, as for one that does not
    exist; as a filter of /v1/orders (and a store of /v1/terminals) it lists nothing."""
    response = stranger.get(f"/v1/campaigns/{shop.campaigns[0]}/orders")
    assert (response.status_code, reason(response)) == (404, "not_found")
    nobody = stranger.get("/v1/campaigns/999999999/orders")
    assert (nobody.status_code, reason(nobody)) == (404, "not_found")
    assert nobody.json()["detail"] == response.json()["detail"].replace(
        str(shop.campaigns[0]), "999999999"
    )
    assert _page(stranger, "/v1/orders", campaign_id=str(shop.campaigns[0]))["items"] == []
    assert _page(stranger, "/v1/terminals", store_id=str(shop.stores[0]))["items"] == []


@pytest.mark.parametrize(
    "kind", ["stores", "terminals", "orders", "pools", "campaigns", "webhooks"]
)
def test_another_merchant_cannot_read_one(shop: Shop, stranger: Merchant, kind: str) -> None:
    """Reading one of the merchant's objects by id, as another merchant, is 404 not_found (not
    403: that would say the id exists); the owner reads it."""
    object_id = getattr(shop, kind)[0]
    path = f"/v1/{kind}/{object_id}"
    response = stranger.get(path)
    assert (response.status_code, reason(response)) == (404, "not_found")
    owned = shop.merchant.get(path)
    assert owned.status_code == 200, owned.text
    assert owned.json()["id"] == object_id


def test_reads_show_what_was_made_and_never_a_secret(shop: Shop) -> None:
    """A store and a terminal read back as created (enabled, with a creation time); a
    terminal, read or listed, never shows its secret; an order shows its progress."""
    merchant = shop.merchant
    store = merchant.get(f"/v1/stores/{shop.stores[0]}").json()
    assert store.keys() == {"id", "name", "disabled", "created_at"}
    assert (store["name"], store["disabled"]) == ("Store 0", False)
    made = merchant.created("/v1/terminals", {"store_id": shop.stores[2], "name": "Quiet till"})
    read = merchant.get(f"/v1/terminals/{made['id']}")
    listed = merchant.get("/v1/terminals", store_id=str(shop.stores[2]))
    for answer in (read, listed):
        assert made["secret"] not in answer.text
        assert "secret" not in answer.text
    assert read.json() == {key: value for key, value in made.items() if key != "secret"}
    assert [item["id"] for item in listed.json()["items"]] == [made["id"]]
    order = merchant.get("/v1/orders", limit="1").json()["items"][0]
    assert {"id", "campaign_id", "status", "quantity", "done"} <= order.keys()
    assert (order["status"], order["done"], order["quantity"]) == ("done", 2, 2)


def test_disabled_objects_are_listed_as_disabled(stack: Stack) -> None:
    """Disabling a store or a terminal shows in its read and in the list."""
    merchant = stack.new_merchant("Switcher")
    store_id = merchant.created("/v1/stores", {"name": "Closing"})["id"]
    terminal_id = merchant.created("/v1/terminals", {"store_id": store_id, "name": "t"})["id"]
    merchant.created(f"/v1/stores/{store_id}/disable", {})
    merchant.created(f"/v1/terminals/{terminal_id}/disable", {})
    assert merchant.get(f"/v1/stores/{store_id}").json()["disabled"] is True
    assert _page(merchant, "/v1/terminals")["items"][0]["disabled"] is True


class Adding(threading.Thread):
    """Another user of the account, creating objects one after another until stopped."""

    def __init__(self, merchant: Merchant, path: str) -> None:
        super().__init__(daemon=True)
        self.merchant, self.path = merchant, path
        self.body = {"face_value": 1, "currency": "CNY"} if "campaigns" in path else {}
        self.added: list[Any] = []
        self.stopping = threading.Event()

    def add(self, name: str) -> Any:
        return self.merchant.created(self.path, {**self.body, "name": name})["id"]

    def two_more(self) -> None:
        """Wait until two more objects have been created."""
        count = len(self.added) + 2
        eventually(lambda: len(self.added) >= count, within=30)

    def run(self) -> None:
        while not self.stopping.is_set() and len(self.added) < 500:
            self.added.append(self.add(f"during {len(self.added)}"))


@pytest.mark.parametrize("path", ["/v1/stores", "/v1/campaigns"])
def test_pages_stay_stable_while_rows_are_added(stack: Stack, path: str) -> None:
    """Attack on offsets: while a client pages two at a time, another creates objects
    concurrently (at least two between any two pages). The pages together hold every object
    that existed when the first page was read, exactly once and in order, and none made later.
    Afterwards the list holds all of them once."""
    merchant = stack.new_merchant("Busy")
    adding = Adding(merchant, path)
    before = [adding.add(f"before {i}") for i in range(7)]
    seen: list[Any] = []
    cursor: str | None = None
    adding.start()
    try:
        while True:
            page = _page(merchant, path, limit="2", **({"cursor": cursor} if cursor else {}))
            seen += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
            adding.two_more()
    finally:
        adding.stopping.set()
        adding.join(timeout=30)
    assert seen == sorted(set(seen), reverse=True), "each once, newest first"
    assert set(before) <= set(seen)
    # New objects on the pages: only those the first page was read after (the first few made),
    # none made later.
    new = set(seen) - set(before)
    assert new == set(adding.added[: len(new)])
    assert len(adding.added) >= 6
    everything = _all_pages(merchant, path, limit=1000)
    assert everything == sorted(before + adding.added, reverse=True)


def test_campaigns_filter_by_status_and_name(stack: Stack) -> None:
    """status=active|paused|ended: ended once valid_until has passed, paused or not; paused
    while paused and not ended; active otherwise (also before valid_from). q finds a part of
    the name in any case, and % and _ in q match only themselves."""
    merchant = stack.new_merchant("Filters")
    now = datetime.now(UTC)
    past = {"valid_from": (now - timedelta(days=2)).isoformat()}
    past["valid_until"] = (now - timedelta(days=1)).isoformat()
    future = {"valid_from": (now + timedelta(days=1)).isoformat()}
    active = merchant.campaign(name="Summer Cone")
    scheduled = merchant.campaign(name="Winter_cone", **future)
    paused = merchant.campaign(name="100% off")
    ended = merchant.campaign(name="Old cone", **past)
    ended_paused = merchant.campaign(name="Older", **past)
    for campaign_id in (paused, ended_paused):
        merchant.created(f"/v1/campaigns/{campaign_id}/pause", {})

    def listed(**params: str) -> list[int]:
        return _all_pages(merchant, "/v1/campaigns", limit=1, **params)

    assert listed(status="active") == [scheduled, active]
    assert listed(status="paused") == [paused]
    assert listed(status="ended") == [ended_paused, ended]
    statuses = {c["id"]: c["status"] for c in _page(merchant, "/v1/campaigns")["items"]}
    assert statuses == {
        active: "active",
        scheduled: "active",
        paused: "paused",
        ended: "ended",
        ended_paused: "ended",
    }
    assert merchant.get(f"/v1/campaigns/{ended_paused}").json()["status"] == "ended"
    assert listed(q="CONE") == [ended, scheduled, active]
    assert listed(q="cone", status="ended") == [ended]
    assert listed(q="%") == [paused]  # a wildcard % would match every name
    assert listed(q="r_c") == [scheduled]  # a wildcard _ would match "Summer Cone" too
    assert listed(q="nothing like it") == []


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "many"},
        {"cursor": "not a cursor"},
        {"cursor": "WyJzZXZlbnRlZW4iXQ"},  # ["seventeen"]: a key of the wrong type
        {"status": "expired"},
        {"q": "a\x00b"},
        {"campaign_id": str(2**63)},
    ],
)
def test_bad_paging_or_filters_are_bad_requests(shop: Shop, params: dict[str, str]) -> None:
    """An out-of-range limit, a cursor no list gave out, an unknown status, a name part with
    NUL or an id filter beyond bigint: 400 bad_request as problem+json, never a 500."""
    path = "/v1/orders" if "campaign_id" in params else "/v1/campaigns"
    response = shop.merchant.get(path, **params)
    assert (response.status_code, reason(response)) == (400, "bad_request")
