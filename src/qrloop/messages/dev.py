"""The development sender: writes each message to the server log instead of delivering it.

Chosen while no real sender is configured, so the embedded default works with no mail server;
its messages stay in the outbox for `qrloop outbox tail`.
"""

from __future__ import annotations

import logging

from qrloop.messages.sender import Message

log = logging.getLogger("qrloop.messages")


class DevSender:
    """Delivers nothing; logs what it would have sent."""

    async def send(self, message: Message) -> None:
        log.info(
            "development sender, message %d by %s to %s: %s",
            message.id, message.channel, message.recipient, message.body,
        )  # fmt: skip
