"""The real sender the settings configure for a channel, if any."""

from __future__ import annotations

from qrloop.messages.sender import Channel, Sender
from qrloop.messages.servers import smtp_server
from qrloop.messages.sms import SmsGatewaySender
from qrloop.messages.smtp import SmtpSender
from qrloop.settings import SMTP_WITHOUT_FROM, Settings, SettingsError


def real_sender(channel: Channel, settings: Settings) -> Sender | None:
    """SMTP for "email" when QRLOOP_SMTP_URL is set, the SMS gateway for "sms" when
    QRLOOP_SMS_GATEWAY_URL is set; None otherwise (delivery then uses the development sender).
    """
    if channel == "email" and settings.smtp_url:
        if not settings.messages_from:
            raise SettingsError(SMTP_WITHOUT_FROM)
        return SmtpSender(
            smtp_server(settings.smtp_url),
            settings.messages_from,
            timeout=settings.messages_timeout_seconds,
            ca_file=settings.smtp_ca_file,
        )
    if channel == "sms" and settings.sms_gateway_url:
        return SmsGatewaySender(
            settings.sms_gateway_url,
            settings.sms_gateway_token,
            timeout=settings.messages_timeout_seconds,
        )
    return None
