"""The merchant dashboard over HTTP, as an attacker would try it: logins and their limits,
invitations, sessions and their cookies, CSRF, roles, and other merchants' ids."""

from __future__ import annotations

import hashlib
import itertools
import re
import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from dashboard_support import PASSWORD, Person, invited, member, owner_of
from qrloop import keyspace
from support import Merchant, Stack, Stores, fetchval, serving

_addresses = (f"198.51.100.{n}" for n in itertools.count(1))


@pytest.fixture(scope="module")
def dash(stores: Stores, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack with low login limits, behind a trusted proxy at 127.0.0.1 (so each test's
    person comes from an address of its own, by X-Forwarded-For)."""
    with serving(
        stores,
        tmp_path_factory.mktemp("dash"),
        QRLOOP_DASHBOARD_LOGINS_PER_ACCOUNT="3",
        QRLOOP_DASHBOARD_LOGINS_PER_IP="4",
        QRLOOP_TRUSTED_PROXIES="127.0.0.1/32",
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def shop(dash: Stack) -> Merchant:
    """A merchant whose owner has set PASSWORD."""
    merchant = dash.new_merchant("Cone & Co")
    assert Person(dash).set_password(merchant.owner_invite_url).status_code == 303
    return merchant


@pytest.fixture(scope="module")
def owner(dash: Stack, shop: Merchant) -> Person:
    """The shop's owner, logged in."""
    person = Person(dash)
    assert person.log_in(shop.owner_email).status_code == 303
    return person


def stranger(stack: Stack) -> Person:
    """A browser from an address no other test uses."""
    return Person(stack, next(_addresses))


def new_campaign(person: Person, name: str = "Free cone") -> int:
    answer = person.post(
        "/dashboard/campaigns", {"name": name, "face_value": "5.00", "currency": "CNY"}
    )
    assert answer.status_code == 303, answer.text
    return int(answer.headers["location"].rsplit("/", 1)[1])


def new_order(person: Person, campaign_id: int, quantity: int = 2) -> int:
    person.get(f"/dashboard/campaigns/{campaign_id}")
    answer = person.post(
        f"/dashboard/campaigns/{campaign_id}/orders",
        {"quantity": str(quantity), "idempotency_key": f"k{time.monotonic_ns()}"},
    )
    assert answer.status_code == 303, answer.text
    return int(answer.headers["location"].rsplit("/", 1)[1])


def plant(person: Person, session: str) -> None:
    """Give the browser this session cookie, as an attacker (or a replay) would."""
    person.client.cookies.set("qrloop_dashboard", session, domain="127.0.0.1", path="/dashboard")


def session_cookie(response: httpx.Response) -> str:
    [header] = [
        h for h in response.headers.get_list("set-cookie") if h.startswith("qrloop_dashboard=")
    ]
    return header


def test_merchants_create_needs_the_owners_email_and_creates_nothing_on_a_bad_one(
    dash: Stack,
) -> None:
    """Without a terminal to ask on, `merchants create` without --owner-email exits 2; with an
    email that is none, it exits 1 and no merchant is left behind (one transaction)."""
    merchants_before = fetchval(dash, "SELECT count(*) FROM merchants")
    missing = dash.cli("merchants", "create", "Nobody", check=False)
    assert missing.returncode == 2
    assert "--owner-email" in missing.stderr
    bad = dash.cli("merchants", "create", "Nobody", "--owner-email", "not-an-email", check=False)
    assert bad.returncode == 1
    assert "Not an email address" in bad.stderr
    assert fetchval(dash, "SELECT count(*) FROM merchants") == merchants_before


def test_an_invitation_sets_a_password_once_and_only_its_digest_is_stored(
    dash: Stack,
) -> None:
    """The owner's link sets a password (refusing a short one, or two that differ), then
    answers 404 like any unknown link; the database holds the link's SHA-256, not the link."""
    merchant = dash.new_merchant("Once")
    person = stranger(dash)
    path = httpx.URL(merchant.owner_invite_url).path
    token = path.rsplit("/", 1)[1]
    stored = fetchval(
        dash,
        "SELECT i.digest FROM dashboard_invitations i JOIN dashboard_users u ON u.id = i.user_id"
        " WHERE u.email = $1",
        merchant.owner_email,
    )
    assert stored == hashlib.sha256(token.encode()).digest()
    page = person.get(path)
    assert page.status_code == 200
    assert page.headers["referrer-policy"] == "no-referrer"
    short = person.post(path, {"password": "short", "again": "short"})
    assert short.status_code == 400
    assert "at least 12 characters" in short.text
    differ = person.post(path, {"password": PASSWORD, "again": PASSWORD + "!"})
    assert differ.status_code == 400
    assert person.post(path, {"password": PASSWORD, "again": PASSWORD}).status_code == 303
    assert person.get(path).status_code == 404
    again = person.post(path, {"password": "another password", "again": "another password"})
    assert again.status_code == 404
    assert person.log_in(merchant.owner_email).status_code == 303
    assert person.log_in(merchant.owner_email, "another password").status_code == 401


def test_an_expired_invitation_sets_nothing(dash: Stack) -> None:
    """A link past its hours is refused (404) and the person still has no password."""
    merchant = dash.new_merchant("Late")
    fetchval(
        dash,
        "UPDATE dashboard_invitations SET expires_at = now() - interval '1 second'"
        " WHERE user_id = (SELECT id FROM dashboard_users WHERE email = $1) RETURNING 1",
        merchant.owner_email,
    )
    person = stranger(dash)
    path = httpx.URL(merchant.owner_invite_url).path
    assert person.get(path).status_code == 404
    person.get("/dashboard/login")
    answer = person.post(path, {"password": PASSWORD, "again": PASSWORD})
    assert answer.status_code == 404
    assert (
        fetchval(
            dash, "SELECT password_hash FROM dashboard_users WHERE email = $1", merchant.owner_email
        )
        is None
    )


def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(
    dash: Stack, shop: Merchant, owner: Person
) -> None:
    """Same status, same message, the email kept in the form: nothing tells whether the email
    has an account."""
    wrong = stranger(dash).log_in(shop.owner_email, "not the password at all")
    unknown = stranger(dash).log_in("nobody@example.com", "not the password at all")
    assert wrong.status_code == unknown.status_code == 401
    messages = [re.findall(r'class="error"[^>]*>([^<]+)<', r.text) for r in (wrong, unknown)]
    assert messages[0] == messages[1] == ["Wrong email or password."]


def test_the_login_limit_per_account_refuses_even_the_right_password(
    dash: Stack,
) -> None:
    """After 3 attempts on one email (from different addresses) the 4th is 429 with
    Retry-After, even with the right password; unknown emails are limited the same way."""
    merchant = dash.new_merchant("Guessed")
    owner_of(merchant)  # password set, one success (which clears the count)
    for _ in range(3):
        assert stranger(dash).log_in(merchant.owner_email, "a wrong guess!").status_code == 401
    refused = stranger(dash).log_in(merchant.owner_email)
    assert refused.status_code == 429
    assert 0 < int(refused.headers["retry-after"]) <= 15 * 60
    for _ in range(3):
        stranger(dash).log_in("ghost@example.com", "a wrong guess!")
    assert stranger(dash).log_in("ghost@example.com", "a wrong guess!").status_code == 429


def test_the_login_limit_per_address_counts_failures_only(dash: Stack, shop: Merchant) -> None:
    """One address may fail 4 times (across emails) in the window, then is refused 429 for
    any email; successes from an address do not count against it."""
    address = next(_addresses)
    for _ in range(5):
        assert Person(dash, address).log_in(shop.owner_email).status_code == 303
    for n in range(4):
        guess = Person(dash, address).log_in(f"guess{n}@example.com", "a wrong guess!")
        assert guess.status_code == 401
    refused = Person(dash, address).log_in(shop.owner_email)
    assert refused.status_code == 429
    assert "retry-after" in refused.headers
    assert stranger(dash).log_in(shop.owner_email).status_code == 303


def test_a_success_clears_the_accounts_count(dash: Stack) -> None:
    """Two typos, a success, then two typos again: never refused."""
    merchant = dash.new_merchant("Typos")
    owner_of(merchant)
    for _ in range(2):
        assert stranger(dash).log_in(merchant.owner_email, "typo typo typo").status_code == 401
    assert stranger(dash).log_in(merchant.owner_email).status_code == 303
    for _ in range(2):
        assert stranger(dash).log_in(merchant.owner_email, "typo typo typo").status_code == 401
    assert stranger(dash).log_in(merchant.owner_email).status_code == 303


def test_login_emails_ignore_case(dash: Stack, owner: Person) -> None:
    """A person invited as Bob@Example.com logs in as bob@example.COM."""
    link = invited(owner, "Bob.Case@Example.com", "viewer")
    person = stranger(dash)
    assert person.set_password(link).status_code == 303
    assert person.log_in("bob.case@example.COM").status_code == 303


def test_session_cookie_flags_over_http(dash: Stack, shop: Merchant) -> None:
    """HttpOnly, SameSite=Lax, Path=/dashboard, and not Secure over plain http."""
    header = session_cookie(stranger(dash).log_in(shop.owner_email)).lower()
    assert "httponly" in header
    assert "samesite=lax" in header
    assert "path=/dashboard" in header
    assert "secure" not in header


def test_cookies_are_secure_behind_a_trusted_https_proxy(dash: Stack, shop: Merchant) -> None:
    """X-Forwarded-Proto: https from the trusted proxy (127.0.0.1 here) makes the form's and
    the session's cookies Secure."""
    client = httpx.Client(
        base_url=dash.base_url,
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": next(_addresses)},
    )
    page = client.get("/dashboard/login")
    form_cookie = page.headers["set-cookie"]
    assert form_cookie.startswith("qrloop_dashboard_form=")
    assert "secure" in form_cookie.lower()
    assert "samesite=strict" in form_cookie.lower()
    token = form_cookie.split(";")[0].split("=", 1)[1]
    answer = client.post(
        "/dashboard/login",
        data={"email": shop.owner_email, "password": PASSWORD, "csrf_token": token},
        headers={"Cookie": f"qrloop_dashboard_form={token}"},
    )
    assert answer.status_code == 303
    assert "secure" in session_cookie(answer).lower()


def test_a_session_id_planted_before_login_is_never_promoted(dash: Stack, shop: Merchant) -> None:
    """Session fixation: a cookie value chosen by an attacker before login is replaced by a
    new one at login, and the planted value opens nothing afterwards."""
    planted = "attacker-chosen-session-id-0123456789abcdef"
    victim = stranger(dash)
    plant(victim, planted)
    assert victim.log_in(shop.owner_email).status_code == 303
    assert victim.client.cookies.get("qrloop_dashboard") != planted
    attacker = stranger(dash)
    plant(attacker, planted)
    assert attacker.get("/dashboard/campaigns").status_code == 303


def test_logging_in_again_ends_the_previous_session(dash: Stack, shop: Merchant) -> None:
    """The session id is rotated at every login: the old one is ended server-side."""
    person = stranger(dash)
    person.log_in(shop.owner_email)
    first = person.client.cookies.get("qrloop_dashboard")
    person.log_in(shop.owner_email)
    second = person.client.cookies.get("qrloop_dashboard")
    assert first != second
    replay = stranger(dash)
    plant(replay, first or "")
    assert replay.get("/dashboard/campaigns").status_code == 303


def test_logout_ends_the_session_on_the_server(dash: Stack, shop: Merchant) -> None:
    """A cookie kept after logout (copied before it) opens nothing."""
    person = stranger(dash)
    person.log_in(shop.owner_email)
    token = person.client.cookies.get("qrloop_dashboard")
    person.get("/dashboard/campaigns")
    assert person.post("/dashboard/logout").status_code == 303
    replay = stranger(dash)
    plant(replay, token or "")
    assert replay.get("/dashboard/campaigns").status_code == 303


def test_a_session_past_its_absolute_lifetime_ends_however_busy(
    dash: Stack, shop: Merchant
) -> None:
    """Its idle expiry is the setting's (30 minutes); a session started more than 12 hours
    ago is refused and removed, though it was just used."""
    person = stranger(dash)
    person.log_in(shop.owner_email)
    token = person.client.cookies.get("qrloop_dashboard") or ""
    key = keyspace.dashboard_session(hashlib.sha256(token.encode()).hexdigest())
    client = redis.Redis.from_url(dash.stores.redis_url)
    try:
        assert 29 * 60 < client.ttl(key) <= 30 * 60
        assert person.get("/dashboard/campaigns").status_code == 200
        started = int(time.time() * 1000) - 12 * 3600 * 1000 - 1000
        client.hset(key, "started_ms", started)
        assert person.get("/dashboard/campaigns").status_code == 303
        assert client.exists(key) == 0
    finally:
        client.close()


def test_pages_send_the_user_to_login_and_back_forms_get_401(dash: Stack) -> None:
    """Without a session a page answers 303 to the login page with `next`; a form post is
    401 problem+json."""
    person = stranger(dash)
    page = person.client.get("/dashboard/campaigns?status=paused")
    assert page.status_code == 303
    assert (
        page.headers["location"]
        == "/dashboard/login?next=%2Fdashboard%2Fcampaigns%3Fstatus%3Dpaused"
    )
    form = person.client.post("/dashboard/campaigns", data={"name": "x"})
    assert form.status_code == 401
    assert form.headers["content-type"].startswith("application/problem+json")


def test_login_returns_only_to_dashboard_pages(dash: Stack, shop: Merchant) -> None:
    """`next` may name a dashboard page; another site (`//evil.example`, `https://…`) or a
    path out of the dashboard sends the person to the dashboard's home instead."""
    for target, landing in (
        ("/dashboard/api-keys", "/dashboard/api-keys"),
        ("//evil.example/dashboard/", "/dashboard/"),
        ("https://evil.example/", "/dashboard/"),
        ("/dashboard/..//evil.example", "/dashboard/"),
        ("/dashboard/\\evil.example", "/dashboard/"),
    ):
        person = stranger(dash)
        person.get("/dashboard/login")
        answer = person.post(
            "/dashboard/login", {"email": shop.owner_email, "password": PASSWORD, "next": target}
        )
        assert answer.headers.get("location") == landing, (
            target,
            answer.status_code,
            answer.text[:300],
        )


def test_forms_without_the_sessions_csrf_token_are_refused_403(
    dash: Stack, owner: Person, shop: Merchant
) -> None:
    """Missing, wrong, or another session's token: 403 problem+json, and nothing is made."""
    other = stranger(dash)
    other.log_in(shop.owner_email)
    other.get("/dashboard/campaigns")
    owner.get("/dashboard/campaigns")
    before = fetchval(dash, "SELECT count(*) FROM campaigns")
    fields = {"name": "Forged", "face_value": "1", "currency": "CNY"}
    for token in (None, "", "wrong", other.csrf):
        sent = fields if token is None else {**fields, "csrf_token": token}
        answer = owner.client.post("/dashboard/campaigns", data=sent)
        assert answer.status_code == 403, token
        assert answer.json()["reason"] == "forbidden"
        assert "CSRF" in answer.json()["detail"]
    assert fetchval(dash, "SELECT count(*) FROM campaigns") == before


def test_the_login_form_needs_its_csrf_token_too(dash: Stack, shop: Merchant) -> None:
    """Login CSRF: a login posted from elsewhere (without this browser's form token) is
    refused 403 and starts no session."""
    person = stranger(dash)
    answer = person.client.post(
        "/dashboard/login", data={"email": shop.owner_email, "password": PASSWORD}
    )
    assert answer.status_code == 403
    assert "qrloop_dashboard=" not in answer.headers.get("set-cookie", "")


def test_a_viewer_reads_but_cannot_act(dash: Stack, owner: Person) -> None:
    """A viewer sees campaigns and orders, but creating, editing, pausing, ordering and
    downloading codes are 403, and API keys and users are not for them."""
    campaign = new_campaign(owner, "Viewer's view")
    order = new_order(owner, campaign)
    viewer = member(owner, dash, "viewer@cone.example.com", "viewer")
    assert viewer.get("/dashboard/campaigns").status_code == 200
    assert viewer.get(f"/dashboard/campaigns/{campaign}").status_code == 200
    assert viewer.get(f"/dashboard/orders/{order}").status_code == 200
    for path in (
        "/dashboard/campaigns",
        f"/dashboard/campaigns/{campaign}",
        f"/dashboard/campaigns/{campaign}/pause",
        f"/dashboard/campaigns/{campaign}/orders",
        "/dashboard/api-keys",
        "/dashboard/users",
    ):
        answer = viewer.post(path, {"name": "x", "quantity": "1", "label": "x", "email": "a@b.com"})
        assert answer.status_code == 403, path
        assert answer.json()["reason"] == "forbidden"
    for path in (
        "/dashboard/campaigns/new",
        f"/dashboard/orders/{order}/codes?format=csv",
        "/dashboard/api-keys",
        "/dashboard/users",
    ):
        assert viewer.get(path).status_code == 403, path
    assert fetchval(dash, "SELECT paused FROM campaigns WHERE id = $1", campaign) is False


def test_a_manager_runs_campaigns_but_not_keys_or_people(dash: Stack, owner: Person) -> None:
    """A manager creates, pauses and orders, and downloads codes; API keys and users are
    403."""
    manager = member(owner, dash, "manager@cone.example.com", "manager")
    campaign = new_campaign(manager, "Manager's")
    manager.get(f"/dashboard/campaigns/{campaign}")
    assert manager.post(f"/dashboard/campaigns/{campaign}/pause").status_code == 303
    assert fetchval(dash, "SELECT paused FROM campaigns WHERE id = $1", campaign) is True
    order = new_order(manager, campaign)
    assert manager.get("/dashboard/api-keys").status_code == 403
    assert manager.get("/dashboard/users").status_code == 403
    assert (
        manager.post("/dashboard/users", {"email": "x@y.com", "role": "owner"}).status_code == 403
    )
    assert manager.get(f"/dashboard/orders/{order}").status_code == 200


def test_another_merchants_ids_are_404(dash: Stack, owner: Person) -> None:
    """Campaigns, orders (page, events, codes), API keys and users of another merchant are
    answered 404, as ids nobody has, and nothing of theirs changes."""
    rival = dash.new_merchant("Rival")
    rival_owner = owner_of(rival)
    campaign = new_campaign(rival_owner, "Rival's")
    order = new_order(rival_owner, campaign)
    rival_key = fetchval(dash, "SELECT min(id) FROM api_keys WHERE merchant_id = $1", rival.id)
    rival_user = fetchval(
        dash, "SELECT id FROM dashboard_users WHERE email = $1", rival.owner_email
    )
    owner.get("/dashboard/campaigns")
    for path in (
        f"/dashboard/campaigns/{campaign}",
        f"/dashboard/orders/{order}",
        f"/dashboard/orders/{order}/events",
        f"/dashboard/orders/{order}/codes?format=pdf",
    ):
        assert owner.get(path).status_code == 404, path
    for path, fields in (
        (f"/dashboard/campaigns/{campaign}", {"name": "Mine now"}),
        (f"/dashboard/campaigns/{campaign}/pause", {}),
        (f"/dashboard/campaigns/{campaign}/orders", {"quantity": "5"}),
        (f"/dashboard/api-keys/{rival_key}/revoke", {}),
        (f"/dashboard/users/{rival_user}/role", {"role": "viewer"}),
        (f"/dashboard/users/{rival_user}/remove", {}),
    ):
        assert owner.post(path, fields).status_code == 404, path
    assert fetchval(dash, "SELECT name FROM campaigns WHERE id = $1", campaign) == "Rival's"
    assert fetchval(dash, "SELECT revoked_at FROM api_keys WHERE id = $1", rival_key) is None
    assert rival_owner.get("/dashboard/users").status_code == 200


def test_the_last_owner_stays(dash: Stack) -> None:
    """The only owner can neither demote nor remove themselves (409); with a second owner,
    they can."""
    merchant = dash.new_merchant("Solo")
    owner = owner_of(merchant)
    me = fetchval(dash, "SELECT id FROM dashboard_users WHERE email = $1", merchant.owner_email)
    owner.get("/dashboard/users")
    assert owner.post(f"/dashboard/users/{me}/role", {"role": "manager"}).status_code == 409
    assert owner.post(f"/dashboard/users/{me}/remove").status_code == 409
    member(owner, dash, "second.owner@solo.example.com", "owner")
    owner.get("/dashboard/users")
    assert owner.post(f"/dashboard/users/{me}/role", {"role": "manager"}).status_code == 303
    # Now a manager: the users page is closed to them at once.
    assert owner.get("/dashboard/users").status_code == 403


def test_a_removed_person_is_logged_out_at_once(dash: Stack, owner: Person) -> None:
    """Removing someone ends their open session at its next request."""
    leaving = member(owner, dash, "leaving@cone.example.com", "manager")
    assert leaving.get("/dashboard/campaigns").status_code == 200
    user_id = fetchval(
        dash, "SELECT id FROM dashboard_users WHERE email = 'leaving@cone.example.com'"
    )
    owner.get("/dashboard/users")
    assert owner.post(f"/dashboard/users/{user_id}/remove").status_code == 303
    assert leaving.get("/dashboard/campaigns").status_code == 303
    assert stranger(dash).log_in("leaving@cone.example.com").status_code == 401


def test_an_email_with_an_account_elsewhere_cannot_be_invited(
    dash: Stack, owner: Person, shop: Merchant
) -> None:
    """One email is one person: inviting another merchant's owner is a 409 on the page."""
    other = dash.new_merchant("Elsewhere")
    owner.get("/dashboard/users")
    answer = owner.post("/dashboard/users", {"email": other.owner_email, "role": "viewer"})
    assert answer.status_code == 409
    assert "already has a dashboard account" in answer.text
    assert (
        fetchval(
            dash, "SELECT merchant_id FROM dashboard_users WHERE email = $1", other.owner_email
        )
        == other.id
    )


def test_an_api_key_is_shown_once_then_listed_by_prefix(dash: Stack, owner: Person) -> None:
    """The created key is on the answer (no-store) and works on the API; the list shows only
    its prefix; revoking it refuses it at once."""
    owner.get("/dashboard/api-keys")
    created = owner.post("/dashboard/api-keys", {"label": "till integration"})
    assert created.status_code == 201
    assert created.headers["cache-control"] == "no-store"
    key = re.search(r'id="new-key">([^<]+)<', created.text)
    assert key is not None
    api_key = key.group(1)
    api = httpx.get(f"{dash.base_url}/v1/campaigns", headers={"Authorization": f"Bearer {api_key}"})
    assert api.status_code == 200
    listing = owner.get("/dashboard/api-keys")
    assert api_key not in listing.text
    assert api_key[:16] in listing.text
    key_id = fetchval(dash, "SELECT max(id) FROM api_keys WHERE label = 'till integration'")
    assert owner.post(f"/dashboard/api-keys/{key_id}/revoke").status_code == 303
    refused = httpx.get(
        f"{dash.base_url}/v1/campaigns", headers={"Authorization": f"Bearer {api_key}"}
    )
    assert refused.status_code == 401


def test_pages_carry_a_strict_content_security_policy(dash: Stack, owner: Person) -> None:
    """No script but the page's hashed one, styles from our own stylesheet, no framing, never
    cached."""
    page = owner.get("/dashboard/campaigns")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'sha256-" in policy
    assert "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert page.headers["cache-control"] == "no-store"
    sheet = httpx.get(dash.base_url + re.findall(r'href="(/static/dashboard/[^"]+)"', page.text)[0])
    assert sheet.status_code == 200
    assert sheet.headers["content-type"].startswith("text/css")


def test_a_bad_form_is_explained_on_the_page_and_makes_nothing(dash: Stack, owner: Person) -> None:
    """A face value with too many decimals, an unknown timezone, bad hours or a quantity of
    zero: 400 with the form and its reason, nothing created."""
    owner.get("/dashboard/campaigns/new")
    before = fetchval(dash, "SELECT count(*) FROM campaigns")
    for fields, reason in (
        ({"face_value": "5.001"}, "not an amount of CNY"),
        ({"timezone": "Mars/Olympus"}, "Unknown timezone"),
        ({"hours": "25:00-26:00"}, "hours"),
        ({"name": ""}, "name"),
    ):
        answer = owner.post(
            "/dashboard/campaigns",
            {"name": "Bad", "face_value": "5", "currency": "CNY", **fields},
        )
        assert answer.status_code == 400, fields
        assert reason.lower() in answer.text.lower(), (fields, answer.text)
    assert fetchval(dash, "SELECT count(*) FROM campaigns") == before
    campaign = new_campaign(owner, "Zero")
    owner.get(f"/dashboard/campaigns/{campaign}")
    zero = owner.post(f"/dashboard/campaigns/{campaign}/orders", {"quantity": "0"})
    assert zero.status_code == 400
    assert fetchval(dash, "SELECT count(*) FROM orders WHERE campaign_id = $1", campaign) == 0


def test_a_refusal_is_a_page_for_a_browser_and_problem_json_for_a_script(
    dash: Stack, owner: Person
) -> None:
    """The same 403 (role too low) and 404 (no such campaign): an HTML page under the
    dashboard's policy when the client asks for HTML, problem+json otherwise."""
    viewer = member(owner, dash, "reader@cone.example.com", "viewer")
    for path, status in (("/dashboard/users", 403), ("/dashboard/campaigns/999999999", 404)):
        page = viewer.client.get(path, headers={"Accept": "text/html,*/*;q=0.8"})
        assert page.status_code == status
        assert page.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert f'data-reason="{"forbidden" if status == 403 else "not_found"}"' in page.text
        problem = viewer.client.get(path)
        assert problem.status_code == status
        assert problem.headers["content-type"].startswith("application/problem+json")


def test_the_operator_lets_a_locked_out_owner_back_in(dash: Stack) -> None:
    """`qrloop merchants invite` gives a person who forgot their password a one-time link:
    the new password works, the old one does not, the session open under the old one ends,
    and their role stays; another merchant's person cannot be reached this way."""
    merchant = dash.new_merchant("Forgetful")
    before = owner_of(merchant)
    link = dash.cli("merchants", "invite", str(merchant.id), "--email", merchant.owner_email)
    url = link.stdout.strip().removeprefix("invite_url=")
    person = stranger(dash)
    assert person.set_password(url, "a brand new password").status_code == 303
    assert before.get("/dashboard/campaigns").status_code == 303
    assert stranger(dash).log_in(merchant.owner_email).status_code == 401
    after = stranger(dash)
    assert after.log_in(merchant.owner_email, "a brand new password").status_code == 303
    assert after.get("/dashboard/users").status_code == 200  # still the owner
    other = dash.new_merchant("Someone else")
    refused = dash.cli(
        "merchants", "invite", str(merchant.id), "--email", other.owner_email, check=False
    )
    assert refused.returncode == 1
    assert "already has a dashboard account" in refused.stderr


def test_a_nul_in_any_form_field_is_a_400_never_a_500(dash: Stack, owner: Person) -> None:
    """PostgreSQL text cannot hold NUL: every form refuses it as bad input, whichever field."""
    campaign = new_campaign(owner, "Nul")
    me = fetchval(dash, "SELECT min(id) FROM dashboard_users WHERE role = 'owner'")
    forms = {
        "/dashboard/campaigns": ["name", "face_value", "currency", "timezone", "hours"],
        f"/dashboard/campaigns/{campaign}": ["name", "timezone", "valid_from", "hours"],
        f"/dashboard/campaigns/{campaign}/orders": ["quantity", "idempotency_key"],
        "/dashboard/api-keys": ["label"],
        "/dashboard/users": ["email", "role"],
        f"/dashboard/users/{me}/role": ["role"],
    }
    valid = {
        "name": "N",
        "face_value": "1",
        "currency": "CNY",
        "timezone": "UTC",
        "quantity": "1",
        "label": "L",
        "email": "nul@example.com",
        "role": "viewer",
    }
    owner.get("/dashboard/campaigns")
    for path, fields in forms.items():
        for field in fields:
            answer = owner.post(path, {**valid, field: "a\x00b"})
            assert answer.status_code == 400, (path, field, answer.status_code)
    for path in ("/dashboard/login", "/dashboard/set-password/x"):
        person = stranger(dash)
        person.get("/dashboard/login")
        fields = {"email": "a\x00@example.com", "password": "p\x00" * 8, "again": "p\x00" * 8}
        assert person.post(path, fields).status_code == 400, path


def test_changing_ones_password_ends_every_other_session(dash: Stack) -> None:
    """The current password is asked again (a wrong one changes nothing); the new one works,
    the old one does not, another browser's session ends, and this browser goes on with a new
    session id."""
    merchant = dash.new_merchant("Careful")
    here = owner_of(merchant)
    elsewhere = stranger(dash)
    assert elsewhere.log_in(merchant.owner_email).status_code == 303
    here.get("/dashboard/account")
    wrong = here.post(
        "/dashboard/account/password",
        {"current": "not my password", "password": "a new password!", "again": "a new password!"},
    )
    assert wrong.status_code == 400
    assert elsewhere.get("/dashboard/campaigns").status_code == 200
    before = here.client.cookies.get("qrloop_dashboard")
    changed = here.post(
        "/dashboard/account/password",
        {"current": PASSWORD, "password": "a new password!", "again": "a new password!"},
    )
    assert changed.status_code == 303
    assert here.client.cookies.get("qrloop_dashboard") != before
    assert here.get("/dashboard/account", follow=True).status_code == 200
    assert "Your password is changed." in here.get("/dashboard/account", changed="true").text
    assert elsewhere.get("/dashboard/campaigns").status_code == 303
    assert stranger(dash).log_in(merchant.owner_email).status_code == 401
    assert stranger(dash).log_in(merchant.owner_email, "a new password!").status_code == 303
