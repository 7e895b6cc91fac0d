"""Settings of the real message senders: checked strictly at start, secrets kept out of errors."""

from __future__ import annotations

import pytest

from qrloop.messages.configured import real_sender
from qrloop.messages.servers import SmtpServer, smtp_server
from qrloop.messages.sms import SmsGatewaySender
from qrloop.messages.smtp import SmtpSender
from qrloop.settings import Settings, SettingsError, load

FROM = "qrloop <no-reply@example.com>"


def test_smtp_urls_name_host_port_tls_and_credentials() -> None:
    """smtp:// defaults to port 587 with STARTTLS required, smtps:// to 465 with TLS from the
    start; user and password are percent-decoded; `starttls=false` is for a local relay."""
    assert smtp_server("smtp://qrloop:p%40ss%3Aword@mail.example.com") == SmtpServer(
        "mail.example.com", 587, implicit_tls=False, starttls=True,
        username="qrloop", password="p@ss:word",
    )  # fmt: skip
    assert smtp_server("smtps://mail.example.com") == SmtpServer(
        "mail.example.com", 465, implicit_tls=True, starttls=False
    )
    assert smtp_server("smtp://127.0.0.1:25?starttls=false") == SmtpServer(
        "127.0.0.1", 25, implicit_tls=False, starttls=False
    )


def test_the_smtp_password_is_not_in_the_servers_repr() -> None:
    """A parsed server printed or logged by accident does not show its password."""
    assert "hunter2" not in repr(smtp_server("smtp://qrloop:hunter2@mail.example.com"))


@pytest.mark.parametrize(
    "url",
    [
        "http://qrloop:hunter2@mail.example.com",
        "mail.example.com:587",
        "smtp://qrloop:hunter2@",
        "smtp://qrloop:hunter2@mail.example.com/path",
        "smtp://qrloop:hunter2@mail.example.com?starttls=maybe",
        "smtp://qrloop:hunter2@mail.example.com?tls=true",
        "smtps://qrloop:hunter2@mail.example.com?starttls=true",
        "smtp://qrloop:hunter2@mail.example.com?starttls=false",
        "smtp://qrloop:hunter2@mail.example.com:99999",
        "smtp://:hunter2@mail.example.com:70000",
        "smtp://qrloop@mail.example.com",
    ],
)
def test_a_bad_smtp_url_stops_qrloop_naming_the_variable_not_the_password(url: str) -> None:
    """A wrong scheme, no host, a path, an unknown or bad option, STARTTLS on smtps://, a
    password that would travel unencrypted, a bad port or half the credentials is refused
    at start with a message naming QRLOOP_SMTP_URL and never the password."""
    with pytest.raises(SettingsError, match=r"^QRLOOP_SMTP_URL: ") as refused:
        load({"QRLOOP_SMTP_URL": url, "QRLOOP_MESSAGES_FROM": FROM})
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"QRLOOP_SMTP_URL": "smtp://mail.example.com"}, "QRLOOP_MESSAGES_FROM"),
        ({"QRLOOP_MESSAGES_FROM": "no-reply"}, "QRLOOP_MESSAGES_FROM"),
        ({"QRLOOP_MESSAGES_FROM": "a@example.com, b@example.com"}, "QRLOOP_MESSAGES_FROM"),
        ({"QRLOOP_MESSAGES_FROM": "x@例子.中国"}, "QRLOOP_MESSAGES_FROM"),
        ({"QRLOOP_SMTP_CA_FILE": "/nonexistent/ca.pem"}, "QRLOOP_SMTP_CA_FILE"),
        ({"QRLOOP_SMS_GATEWAY_URL": "ftp://sms.example.com"}, "QRLOOP_SMS_GATEWAY_URL"),
        ({"QRLOOP_SMS_GATEWAY_URL": "https://"}, "QRLOOP_SMS_GATEWAY_URL"),
        ({"QRLOOP_SMS_GATEWAY_URL": "http://sms.example.com/send"}, "QRLOOP_SMS_GATEWAY_URL"),
        ({"QRLOOP_MESSAGES_TIMEOUT_SECONDS": "0"}, "QRLOOP_MESSAGES_TIMEOUT_SECONDS"),
    ],
)
def test_other_bad_message_settings_stop_qrloop_naming_the_variable(
    environ: dict[str, str], variable: str
) -> None:
    """SMTP without a From, a From that is not one address with an ASCII domain, a CA file
    that does not load, a gateway URL that is not https (plain http only to loopback, so
    the token never crosses a network in the clear) or a zero timeout is refused at start."""
    with pytest.raises(SettingsError, match=variable):
        load(environ)


def test_sms_gateway_on_this_machine_may_use_plain_http() -> None:
    """A gateway on loopback (a sidecar) may be reached over http; https anywhere."""
    for url in ("http://127.0.0.1:9000/sms", "http://localhost/sms", "https://sms.example.com"):
        assert load({"QRLOOP_SMS_GATEWAY_URL": url}).sms_gateway_url == url


def test_no_real_sender_without_its_settings() -> None:
    """With neither SMTP nor a gateway set, both channels get None: the development sender."""
    settings = load({})
    assert real_sender("email", settings) is None
    assert real_sender("sms", settings) is None


def test_each_channel_gets_the_sender_its_settings_name() -> None:
    """QRLOOP_SMTP_URL gives "email" an SMTP sender and QRLOOP_SMS_GATEWAY_URL gives "sms" the
    gateway sender, each only for its own channel."""
    only_smtp = load({"QRLOOP_SMTP_URL": "smtps://mail.example.com", "QRLOOP_MESSAGES_FROM": FROM})
    assert isinstance(real_sender("email", only_smtp), SmtpSender)
    assert real_sender("sms", only_smtp) is None
    only_sms = load({"QRLOOP_SMS_GATEWAY_URL": "https://sms.example.com"})
    assert isinstance(real_sender("sms", only_sms), SmsGatewaySender)
    assert real_sender("email", only_sms) is None


def test_settings_made_in_code_still_need_a_from_address() -> None:
    """Settings built without `load` (which checks them) cannot give an SMTP sender that has
    no From address either."""
    with pytest.raises(SettingsError, match="QRLOOP_MESSAGES_FROM"):
        real_sender("email", Settings(smtp_url="smtps://mail.example.com"))
