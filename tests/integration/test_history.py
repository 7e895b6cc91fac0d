"""A merchant's settled redemptions (list, one, CSV) and code lookups, on a real stack: each
merchant sees what it issued or accepted, and a stranger learns nothing."""

from __future__ import annotations

import asyncio
import csv
import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from history_rows import load
from qrloop.accounts import api_keys
from qrloop.codes.format import Signer, to_typed
from qrloop.codes.keyring import Algorithm, KeyRing, Purpose
from support import (
    Merchant,
    Stack,
    Stores,
    check_status,
    claim_with_code,
    eventually,
    fetchval,
    reason,
    redeem,
    serving,
    till,
)


@dataclass
class Scene:
    """An issuer with two stores and two campaigns, an acceptor of one campaign under an
    agreement, and a stranger with a campaign of its own; codes redeemed at each till."""

    stack: Stack
    issuer: Merchant
    acceptor: Merchant
    stranger: Merchant
    campaign: int  # the issuer's, accepted by the acceptor
    other_campaign: int  # the issuer's, not shared
    stranger_campaign: int
    stores: dict[str, int]
    terminals: dict[str, int]
    codes: list[str]
    links: list[str]
    redeemed: dict[str, str] = field(default_factory=dict)  # label -> redemption id


def _till(merchant: Merchant, store: int, name: str) -> tuple[int, str]:
    return merchant.terminal(store, name)


def _export(merchant: Merchant, campaign: int, quantity: int) -> list[list[str]]:
    order = merchant.order(campaign, quantity)
    export = merchant.get(f"/v1/orders/{order['id']}/codes", format="csv")
    return [line.split(",") for line in export.text.splitlines()[1:]]


def _redeemed(stack: Stack, token: str, code: str) -> str:
    answer = redeem(stack, token, code)
    assert answer.status_code == 200, answer.text
    redemption_id: str = answer.json()["redemption_id"]
    return redemption_id


def _items(merchant: Merchant, **params: str) -> list[dict[str, Any]]:
    """Every item of a list, page by page (at most 2 a page, so paging is exercised)."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page_params = {**params, "limit": "2", **({"cursor": cursor} if cursor else {})}
        answer = merchant.get("/v1/redemptions", **page_params)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def _ids(merchant: Merchant, **params: str) -> list[str]:
    return [item["redemption_id"] for item in _items(merchant, **params)]


@pytest.fixture(scope="module")
def scene(stack: Stack) -> Scene:
    issuer = stack.new_merchant("Cone & Co")
    acceptor = stack.new_merchant("Corner Shop")
    stranger = stack.new_merchant("Prying Eyes")
    stores = {
        "flagship": issuer.created("/v1/stores", {"name": "Flagship"})["id"],
        "kiosk": issuer.created("/v1/stores", {"name": "=HYPERLINK(1)"})["id"],
        "corner": acceptor.created("/v1/stores", {"name": "Corner"})["id"],
        "elsewhere": stranger.created("/v1/stores", {"name": "Elsewhere"})["id"],
    }
    tills = {
        "flagship": _till(issuer, stores["flagship"], "Till 1"),
        "kiosk": _till(issuer, stores["kiosk"], "Kiosk till"),
        "corner": _till(acceptor, stores["corner"], "Corner till"),
        "elsewhere": _till(stranger, stores["elsewhere"], "Far till"),
    }
    campaign = issuer.campaign(name="Free cone")
    other_campaign = issuer.campaign(name="Free flake", face_value=100)
    stranger_campaign = stranger.campaign(name="Not yours")
    rows = _export(issuer, campaign, 12)
    other = _export(issuer, other_campaign, 2)
    theirs = _export(stranger, stranger_campaign, 2)
    agreement = issuer.created(
        "/v1/agreements", {"campaign_id": campaign, "acceptor_merchant_id": acceptor.id}
    )
    acceptor.created(f"/v1/agreements/{agreement['id']}/accept", {})
    codes = [row[0] for row in rows]
    corner_token = tills["corner"][1]
    eventually(lambda: check_status(stack, corner_token, codes[4]) == "valid", within=5)
    scene = Scene(
        stack, issuer, acceptor, stranger, campaign, other_campaign, stranger_campaign,
        stores, {name: terminal for name, (terminal, _) in tills.items()}, codes,
        [row[2].removeprefix(stack.base_url) for row in rows],
    )  # fmt: skip
    token = {name: token for name, (_, token) in tills.items()}
    for label, where, code in [
        ("c0", "flagship", codes[0]),
        ("c1", "flagship", codes[1]),
        ("c2", "flagship", codes[2]),
        ("c3", "kiosk", codes[3]),
        ("o0", "flagship", other[0][0]),
        ("c4", "corner", codes[4]),
        ("c5", "corner", codes[5]),
        ("s0", "elsewhere", theirs[0][0]),
    ]:
        scene.redeemed[label] = _redeemed(stack, token[where], code)
    reversed_ = till(
        stack, f"/v1/redemptions/{scene.redeemed['c1']}/reverse", token["flagship"], {}
    )
    assert reversed_.status_code == 200, reversed_.text
    everything = {label for label in scene.redeemed if label != "s0"}

    def settled() -> bool:
        items = {item["redemption_id"]: item for item in _items(issuer)}
        return (
            len(items) == len(everything) and items[scene.redeemed["c1"]]["reversed_at"] is not None
        )

    eventually(settled, within=30)
    return scene


def test_the_issuer_sees_its_campaigns_redemptions_newest_first_page_by_page(scene: Scene) -> None:
    """Without filters the issuer's list holds every redemption of its campaigns, at its own
    stores and at the acceptor's, each once, ordered newest first (ties by campaign, serial,
    use), across pages of 2; the stranger's redemption is not there."""
    items = _items(scene.issuer)
    ids = [item["redemption_id"] for item in items]
    mine = {label for label in scene.redeemed if label != "s0"}
    assert sorted(ids) == sorted(scene.redeemed[label] for label in mine)
    keys = [
        (datetime.fromisoformat(i["redeemed_at"]), i["campaign_id"], i["serial"], i["use_no"])
        for i in items
    ]
    assert keys == sorted(keys, reverse=True)


def test_an_item_says_what_was_redeemed_where_and_whether_it_was_reversed(scene: Scene) -> None:
    """A list item and GET /v1/redemptions/{id} agree: the campaign and its value, the issuer
    and the accepting merchant, the store and terminal by id and name, and reversed_at for the
    one reversed."""
    by_id = {item["redemption_id"]: item for item in _items(scene.issuer)}
    at_corner = by_id[scene.redeemed["c4"]]
    assert at_corner == scene.issuer.get(f"/v1/redemptions/{scene.redeemed['c4']}").json()
    assert at_corner["campaign_id"] == scene.campaign
    assert at_corner["campaign_name"] == "Free cone"
    assert (at_corner["face_value"], at_corner["currency"]) == (500, "CNY")
    assert at_corner["issuer_merchant_id"] == scene.issuer.id
    assert at_corner["accepting_merchant_id"] == scene.acceptor.id
    assert (at_corner["store_id"], at_corner["store_name"]) == (scene.stores["corner"], "Corner")
    assert at_corner["terminal_id"] == scene.terminals["corner"]
    assert at_corner["terminal_name"] == "Corner till"
    assert at_corner["reversed_at"] is None
    reversed_ = by_id[scene.redeemed["c1"]]
    assert datetime.fromisoformat(reversed_["reversed_at"]) >= datetime.fromisoformat(
        reversed_["redeemed_at"]
    )


def test_filters_narrow_the_list(scene: Scene) -> None:
    """campaign_id, store_id, terminal_id, side and since/until each keep exactly the
    redemptions they name, for the issuer and for the acceptor alike."""
    r, issuer, acceptor = scene.redeemed, scene.issuer, scene.acceptor
    cone = {r[label] for label in ("c0", "c1", "c2", "c3", "c4", "c5")}
    at_issuer = {r[label] for label in ("c0", "c1", "c2", "c3", "o0")}
    at_corner = {r["c4"], r["c5"]}
    assert set(_ids(issuer, campaign_id=str(scene.campaign))) == cone
    assert set(_ids(issuer, campaign_id=str(scene.other_campaign))) == {r["o0"]}
    assert set(_ids(issuer, store_id=str(scene.stores["kiosk"]))) == {r["c3"]}
    assert set(_ids(issuer, terminal_id=str(scene.terminals["corner"]))) == at_corner
    assert set(_ids(issuer, side="acceptor")) == at_issuer
    assert set(_ids(issuer, side="issuer")) == cone | {r["o0"]}
    assert set(_ids(acceptor)) == at_corner
    assert set(_ids(acceptor, side="acceptor")) == at_corner
    assert _ids(acceptor, side="issuer") == []
    assert set(_ids(acceptor, campaign_id=str(scene.campaign))) == at_corner
    newest_first = _items(issuer)
    middle = datetime.fromisoformat(newest_first[3]["redeemed_at"])
    since = _ids(issuer, since=middle.isoformat())
    until = _ids(issuer, until=middle.isoformat())
    assert set(since) | set(until) == {item["redemption_id"] for item in newest_first}
    assert not set(since) & set(until)
    assert newest_first[3]["redemption_id"] in since
    later = (middle + timedelta(hours=1)).isoformat()
    assert _ids(issuer, since=middle.isoformat(), until=later) == since


def test_the_csv_holds_exactly_the_rows_of_the_json_pages(scene: Scene) -> None:
    """format=csv answers text/csv with a header row, then the same redemptions as the JSON
    pages, in the same order, with the same values; a name that a spreadsheet would run as a
    formula is written as text."""
    for params in ({}, {"side": "acceptor"}, {"campaign_id": str(scene.campaign)}):
        answer = scene.issuer.get("/v1/redemptions", format="csv", **params)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "text/csv; charset=utf-8"
        rows = list(csv.DictReader(io.StringIO(answer.text)))
        items = _items(scene.issuer, **params)
        assert [row["redemption_id"] for row in rows] == [item["redemption_id"] for item in items]
        for row, item in zip(rows, items, strict=True):
            expected = {
                key: "" if value is None else str(value)
                for key, value in item.items()
                if key != "store_name"
            }
            assert {key: value for key, value in row.items() if key != "store_name"} == expected
            assert row["store_name"] == (
                "'=HYPERLINK(1)" if item["store_name"] == "=HYPERLINK(1)" else item["store_name"]
            )
    header = scene.stranger.get("/v1/redemptions", format="csv", campaign_id=str(scene.campaign))
    assert header.text.splitlines() == [header.text.splitlines()[0]]
    assert header.text.startswith("redemption_id,campaign_id,campaign_name,serial,use_no,")


def test_a_stranger_sees_none_of_it(scene: Scene) -> None:
    """Attack: a merchant that is neither issuer nor acceptor asks for the issuer's
    redemptions by every filter, one by id, and as CSV: it gets only its own redemption, empty
    lists, and for the id the same 404 as for an id that names nothing."""
    stranger, r = scene.stranger, scene.redeemed
    assert _ids(stranger) == [r["s0"]]
    for params in (
        {"campaign_id": str(scene.campaign)},
        {"store_id": str(scene.stores["flagship"])},
        {"terminal_id": str(scene.terminals["corner"])},
        {"side": "issuer", "store_id": str(scene.stores["corner"])},
    ):
        assert _ids(stranger, **params) == [], params
    csv_rows = stranger.get("/v1/redemptions", format="csv").text.splitlines()[1:]
    assert [row.split(",")[0] for row in csv_rows] == [r["s0"]]
    theirs = stranger.get(f"/v1/redemptions/{r['c4']}")
    nothing = stranger.get(f"/v1/redemptions/{scene.campaign}-999-1")
    assert (theirs.status_code, reason(theirs)) == (404, "not_found")
    assert theirs.json()["detail"].replace(r["c4"], "X") == nothing.json()["detail"].replace(
        f"{scene.campaign}-999-1", "X"
    )
    # The acceptor sees its own redemptions of the campaign, not the issuer's other ones.
    refused = scene.acceptor.get(f"/v1/redemptions/{r['c0']}")
    assert (refused.status_code, reason(refused)) == (404, "not_found")
    assert scene.acceptor.get(f"/v1/redemptions/{r['c4']}").status_code == 200


@pytest.mark.parametrize(
    "params",
    [
        {"since": "2026-12-01T00:00:00"},  # no offset
        {"until": "yesterday"},
        {"since": "0001-01-01T00:00:00+23:59"},  # before the first moment in UTC
        {"side": "both"},
        {"campaign_id": "0"},
        {"store_id": "9223372036854775808"},
        {"cursor": "e30"},
        {"cursor": "WyIyMDI2LTEyLTAxVDAwOjAwOjAwIiwxLDEsMV0"},  # a time without an offset
        {"cursor": "WyIyMDI2LTEyLTAxVDAwOjAwOjAwWiIsMSwxLDk5OTk5OTk5OTk5XQ"},  # use beyond int4
        {"limit": "1001"},
        {"format": "xml"},
    ],
)
def test_bad_filters_are_a_bad_request(scene: Scene, params: dict[str, str]) -> None:
    """A filter that is not one (a time without its offset, an unknown side, an id out of
    range, a cursor the list never gave, a page over 1,000) is 400 bad_request, never a 500."""
    answer = scene.issuer.get("/v1/redemptions", **params)
    assert (answer.status_code, reason(answer)) == (400, "bad_request"), answer.text


@pytest.mark.parametrize("redemption_id", ["1-2", "x-1-1", "1-1-99999999999", "-1-1-1"])
def test_an_id_that_is_not_a_redemption_id_is_not_found(scene: Scene, redemption_id: str) -> None:
    """GET /v1/redemptions/{id} with an id of the wrong shape or out of range is 404."""
    answer = scene.issuer.get(f"/v1/redemptions/{redemption_id}")
    assert (answer.status_code, reason(answer)) == (404, "not_found"), answer.text


def _lookup(merchant: Merchant, code: str) -> httpx.Response:
    return merchant.post("/v1/codes/lookup", {"code": code})


def _looked_up(merchant: Merchant, code: str) -> dict[str, Any]:
    answer = _lookup(merchant, code)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def test_lookup_tells_the_issuer_each_state_and_every_use(scene: Scene) -> None:
    """The issuer looks a code up as scanned or typed: an untouched code is issued, one a
    consumer claimed is claimed, a redeemed one redeemed with its use (time, store and till),
    a reversed one reversed with its reversal's time, a voided one voided."""
    issuer, codes, stack = scene.issuer, scene.codes, scene.stack
    untouched = _looked_up(issuer, to_typed(codes[9]).lower())
    assert untouched["state"] == "issued"
    assert (untouched["campaign_id"], untouched["campaign_name"]) == (scene.campaign, "Free cone")
    assert (untouched["role"], untouched["issuer_merchant_id"]) == ("issuer", issuer.id)
    assert untouched["uses"] == []
    with httpx.Client(base_url=stack.base_url, timeout=30) as browser:
        claimed = claim_with_code(
            stack, browser, scene.links[10], "lu@example.com", "lu@example.com"
        )
        assert claimed.status_code == 303
    assert _looked_up(issuer, codes[10])["state"] == "claimed"
    redeemed = _looked_up(issuer, codes[0])
    assert redeemed["state"] == "redeemed"
    [use] = redeemed["uses"]
    listed = issuer.get(f"/v1/redemptions/{scene.redeemed['c0']}").json()
    assert use == {
        "redemption_id": scene.redeemed["c0"],
        "use_no": 1,
        "redeemed_at": listed["redeemed_at"],
        "settled": True,
        "reversed_at": None,
        "accepting_merchant_id": issuer.id,
        "store_id": scene.stores["flagship"],
        "store_name": "Flagship",
        "terminal_id": scene.terminals["flagship"],
        "terminal_name": "Till 1",
    }
    reversed_ = _looked_up(issuer, codes[1])
    assert reversed_["state"] == "reversed"
    assert [u["reversed_at"] is not None for u in reversed_["uses"]] == [True]
    voided = issuer.post("/v1/codes/void", {"codes": [codes[11]]})
    assert voided.status_code == 200, voided.text
    assert _looked_up(issuer, codes[11])["state"] == "voided"


def test_an_acceptor_looks_up_the_campaigns_codes_but_sees_only_its_own_tills(
    scene: Scene,
) -> None:
    """The acceptor (active agreement) looks up the campaign's codes: its own use in full;
    a use at the issuer's store with when, but neither that store nor its till."""
    own = _looked_up(scene.acceptor, scene.codes[4])
    assert own["role"] == "acceptor"
    assert own["uses"][0]["store_name"] == "Corner"
    assert own["uses"][0]["accepting_merchant_id"] == scene.acceptor.id
    elsewhere = _looked_up(scene.acceptor, scene.codes[0])
    [use] = elsewhere["uses"]
    assert use["redeemed_at"] is not None
    hidden = ("accepting_merchant_id", "store_id", "store_name", "terminal_id", "terminal_name")
    assert {key: use[key] for key in hidden} == dict.fromkeys(hidden)


def _foreign_code(stack: Stack, campaign: int) -> str:
    """A code with a valid tag for `campaign` (which may not exist), made with the stack's own
    key ring: what only qrloop itself could have issued."""
    ring = KeyRing.load(Path(stack.env["QRLOOP_KEYS_DIR"]) / "keyring.json")
    return Signer(ring.signing_key(Purpose.CODE, Algorithm.HMAC_SHA256)).sign(campaign, 3)


def test_a_lookup_by_a_stranger_learns_nothing(scene: Scene) -> None:
    """Attack: a merchant that is neither issuer nor acceptor looks up a genuine redeemed code
    of the issuer. The answer is the 404 a genuine code of a campaign that does not exist
    gets, word for word; a forged code is 422 invalid for everyone, issuer included."""
    genuine = _lookup(scene.stranger, scene.codes[0])
    nowhere = _lookup(scene.stranger, _foreign_code(scene.stack, 4_000_000_000))
    assert (genuine.status_code, reason(genuine)) == (404, "not_found")
    assert genuine.json() == nowhere.json()
    assert genuine.headers["content-type"] == nowhere.headers["content-type"]
    forged = scene.codes[0][:-1] + ("A" if scene.codes[0][-1] != "A" else "B")
    for merchant in (scene.stranger, scene.issuer):
        answer = _lookup(merchant, forged)
        assert (answer.status_code, reason(answer)) == (422, "invalid")


def test_the_code_never_travels_in_the_url(scene: Scene) -> None:
    """GET /v1/codes/lookup?code=… is no route: the code is a bearer secret, and URLs end up
    in logs."""
    answer = scene.issuer.get("/v1/codes/lookup", code=scene.codes[0])
    assert answer.status_code in (404, 405)


def test_after_the_agreement_ends_an_acceptor_looks_up_only_what_its_tills_took(
    scene: Scene,
) -> None:
    """Once the agreement has ended, the former acceptor still looks up a code its own till
    redeemed (its redemptions stay booked), and still lists its redemptions; any other code
    of the campaign is 404 to it, as to a stranger. (Runs last of the scene's tests: it ends
    the agreement.)"""
    [agreement] = [
        a for a in scene.acceptor.get("/v1/agreements").json() if a["campaign_id"] == scene.campaign
    ]
    ended = scene.acceptor.post(f"/v1/agreements/{agreement['id']}/end", {})
    assert ended.status_code == 200, ended.text
    assert _looked_up(scene.acceptor, scene.codes[4])["role"] == "acceptor"
    for code in (scene.codes[0], scene.codes[9]):
        refused = _lookup(scene.acceptor, code)
        assert (refused.status_code, reason(refused)) == (404, "not_found")
    assert set(_ids(scene.acceptor)) == {scene.redeemed["c4"], scene.redeemed["c5"]}


@pytest.fixture(scope="module")
def unsettled(stores: Stores, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A stack without a settlement worker or signer (its redemptions stay in the stream), and
    a limit of 3 lookups per key per minute."""
    with serving(
        stores,
        tmp_path_factory.mktemp("unsettled"),
        QRLOOP_RUN_WORKER="false",
        QRLOOP_LOOKUPS_PER_KEY_MINUTE="3",
    ) as running:
        yield running


def test_a_redeemed_code_not_yet_settled_is_redeemed_with_its_use(unsettled: Stack) -> None:
    """The till answered, the ledger has not heard yet: the lookup says redeemed, with the use
    (store and till) as the state store remembers it, marked settled: false; the list has
    nothing yet."""
    merchant = unsettled.new_merchant()
    store = merchant.created("/v1/stores", {"name": "Flagship"})["id"]
    terminal, token = merchant.terminal(store, "Till 1")
    campaign = merchant.campaign()
    merchant.created(f"/v1/campaigns/{campaign}/orders", {"quantity": 5})
    code = _foreign_code(unsettled, campaign)
    assert redeem(unsettled, token, code).status_code == 200
    found = _looked_up(merchant, code)
    assert found["state"] == "redeemed"
    [use] = found["uses"]
    assert use["settled"] is False
    assert (use["store_id"], use["terminal_id"], use["terminal_name"]) == (
        store,
        terminal,
        "Till 1",
    )
    assert merchant.get("/v1/redemptions").json()["items"] == []


def test_lookups_are_limited_per_api_key(unsettled: Stack) -> None:
    """Past QRLOOP_LOOKUPS_PER_KEY_MINUTE lookups in a minute a key is refused 429
    rate_limited with Retry-After (invalid codes count too: guessing is what the limit stops);
    another key of the same merchant still looks up."""
    merchant = unsettled.new_merchant()
    answers: list[httpx.Response] = []
    # Up to two minutes' worth, in case the calls straddle the turn of a minute.
    while len(answers) < 7 and 429 not in [a.status_code for a in answers]:
        answers.append(_lookup(merchant, "NOT-A-CODE"))
    *allowed, limited = answers
    assert (limited.status_code, reason(limited)) == (429, "rate_limited")
    assert len(allowed) >= 3
    assert {a.status_code for a in allowed} == {422}
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    second = merchant.created("/v1/api-keys", {"label": "support desk"})["api_key"]
    other_key = Merchant(unsettled, merchant.id, second)
    assert _lookup(other_key, "NOT-A-CODE").status_code == 422


def test_a_client_leaving_mid_csv_gives_its_connection_back(unsettled: Stack) -> None:
    """Clients that hang up in the middle of long CSV downloads, more of them than an API
    process has PostgreSQL connections, leave no transaction open: each stream's connection
    goes back to the pool, and the lists still answer."""
    merchant_id, api_key = asyncio.run(_loaded_merchant(unsettled.stores.database_url))
    merchant = Merchant(unsettled, merchant_id, api_key)
    for _ in range(12):  # QRLOOP_DB_POOL_SIZE is 10
        with (
            httpx.Client(base_url=unsettled.base_url, headers=merchant.headers) as client,
            client.stream("GET", "/v1/redemptions", params={"format": "csv"}) as answer,
        ):
            assert answer.status_code == 200
            assert next(answer.iter_bytes()).startswith(b"redemption_id,")

    def transactions_left() -> int:
        return int(
            fetchval(
                unsettled,
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
            )
        )

    eventually(lambda: transactions_left() == 0, within=10)
    page = merchant.get("/v1/redemptions", limit="1")
    assert page.status_code == 200
    assert len(page.json()["items"]) == 1


async def _loaded_merchant(database_url: str) -> tuple[int, str]:
    """A merchant of its own holding 100,000 settled redemptions (written straight into
    PostgreSQL), and an API key for it."""
    connection = await asyncpg.connect(database_url)
    try:
        loaded = await load(connection, 100_000, merchants=1)
        key = await api_keys.create(connection, loaded.merchant_id, "csv")  # type: ignore[arg-type]
        return loaded.merchant_id, key.api_key
    finally:
        await connection.close()
