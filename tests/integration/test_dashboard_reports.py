"""The dashboard's report and account pages (redemptions, settlements, webhooks, agreements,
stores and terminals) as people use them over HTTP: each page shows its own merchant's data
only, each role sees and does what it may and no more, and no form works without the
session's CSRF token."""

from __future__ import annotations

import csv
import io
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any

import httpx
import pytest

from dashboard_support import Person, member, owner_of
from qrloop.claim.pages import money
from qrloop.dashboard.redemption_pages import PAGE_SIZE
from support import Merchant, Stack, Stores, eventually, redeem, serving

# A delivery is given up after this (7.2 s), so a test sees one fail quickly.
RETRY_HOURS = 0.002


@pytest.fixture(scope="module")
def reports_stack(stores: Stores, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack whose webhooks may post to 127.0.0.1 and give up within seconds."""
    with serving(
        stores,
        tmp_path_factory.mktemp("dashboard-reports"),
        QRLOOP_WEBHOOK_PRIVATE_NETWORKS="true",
        QRLOOP_WEBHOOK_FIRST_RETRY_SECONDS="0.3",
        QRLOOP_WEBHOOK_RETRY_HOURS=str(RETRY_HOURS),
    ) as running:
        yield running


@dataclass
class Shop:
    """A merchant with a store, a till, a campaign, three codes redeemed, and its people."""

    merchant: Merchant
    store_id: int
    terminal_id: int
    campaign_id: int
    owner: Person
    manager: Person
    viewer: Person


def _shop(stack: Stack, name: str) -> Shop:
    merchant = stack.new_merchant(name)
    store_id = merchant.created("/v1/stores", {"name": f"{name} <b>Flagship</b>"})["id"]
    terminal_id, token = merchant.terminal(store_id, "Till 1")
    campaign_id = merchant.campaign(name=f"{name} cone")
    for code in merchant.codes(campaign_id, 3):
        assert redeem(stack, token, code).status_code == 200
    owner = owner_of(merchant)
    owner.get("/dashboard/users")  # a page of the session: its CSRF token
    suffix = re.sub(r"\W", "", name).lower()
    manager = member(owner, stack, f"manager-{suffix}@example.com", "manager")
    viewer = member(owner, stack, f"viewer-{suffix}@example.com", "viewer")
    return Shop(merchant, store_id, terminal_id, campaign_id, owner, manager, viewer)


@pytest.fixture(scope="module")
def shops(reports_stack: Stack) -> tuple[Shop, Shop]:
    """Two merchants, each with its redemptions settled."""
    first, second = _shop(reports_stack, "Cone & Co"), _shop(reports_stack, "Bun Bros")
    for shop in (first, second):
        eventually(lambda shop=shop: _settled(shop) == 3, within=30)  # type: ignore[misc]
    return first, second


def _settled(shop: Shop) -> int:
    return len(shop.merchant.get("/v1/redemptions").json()["items"])


def _rows(html: str, table: str) -> list[str]:
    """The text of each body row of the table with this id."""
    found = re.search(rf'<table class="list" id="{table}">.*?<tbody>(.*?)</tbody>', html, re.S)
    if found is None:
        return []
    return [
        unescape(re.sub(r"<[^>]+>|\s+", " ", row)).strip()
        for row in re.findall(r"<tr.*?</tr>", found.group(1), re.S)
    ]


def _bars(html: str, chart: str) -> list[int]:
    """The values of the bars of the chart with this id."""
    found = re.search(rf'<svg[^>]* id="{chart}".*?</svg>', html, re.S)
    assert found is not None, chart
    return [int(value) for value in re.findall(r'class="bar"[^>]*data-value="(\d+)"', found[0])]


# --------------------------------------------------------------------------- redemptions


def test_the_redemptions_page_shows_the_merchants_own_rows_and_charts(
    shops: tuple[Shop, Shop],
) -> None:
    """A viewer sees its merchant's three redemptions in the table, three in the hourly chart
    and three at its store in the store chart; nothing of the other merchant."""
    mine, _ = shops
    page = mine.viewer.get("/dashboard/redemptions")
    assert page.status_code == 200, page.text
    rows = _rows(page.text, "redemptions")
    assert len(rows) == 3
    assert all("Cone & Co cone" in row and "Cone & Co <b>Flagship</b>" in row for row in rows)
    assert "Bun Bros" not in page.text
    assert sum(_bars(page.text, "by-time")) == 3
    assert _bars(page.text, "by-store") == [3]
    # A store's name is text, never markup, in the table and in the chart.
    assert "<b>Flagship</b>" not in page.text
    assert page.headers["cache-control"] == "no-store"


def test_another_merchants_ids_in_the_filters_select_nothing(shops: tuple[Shop, Shop]) -> None:
    """Filtering by the other merchant's campaign, store or terminal shows no row, no bar and
    an empty CSV: the ids are only filters within the merchant's own redemptions."""
    mine, other = shops
    for name, value in (
        ("campaign", other.campaign_id),
        ("store", other.store_id),
        ("terminal", other.terminal_id),
    ):
        page = mine.viewer.get("/dashboard/redemptions", **{name: value})
        assert page.status_code == 200, page.text
        assert _rows(page.text, "redemptions") == [], name
        assert sum(_bars(page.text, "by-time")) == 0
        assert _bars(page.text, "by-store") == []
        download = mine.viewer.get("/dashboard/redemptions/csv", **{name: value})
        assert download.text.count("\n") == 1  # the header alone


def test_filters_narrow_the_table_the_charts_and_the_csv_alike(shops: tuple[Shop, Shop]) -> None:
    """Filtered to its own terminal and the issuer side, the three rows stay; a range before
    them leaves none; the CSV has what the table has."""
    mine, _ = shops
    narrowed = {"terminal": mine.terminal_id, "side": "issuer"}
    page = mine.viewer.get("/dashboard/redemptions", **narrowed)
    assert len(_rows(page.text, "redemptions")) == 3
    download = mine.viewer.get("/dashboard/redemptions/csv", **narrowed)
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    assert "attachment" in download.headers["content-disposition"]
    assert download.headers["cache-control"] == "no-store"
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert len(rows) == 3
    assert {row["campaign_id"] for row in rows} == {str(mine.campaign_id)}

    before = (datetime.now(UTC) - timedelta(days=3)).replace(minute=0)  # 24 whole hours
    earlier = {
        "since": f"{before:%Y-%m-%dT%H:%M}",
        "until": f"{before + timedelta(days=1):%Y-%m-%dT%H:%M}",
    }
    page = mine.viewer.get("/dashboard/redemptions", **earlier)
    assert _rows(page.text, "redemptions") == []
    assert sum(_bars(page.text, "by-time")) == 0
    assert len(_bars(page.text, "by-time")) == 24


def test_the_table_pages_through_every_row_keeping_the_filters(reports_stack: Stack) -> None:
    """With more redemptions than a page holds, the table shows the newest page and a link
    to the older ones that keeps the filters; the next page holds the rest, no row twice."""
    merchant = reports_stack.new_merchant("Busy Cones")
    store_id = merchant.created("/v1/stores", {"name": "Main"})["id"]
    token = merchant.terminal_token(store_id)
    campaign_id = merchant.campaign()
    count = PAGE_SIZE + 2
    for code in merchant.codes(campaign_id, count):
        assert redeem(reports_stack, token, code).status_code == 200
    viewer = owner_of(merchant)
    filters = {"store": store_id, "side": "acceptor"}
    eventually(
        lambda: len(merchant.get("/v1/redemptions", limit=str(count)).json()["items"]) == count,
        within=30,
    )
    first = viewer.get("/dashboard/redemptions", **filters)
    assert len(_rows(first.text, "redemptions")) == PAGE_SIZE
    assert sum(_bars(first.text, "by-time")) == count
    older = re.search(r'<a href="([^"]+)">Older redemptions', first.text)
    assert older is not None
    link = unescape(older.group(1))
    assert f"store={store_id}" in link and "side=acceptor" in link
    second = viewer.client.get(link)
    rest = _rows(second.text, "redemptions")
    assert len(rest) == count - PAGE_SIZE
    serials = re.findall(r"#(\d+)", " ".join(_rows(first.text, "redemptions") + rest))
    assert len(set(serials)) == count
    assert "Older redemptions" not in second.text


def test_a_wrong_filter_is_told_back_not_a_500(shops: tuple[Shop, Shop]) -> None:
    """Values a form should not send are named on the page, answered 400, and left out; a
    cursor no page gave is 400 too."""
    mine, _ = shops
    page = mine.viewer.get(
        "/dashboard/redemptions", campaign="x'; DROP TABLE", since="yesterday", side="all"
    )
    assert page.status_code == 400
    assert "No such campaign." in page.text
    assert "is not a date and time" in page.text
    assert "Side is issuer, acceptor or both." in page.text
    assert len(_rows(page.text, "redemptions")) == 3
    assert mine.viewer.get("/dashboard/redemptions", cursor="bm90IG91cnM").status_code == 400


# --------------------------------------------------------------------------- settlements


def test_the_settlements_page_shows_the_day_and_its_csv(shops: tuple[Shop, Shop]) -> None:
    """Today's settlement: three own redemptions of 5.00 CNY at its own store (netting to
    zero), and the same as CSV; a bad day is told back."""
    mine, _ = shops
    today = datetime.now(UTC).date()

    def booked() -> bool:
        page = mine.viewer.get("/dashboard/settlements", day=str(today))
        return any(money(1500, "CNY", "en") in row for row in _rows(page.text, "settlement"))

    eventually(booked, within=30)
    page = mine.viewer.get("/dashboard/settlements")
    assert page.status_code == 200
    (line,) = _rows(page.text, "settlement")
    assert "own codes at own stores" in line
    assert f"merchant #{mine.merchant.id}" in line
    assert len(_rows(page.text, "days")) == 7
    download = mine.viewer.get("/dashboard/settlements/csv", day=str(today))
    assert download.status_code == 200
    assert download.headers["cache-control"] == "no-store"
    assert download.text == mine.merchant.get("/v1/settlements", date=str(today), format="csv").text
    assert mine.viewer.get("/dashboard/settlements", day="2026-02-30").status_code == 400


# --------------------------------------------------------------------------- roles, CSRF


MANAGED = ["/dashboard/stores", "/dashboard/agreements"]
OWNED = ["/dashboard/webhooks"]


def test_each_role_opens_the_pages_it_may(shops: tuple[Shop, Shop]) -> None:
    """A viewer opens reports only; a manager stores and agreements too; webhooks are the
    owner's. Without a session a page sends to the login."""
    mine, _ = shops
    reports = ["/dashboard/redemptions", "/dashboard/settlements"]
    for person, allowed in (
        (mine.viewer, reports),
        (mine.manager, reports + MANAGED),
        (mine.owner, reports + MANAGED + OWNED),
    ):
        for path in reports + MANAGED + OWNED:
            expected = 200 if path in allowed else 403
            assert person.get(path).status_code == expected, path
    anonymous = httpx.get(mine.merchant.stack.base_url + "/dashboard/redemptions")
    assert anonymous.status_code == 303
    assert anonymous.headers["location"].startswith("/dashboard/login")


def test_a_viewer_cannot_change_anything(shops: tuple[Shop, Shop]) -> None:
    """Every form a manager or owner sends is 403 for a viewer, even with its CSRF token,
    and nothing changes."""
    mine, _ = shops
    mine.viewer.get("/dashboard/redemptions")  # a page: its CSRF token
    for path, fields in (
        ("/dashboard/stores", {"name": "Sneaky"}),
        (f"/dashboard/stores/{mine.store_id}/disable", {}),
        (f"/dashboard/stores/{mine.store_id}/terminals", {"name": "Sneaky"}),
        (f"/dashboard/terminals/{mine.terminal_id}/rotate-secret", {}),
        (f"/dashboard/terminals/{mine.terminal_id}/disable", {}),
        (
            "/dashboard/agreements",
            {"campaign_id": str(mine.campaign_id), "acceptor_merchant_id": "1"},
        ),
        ("/dashboard/webhooks/1/deliveries/1/retry", {}),
    ):
        assert mine.viewer.post(path, fields).status_code == 403, path
    stores = mine.merchant.get("/v1/stores").json()["items"]
    assert [store["name"] for store in stores] == ["Cone & Co <b>Flagship</b>"]
    assert not stores[0]["disabled"]
    assert not mine.merchant.get(f"/v1/terminals/{mine.terminal_id}").json()["disabled"]


def test_forms_without_the_sessions_csrf_token_are_refused(shops: tuple[Shop, Shop]) -> None:
    """An owner's browser posting a form without the token, or with another session's, is
    403 and nothing is made."""
    mine, other = shops
    mine.owner.get("/dashboard/stores")
    assert mine.owner.post("/dashboard/stores", {"name": "Forged"}, csrf=False).status_code == 403
    forged = {"name": "Forged", "csrf_token": other.owner.csrf or "x" * 43}
    assert mine.owner.post("/dashboard/stores", forged, csrf=False).status_code == 403
    path = f"/dashboard/terminals/{mine.terminal_id}/disable"
    assert mine.owner.post(path, csrf=False).status_code == 403
    names = [store["name"] for store in mine.merchant.get("/v1/stores").json()["items"]]
    assert "Forged" not in names
    assert not mine.merchant.get(f"/v1/terminals/{mine.terminal_id}").json()["disabled"]


def test_another_merchants_ids_are_not_found(shops: tuple[Shop, Shop]) -> None:
    """The other merchant's store, terminal, webhook endpoint and agreement are 404 to an
    owner, to read and to change, and stay as they were."""
    mine, other = shops
    endpoint = other.merchant.created("/v1/webhooks", {"url": "https://hooks.example.com/x"})
    mine.owner.get("/dashboard/stores")
    for path in (
        f"/dashboard/stores/{other.store_id}",
        f"/dashboard/terminals/{other.terminal_id}",
        f"/dashboard/webhooks/{endpoint['id']}",
    ):
        assert mine.owner.get(path).status_code == 404, path
    for path in (
        f"/dashboard/stores/{other.store_id}/disable",
        f"/dashboard/stores/{other.store_id}/terminals",
        f"/dashboard/terminals/{other.terminal_id}/disable",
        f"/dashboard/terminals/{other.terminal_id}/rotate-secret",
        f"/dashboard/webhooks/{endpoint['id']}/deliveries/1/retry",
    ):
        assert mine.owner.post(path, {"name": "x"}).status_code == 404, path
    proposal = mine.owner.post(
        "/dashboard/agreements",
        {"campaign_id": str(other.campaign_id), "acceptor_merchant_id": str(other.merchant.id)},
    )
    assert proposal.status_code == 404
    assert not other.merchant.get(f"/v1/stores/{other.store_id}").json()["disabled"]
    assert not other.merchant.get(f"/v1/terminals/{other.terminal_id}").json()["disabled"]


# --------------------------------------------------------------------------- stores


def _secret(html: str) -> str | None:
    found = re.search(r'id="terminal-secret">([^<]+)<', html)
    return unescape(found.group(1)) if found else None


def _token(stack: Stack, terminal_id: int, secret: str) -> int:
    body = {"terminal_id": terminal_id, "secret": secret}
    return httpx.post(stack.base_url + "/v1/terminal/token", json=body).status_code


def test_a_manager_makes_a_store_and_a_terminal_whose_secret_is_shown_once(
    shops: tuple[Shop, Shop],
) -> None:
    """The new terminal's page shows a secret that the till exchanges for a token; the
    terminal's page never shows it again; a rotation shows a new one and the old stops."""
    mine, _ = shops
    stack = mine.merchant.stack
    mine.manager.get("/dashboard/stores")
    made = mine.manager.post("/dashboard/stores", {"name": "Kiosk"})
    assert made.status_code == 303
    store_path = made.headers["location"]
    store_id = int(store_path.rsplit("/", 1)[1])
    assert "Kiosk" in mine.manager.get(store_path).text

    created = mine.manager.post(f"{store_path}/terminals", {"name": "Phone till"})
    assert created.status_code == 201
    first = _secret(created.text)
    assert first is not None
    terminal_id = int(re.findall(r"Terminal #(\d+)", created.text)[0])
    assert _token(stack, terminal_id, first) == 200
    again = mine.manager.get(f"/dashboard/terminals/{terminal_id}")
    assert _secret(again.text) is None
    assert first not in again.text

    rotated = mine.manager.post(f"/dashboard/terminals/{terminal_id}/rotate-secret")
    second = _secret(rotated.text)
    assert second is not None and second != first
    assert _token(stack, terminal_id, first) == 401
    assert _token(stack, terminal_id, second) == 200

    assert mine.manager.post(f"/dashboard/terminals/{terminal_id}/disable").status_code == 303
    assert _token(stack, terminal_id, second) == 401
    assert mine.manager.post(f"/dashboard/terminals/{terminal_id}/enable").status_code == 303
    assert mine.manager.post(f"/dashboard/stores/{store_id}/disable").status_code == 303
    assert mine.merchant.get(f"/v1/stores/{store_id}").json()["disabled"]
    assert _token(stack, terminal_id, second) == 401


def test_a_store_name_the_api_refuses_is_told_back(shops: tuple[Shop, Shop]) -> None:
    """An empty name is a 400 page saying what is wrong, and no store."""
    mine, _ = shops
    mine.manager.get("/dashboard/stores")
    before = len(mine.merchant.get("/v1/stores").json()["items"])
    answer = mine.manager.post("/dashboard/stores", {"name": "   "})
    assert answer.status_code == 400
    assert 'class="error"' in answer.text
    assert len(mine.merchant.get("/v1/stores").json()["items"]) == before


# --------------------------------------------------------------------------- agreements


def test_agreements_are_proposed_accepted_and_ended_from_the_pages(
    shops: tuple[Shop, Shop],
) -> None:
    """One merchant's manager proposes its campaign to the other; the other's manager sees
    the proposal and accepts it; the issuer ends it. The issuer cannot accept its own."""
    mine, other = shops
    mine.manager.get("/dashboard/agreements")
    proposed = mine.manager.post(
        "/dashboard/agreements",
        {"campaign_id": str(mine.campaign_id), "acceptor_merchant_id": str(other.merchant.id)},
    )
    assert proposed.status_code == 303
    (agreement,) = [
        a
        for a in other.merchant.get("/v1/agreements").json()
        if a["campaign_id"] == mine.campaign_id
    ]
    assert agreement["status"] == "proposed"
    path = f"/dashboard/agreements/{agreement['id']}"
    assert mine.manager.post(f"{path}/accept").status_code == 403

    page = other.manager.get("/dashboard/agreements")
    (row,) = _rows(page.text, "agreements")
    assert "Cone & Co cone" in row and "proposed" in row
    assert other.manager.post(f"{path}/accept").status_code == 303
    assert other.merchant.get(f"/v1/agreements/{agreement['id']}").json()["status"] == "active"

    assert mine.manager.post(f"{path}/end").status_code == 303
    ended = mine.merchant.get(f"/v1/agreements/{agreement['id']}").json()
    assert (ended["status"], ended["ended_by"]) == ("ended", "issuer")


def test_a_proposal_with_a_bad_merchant_id_is_told_back(shops: tuple[Shop, Shop]) -> None:
    """A merchant id that is no number, or its own, is a 400 page saying why."""
    mine, _ = shops
    mine.manager.get("/dashboard/agreements")
    for acceptor in ("abc", str(mine.merchant.id)):
        answer = mine.manager.post(
            "/dashboard/agreements",
            {"campaign_id": str(mine.campaign_id), "acceptor_merchant_id": acceptor},
        )
        assert answer.status_code == 400, acceptor
        assert 'class="error"' in answer.text


# --------------------------------------------------------------------------- webhooks


def _closed_port() -> int:
    """A loopback port nothing listens on: every delivery there fails at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _deliveries(merchant: Merchant, endpoint_id: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = merchant.get(f"/v1/webhooks/{endpoint_id}/deliveries").json()
    return found


def test_the_owner_sees_a_failed_delivery_and_retries_it(reports_stack: Stack) -> None:
    """A delivery to an endpoint that never answers fails after the retry horizon; the
    endpoint's page shows it failed with its attempts and error; its Retry button makes it
    pending again (the API's retry)."""
    merchant = reports_stack.new_merchant("Hooked")
    url = f"http://127.0.0.1:{_closed_port()}/hooks"
    endpoint = merchant.created("/v1/webhooks", {"url": url, "events": ["redemption.created"]})
    store_id = merchant.created("/v1/stores", {"name": "Main"})["id"]
    token = merchant.terminal_token(store_id)
    campaign_id = merchant.campaign()
    (code,) = merchant.codes(campaign_id, 1)
    assert redeem(reports_stack, token, code).status_code == 200

    def failed() -> bool:
        deliveries = _deliveries(merchant, endpoint["id"])
        return bool(deliveries) and deliveries[0]["status"] == "failed"

    eventually(failed, within=60)
    (delivery,) = _deliveries(merchant, endpoint["id"])
    owner = owner_of(merchant)
    listing = owner.get("/dashboard/webhooks")
    assert url in _rows(listing.text, "endpoints")[0]
    page = owner.get(f"/dashboard/webhooks/{endpoint['id']}")
    (row,) = _rows(page.text, "deliveries")
    assert "failed" in row and "redemption.created" in row
    assert str(delivery["attempts"]) in row
    assert delivery["last_error"] and unescape(delivery["last_error"]) in row
    retry = f"/dashboard/webhooks/{endpoint['id']}/deliveries/{delivery['id']}/retry"
    assert retry in page.text

    answer = owner.post(retry)
    assert answer.status_code == 303
    # Sent again: a new attempt (failing again, at the same closed port) is logged.
    eventually(
        lambda: _deliveries(merchant, endpoint["id"])[0]["attempts"] > delivery["attempts"],
        within=30,
    )
    shown = owner.client.get(answer.headers["location"])
    assert f"Delivery {delivery['id']} is queued" in shown.text


# --------------------------------------------------------------------------- pairing


def _pairing_url(html: str) -> str | None:
    found = re.search(r'id="pairing-url">([^<]+)<', html)
    return unescape(found.group(1)) if found else None


def test_a_manager_pairs_a_phone_from_the_terminal_page_and_revokes_it(
    shops: tuple[Shop, Shop],
) -> None:
    """ "Pair a phone" shows a one-time link with its QR (on that answer only, sent with no
    Referer); the phone that opens and confirms it gets a till credential; the terminal page
    lists the phone, and its Revoke button ends the credential at once. A viewer cannot
    pair, and another merchant's terminal is 404."""
    mine, other = shops
    stack = mine.merchant.stack
    terminal = f"/dashboard/terminals/{mine.terminal_id}"
    page = mine.manager.get(terminal)
    assert f"{terminal}/pair" in page.text
    assert _pairing_url(page.text) is None

    answer = mine.manager.post(f"{terminal}/pair")
    assert answer.status_code == 201
    assert answer.headers["referrer-policy"] == "no-referrer"
    url = _pairing_url(answer.text)
    assert url is not None and "/till/pair/qrl_pair_" in url
    assert re.search(r'<div class="qr-pair"[^>]*>\s*<svg', answer.text)
    assert _pairing_url(mine.manager.get(terminal).text) is None

    with httpx.Client(base_url=stack.base_url, timeout=30) as phone:
        path = httpx.URL(url).path
        assert "Till 1" in phone.get(path).text
        confirmed = phone.post(
            path, headers={"Origin": stack.base_url, "Sec-Fetch-Site": "same-origin"}
        )
        assert confirmed.status_code == 303
        assert phone.post("/till/token", headers={"X-Qrloop-Till": "1"}).status_code == 200

        page = mine.manager.get(terminal)
        (device,) = _rows(page.text, "devices")
        assert "Revoke" in device
        device_id = int(re.findall(rf"{terminal}/devices/(\d+)/revoke", page.text)[0])
        revoked = mine.manager.post(f"{terminal}/devices/{device_id}/revoke")
        assert revoked.status_code == 303
        assert phone.post("/till/token", headers={"X-Qrloop-Till": "1"}).status_code == 401
    assert "revoked" in _rows(mine.manager.get(terminal).text, "devices")[0]

    mine.viewer.get("/dashboard/redemptions")
    assert mine.viewer.post(f"{terminal}/pair").status_code == 403
    foreign = f"/dashboard/terminals/{other.terminal_id}"
    assert mine.manager.post(f"{foreign}/pair").status_code == 404
    assert mine.manager.post(f"{foreign}/devices/1/revoke").status_code == 404


def test_a_nul_in_any_field_is_a_400_never_a_500(shops: tuple[Shop, Shop]) -> None:
    """PostgreSQL text cannot hold NUL: every form and filter of these pages refuses it as
    bad input, whichever field, and nothing is made."""
    mine, _ = shops
    forms = {
        "/dashboard/stores": ["name"],
        f"/dashboard/stores/{mine.store_id}/terminals": ["name"],
        "/dashboard/agreements": ["campaign_id", "acceptor_merchant_id"],
    }
    valid = {"name": "N", "campaign_id": str(mine.campaign_id), "acceptor_merchant_id": "99"}
    mine.manager.get("/dashboard/stores")
    for path, fields in forms.items():
        for field in fields:
            answer = mine.manager.post(path, {**valid, field: "a\x00b"})
            assert answer.status_code == 400, (path, field, answer.status_code)
    for name in ("campaign", "store", "terminal", "side", "since", "until"):
        answer = mine.viewer.get("/dashboard/redemptions", **{name: "a\x00b"})
        assert answer.status_code == 400, name
    assert mine.viewer.get("/dashboard/settlements", day="2026\x00").status_code == 400
    names = [store["name"] for store in mine.merchant.get("/v1/stores").json()["items"]]
    assert "a\x00b" not in names
