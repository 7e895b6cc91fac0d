"""The real senders against real servers the tests start on 127.0.0.1: an SMTP server
(aiosmtpd, with STARTTLS and implicit TLS under a CA the test makes) and an HTTP SMS gateway.
Senders are built the way qrloop builds them: settings.load, then real_sender."""

from __future__ import annotations

import asyncio
import datetime
import email
import email.policy
import ipaddress
import json
import logging
import re
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from qrloop.codes.format import to_typed
from qrloop.messages.configured import real_sender
from qrloop.messages.sender import Channel, Message, Sender, SendFailed
from qrloop.settings import load
from qrloop.webhooks.signature import verify
from support import Stores, eventually, fetch, free_port, serving

FROM = "qrloop 优惠 <no-reply@example.com>"
PASSWORD = "s3cret:p@ss"
GREETINGS = {
    "en": ("Your qrloop code", "Your one-time code is 123456. It expires in 10 minutes."),
    "zh-CN": ("您的 qrloop 验证码", "您的一次性验证码是 123456，10 分钟内有效。"),  # noqa: RUF001
}


def _sender(channel: Channel, **environ: str) -> Sender:
    sender = real_sender(channel, load(environ))
    assert sender is not None
    return sender


def _mail(recipient: str, message_id: int = 41, language: str = "en") -> Message:
    subject, body = GREETINGS[language]
    return Message(message_id, "email", recipient, subject, body)


# --- a certificate authority of the test's own ------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    server: ssl.SSLContext  # presents a certificate for 127.0.0.1 signed by the CA


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: str
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def _make_pki(folder: Path, name: str) -> Pki:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    server_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        _certificate(f"{name} CA", ca_key, f"{name} CA")
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        _certificate("127.0.0.1", server_key, f"{name} CA")
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir()
    ca_file, chain_file, key_file = folder / "ca.pem", folder / "server.pem", folder / "key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain_file, key_file)
    return Pki(ca_file, context)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return _make_pki(tmp_path_factory.mktemp("pki") / "trusted", "qrloop test")


@pytest.fixture(scope="module")
def stranger_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return _make_pki(tmp_path_factory.mktemp("pki") / "stranger", "someone else")


# --- an SMTP server ---------------------------------------------------------------------------


@dataclass
class Mailbox:
    """aiosmtpd handler: keeps what it accepts, answers chosen recipients with a refusal."""

    refusals: dict[str, str] = field(default_factory=dict)  # address → reply
    received: list[Envelope] = field(default_factory=list)
    logins: list[LoginPassword] = field(default_factory=list)
    port: int = 0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refusals:
            return self.refusals[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        self.received.append(envelope)
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        self.logins.append(auth_data)
        correct = auth_data == LoginPassword(b"qrloop", PASSWORD.encode())
        return AuthResult(success=correct, handled=False)  # unhandled: the server answers 535

    def mail(self) -> EmailMessage:
        (envelope,) = self.received
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@contextmanager
def smtp_server(**options: Any) -> Iterator[Mailbox]:
    mailbox = Mailbox(port=free_port())
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=mailbox.port,
        authenticator=mailbox.authenticate,
        **options,
    )
    controller.start()
    try:
        yield mailbox
    finally:
        controller.stop()


@contextmanager
def tls_smtp_server(pki: Pki) -> Iterator[Mailbox]:
    """A submission server that requires STARTTLS before anything and a login before mail."""
    with smtp_server(tls_context=pki.server, require_starttls=True, auth_required=True) as mailbox:
        yield mailbox


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with smtp_server() as plain:
        yield plain


def _plain_sender(port: int, timeout: str = "5") -> Sender:
    return _sender(
        "email",
        QRLOOP_SMTP_URL=f"smtp://127.0.0.1:{port}?starttls=false",
        QRLOOP_MESSAGES_FROM=FROM,
        QRLOOP_MESSAGES_TIMEOUT_SECONDS=timeout,
    )


def _logging_in_sender(
    port: int, ca_file: Path | None = None, password: str = "s3cret%3Ap%40ss"
) -> Sender:
    """Logs in as qrloop with PASSWORD, percent-encoded in the URL; STARTTLS required."""
    environ = {
        "QRLOOP_SMTP_URL": f"smtp://qrloop:{password}@127.0.0.1:{port}",
        "QRLOOP_MESSAGES_FROM": FROM,
    }
    if ca_file is not None:
        environ["QRLOOP_SMTP_CA_FILE"] = str(ca_file)
    return _sender("email", **environ)


@pytest.mark.parametrize("language", GREETINGS)
async def test_mail_arrives_with_its_headers_and_text_intact(
    mailbox: Mailbox, language: str
) -> None:
    """An English and a Chinese message arrive at the SMTP server from the From address, to
    the one recipient, with subject and body decoded intact and a Message-ID made of the
    outbox id (the same on every attempt)."""
    subject, body = GREETINGS[language]
    await _plain_sender(mailbox.port).send(_mail("ada@example.com", 41, language))

    (envelope,) = mailbox.received
    assert envelope.mail_from == "no-reply@example.com"
    assert envelope.rcpt_tos == ["ada@example.com"]
    mail = mailbox.mail()
    assert mail["From"].addresses[0].display_name == "qrloop 优惠"
    assert mail["From"].addresses[0].addr_spec == "no-reply@example.com"
    assert mail["To"] == "ada@example.com"
    assert mail["Subject"] == subject
    assert mail["Message-ID"] == "<qrloop-message-41@example.com>"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail.get_content_charset() == "utf-8"
    assert mail.get_content().replace("\r\n", "\n") == body + "\n"  # SMTP lines end in CRLF


async def test_a_recipient_refused_with_550_fails_permanently(mailbox: Mailbox) -> None:
    """A 5xx answer to RCPT (no such mailbox) is final: the failure is permanent."""
    mailbox.refusals["gone@example.com"] = "550 5.1.1 No such mailbox"
    with pytest.raises(SendFailed, match="550") as failed:
        await _plain_sender(mailbox.port).send(_mail("gone@example.com"))
    assert failed.value.permanent
    assert mailbox.received == []


async def test_a_recipient_deferred_with_450_is_retried(mailbox: Mailbox) -> None:
    """A 4xx answer to RCPT (mailbox busy, greylisting) is worth another try later."""
    mailbox.refusals["busy@example.com"] = "450 4.2.1 Mailbox busy, try again later"
    with pytest.raises(SendFailed, match="450") as failed:
        await _plain_sender(mailbox.port).send(_mail("busy@example.com"))
    assert not failed.value.permanent


async def test_no_mail_server_listening_is_retried() -> None:
    """A refused connection (the server is down) is a retryable failure."""
    with pytest.raises(SendFailed) as failed:
        await _plain_sender(free_port()).send(_mail("ada@example.com"))
    assert not failed.value.permanent


async def test_a_mail_server_that_never_greets_is_retried_after_the_timeout() -> None:
    """A server that accepts the connection and then says nothing is given up on after
    QRLOOP_MESSAGES_TIMEOUT_SECONDS, as a retryable failure."""
    silent: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda _, writer: silent.append(writer), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(SendFailed, match="Timeout") as failed:
            await _plain_sender(port, timeout="0.3").send(_mail("ada@example.com"))
        assert not failed.value.permanent
    finally:
        for writer in silent:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("recipient", "subject"),
    [
        pytest.param("ada@example.com, eve@example.com", "Your code", id="two recipients"),
        pytest.param("Ada <ada@example.com>\r\nBcc: eve@example.com", "Your code", id="Bcc line"),
        pytest.param("ada@example.com", "Your code\r\nBcc: eve@example.com", id="subject line"),
    ],
)
async def test_a_message_that_would_reach_someone_else_is_refused_unsent(
    mailbox: Mailbox, recipient: str, subject: str
) -> None:
    """Address-list and header injection: a recipient holding a second address, or a line
    break in the recipient or subject that would add a Bcc, is a permanent failure and
    nothing reaches the server (the code is never copied to an attacker's mailbox)."""
    message = Message(41, "email", recipient, subject, "Your one-time code is 123456.")
    with pytest.raises(SendFailed) as failed:
        await _plain_sender(mailbox.port).send(message)
    assert failed.value.permanent
    assert mailbox.received == []


async def test_starttls_under_a_private_ca_logs_in_and_delivers(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    """smtp:// upgrades with STARTTLS, verifies the server against QRLOOP_SMTP_CA_FILE, logs
    in with the percent-decoded credentials and delivers; nothing logged holds the password
    or the message body."""
    caplog.set_level(logging.DEBUG)
    with tls_smtp_server(pki) as mailbox:
        sender = _logging_in_sender(mailbox.port, pki.ca_file)
        await sender.send(_mail("ada@example.com", language="zh-CN"))
    assert mailbox.logins == [LoginPassword(b"qrloop", PASSWORD.encode())]
    assert mailbox.mail()["Subject"] == GREETINGS["zh-CN"][0]
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name != "mail.log")
    assert PASSWORD not in ours  # mail.log is the test server's own log, which shows all
    assert "123456" not in ours


async def test_refused_credentials_are_retried_not_dropped(pki: Pki) -> None:
    """A 535 to the login is the settings' fault, not the message's: it is retried (and
    leaves once the operator fixes the password) and names no password."""
    with tls_smtp_server(pki) as mailbox:
        sender = _logging_in_sender(mailbox.port, pki.ca_file, password="wrong-password")
        with pytest.raises(SendFailed, match="535") as failed:
            await sender.send(_mail("ada@example.com"))
    assert not failed.value.permanent
    assert "wrong-password" not in str(failed.value)
    assert mailbox.received == []


async def test_a_server_whose_certificate_the_ca_did_not_sign_never_gets_the_password(
    pki: Pki, stranger_pki: Pki
) -> None:
    """Man in the middle: a server presenting a certificate from another CA fails the TLS
    check before any login; the failure is retryable and no password or mail reached it."""
    with tls_smtp_server(stranger_pki) as impostor:
        sender = _logging_in_sender(impostor.port, pki.ca_file)
        with pytest.raises(SendFailed, match="CERTIFICATE_VERIFY_FAILED") as failed:
            await sender.send(_mail("ada@example.com"))
    assert not failed.value.permanent
    assert PASSWORD not in str(failed.value)
    assert impostor.logins == []
    assert impostor.received == []


async def test_a_server_that_offers_no_starttls_never_gets_the_password() -> None:
    """STARTTLS stripping: a server (or a man in the middle) that does not offer STARTTLS,
    even one willing to take a login in the clear, gets no login and no mail; the failure
    is retryable."""
    with smtp_server(auth_require_tls=False) as stripped:
        sender = _logging_in_sender(stripped.port)
        with pytest.raises(SendFailed, match="STARTTLS") as failed:
            await sender.send(_mail("ada@example.com"))
    assert not failed.value.permanent
    assert stripped.logins == []
    assert stripped.received == []


async def test_smtps_speaks_tls_from_the_first_byte(pki: Pki) -> None:
    """smtps:// connects with TLS at once (port 465 style) and delivers."""
    with smtp_server(ssl_context=pki.server) as mailbox:
        sender = _sender(
            "email",
            QRLOOP_SMTP_URL=f"smtps://127.0.0.1:{mailbox.port}",
            QRLOOP_SMTP_CA_FILE=str(pki.ca_file),
            QRLOOP_MESSAGES_FROM=FROM,
        )
        await sender.send(_mail("ada@example.com"))
    assert mailbox.mail()["Message-ID"] == "<qrloop-message-41@example.com>"


# --- an SMS gateway ---------------------------------------------------------------------------

TOKEN = "gw_token_0123456789"
SMS_TEXT = "您的 qrloop 验证码是 123456，10 分钟内有效。"  # noqa: RUF001 - Chinese punctuation


@dataclass
class Gateway:
    """An HTTP SMS gateway: records each request, answers `status`, or hangs when told."""

    url: str
    status: int = 202
    hang: bool = False
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    port = free_port()
    state = Gateway(f"http://127.0.0.1:{port}/v1/sms")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
            if state.hang:
                state.released.wait(30)
                return
            self.send_response(state.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.released.set()
        server.shutdown()
        server.server_close()
        thread.join()


def _sms_sender(url: str, timeout: str = "5", **environ: str) -> Sender:
    return _sender(
        "sms",
        QRLOOP_SMS_GATEWAY_URL=url,
        QRLOOP_MESSAGES_TIMEOUT_SECONDS=timeout,
        **environ,
    )


def _sms(recipient: str = "+8613800000000") -> Message:
    return Message(41, "sms", recipient, "ignored", SMS_TEXT)


async def test_an_sms_reaches_the_gateway_authenticated_idempotent_and_signed(
    gateway: Gateway,
) -> None:
    """The gateway gets `{"id", "to", "text"}` as UTF-8 JSON with the bearer token, the
    message id as Idempotency-Key, and a Qrloop-Signature that verifies with the token (and
    not with another key)."""
    await _sms_sender(gateway.url, QRLOOP_SMS_GATEWAY_TOKEN=TOKEN).send(_sms())

    ((headers, body),) = gateway.requests
    assert json.loads(body) == {"id": "41", "to": "+8613800000000", "text": SMS_TEXT}
    assert headers["content-type"] == "application/json"
    assert headers["authorization"] == f"Bearer {TOKEN}"
    assert headers["idempotency-key"] == "41"
    assert verify(TOKEN, headers["qrloop-signature"], body)
    assert not verify("another key", headers["qrloop-signature"], body)


async def test_without_a_token_no_credentials_or_signature_are_sent(gateway: Gateway) -> None:
    """A gateway configured without QRLOOP_SMS_GATEWAY_TOKEN gets the body and the
    Idempotency-Key, but no Authorization or signature header."""
    await _sms_sender(gateway.url).send(_sms())
    ((headers, _),) = gateway.requests
    assert "authorization" not in headers
    assert "qrloop-signature" not in headers
    assert headers["idempotency-key"] == "41"


@pytest.mark.parametrize(
    ("status", "permanent"),
    [(400, True), (401, True), (404, True), (422, True),
     (408, False), (429, False), (500, False), (503, False), (302, False)],
)  # fmt: skip
async def test_gateway_answers_decide_whether_to_retry(
    gateway: Gateway, status: int, permanent: bool
) -> None:
    """A 4xx other than 408 and 429 is final; 408, 429, a 5xx or anything else not 2xx is
    retried. The reason names the status and never holds the text (the one-time code)."""
    gateway.status = status
    with pytest.raises(SendFailed, match=str(status)) as failed:
        await _sms_sender(gateway.url, QRLOOP_SMS_GATEWAY_TOKEN=TOKEN).send(_sms())
    assert failed.value.permanent is permanent
    assert "123456" not in str(failed.value)


async def test_a_gateway_that_does_not_answer_in_time_is_retried(gateway: Gateway) -> None:
    """No answer within QRLOOP_MESSAGES_TIMEOUT_SECONDS is a retryable failure."""
    gateway.hang = True
    with pytest.raises(SendFailed, match="Timeout") as failed:
        await _sms_sender(gateway.url, timeout="0.3").send(_sms())
    assert not failed.value.permanent


async def test_a_gateway_that_is_down_is_retried() -> None:
    """A refused connection is a retryable failure."""
    with pytest.raises(SendFailed) as failed:
        await _sms_sender(f"http://127.0.0.1:{free_port()}/v1/sms").send(_sms())
    assert not failed.value.permanent


@pytest.mark.parametrize("recipient", ["13800000000", "+86 138-0000-0000", "+86138\n0000"])
async def test_a_recipient_not_in_e164_form_is_refused_unsent(
    gateway: Gateway, recipient: str
) -> None:
    """A phone number that was not normalised to E.164 fails permanently before any request."""
    with pytest.raises(SendFailed) as failed:
        await _sms_sender(gateway.url).send(_sms(recipient))
    assert failed.value.permanent
    assert gateway.requests == []


# --- the whole path: a claim's one-time code through the outbox to a mail server ---------------


def test_a_claim_by_email_is_mailed_and_leaves_no_address_behind(
    stores: Stores, tmp_path: Path
) -> None:
    """With QRLOOP_SMTP_URL set, a consumer's one-time code goes out through the worker's
    delivery loop to the mail server (not to the development sender), in the language the
    browser asked for; the code it carries claims the link; and once delivered, the outbox
    keeps neither the address nor the message."""
    with (
        smtp_server() as mailbox,
        serving(
            stores,
            tmp_path,
            QRLOOP_SMTP_URL=f"smtp://127.0.0.1:{mailbox.port}?starttls=false",
            QRLOOP_MESSAGES_FROM=FROM,
        ) as stack,
    ):
        merchant = stack.new_merchant()
        order = merchant.order(merchant.campaign(), 1)
        export = merchant.get(f"/v1/orders/{order['id']}/codes", format="csv").text
        code, _, link = export.splitlines()[1].split(",")
        link = link.removeprefix(stack.base_url)
        headers = {"Accept-Language": "zh-CN,zh;q=0.9"}
        with httpx.Client(base_url=stack.base_url, timeout=30, headers=headers) as browser:
            asked = browser.post(f"{link}/claim", data={"identifier": "Ana@Example.com"})
            assert asked.status_code == 303
            eventually(lambda: len(mailbox.received) == 1, within=30)
            mail = mailbox.mail()
            assert mail["To"] == "ana@example.com"
            one_time = re.search(r"\b(\d{6})\b", mail.get_content())
            assert one_time is not None
            assert mail["Subject"] == f"您的验证码：{one_time[1]}"  # noqa: RUF001
            assert browser.post(f"{link}/verify", data={"code": one_time[1]}).status_code == 303
            assert to_typed(code) in browser.get(link).text
        kept = fetch(stack, "SELECT status, recipient, body FROM consumer_messages")
    assert [(row["status"], row["recipient"], row["body"]) for row in kept] == [
        ("sent", None, None)
    ]
