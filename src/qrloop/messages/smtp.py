"""The email sender: one SMTP connection per message, TLS verified, mail in UTF-8.

A server's 5xx answer to the recipient or to the message itself is final (RFC 5321: do not
repeat the request), so the failure is permanent. Anything else (no connection, a timeout, a
4xx, a certificate that does not verify, refused credentials) is retried: the message may
well leave once the server or the settings are right. Neither the password nor the message
body ever appears in a failure's reason.
"""

from __future__ import annotations

import email.utils
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib

from qrloop.messages.sender import Message, SendFailed
from qrloop.messages.servers import SmtpServer, one_address, tls_context


class SmtpSender:
    """Delivers messages of the "email" channel through one SMTP server."""

    def __init__(
        self, server: SmtpServer, from_address: str, *, timeout: float, ca_file: Path | None
    ) -> None:
        self._server = server
        self._from = one_address(from_address)
        self._timeout = timeout
        self._tls = tls_context(ca_file)

    async def send(self, message: Message) -> None:
        mail = self._compose(message)
        server = self._server
        try:
            await aiosmtplib.send(
                mail,
                sender=self._from.addr_spec,
                recipients=[mail["To"].addresses[0].addr_spec],
                hostname=server.host,
                port=server.port,
                username=server.username,
                password=server.password,
                use_tls=server.implicit_tls,
                start_tls=server.starttls,
                tls_context=self._tls,
                timeout=self._timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as refused:
            answer = refused.recipients[0]
            raise SendFailed(
                f"the mail server refused the recipient: {answer.code} {answer.message}",
                permanent=answer.code >= 500,
            ) from None
        except aiosmtplib.SMTPDataError as refused:
            raise SendFailed(
                f"the mail server refused the message: {refused.code} {refused.message}",
                permanent=refused.code >= 500,
            ) from None
        except (aiosmtplib.SMTPException, OSError) as error:  # OSError: TLS, sockets, timeouts
            raise SendFailed(f"the mail was not handed over: {_describe(error)}") from None

    def _compose(self, message: Message) -> EmailMessage:
        """The mail for `message`; a recipient or subject that cannot be one header is final."""
        mail = EmailMessage()
        try:
            mail["To"] = one_address(message.recipient)
            mail["Subject"] = message.subject  # refuses line breaks: no header injection
        except ValueError as error:
            raise SendFailed(f"cannot address the mail: {error}", permanent=True) from None
        mail["From"] = self._from
        mail["Date"] = email.utils.formatdate(usegmt=True)
        # The same id on every attempt, so a mailbox that gets a retry twice can tell.
        mail["Message-ID"] = f"<qrloop-message-{message.id}@{self._from.domain}>"
        mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to it
        mail.set_content(message.body)  # UTF-8; the client picks 8bit or a 7-bit encoding
        return mail


def _describe(error: Exception) -> str:
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return f"{type(error).__name__} {error.code} {error.message}"
    return f"{type(error).__name__}: {error}"[:300]
