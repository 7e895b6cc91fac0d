"""How a message leaves qrloop: one sender per channel, chosen by settings.

The outbox hands each due message to the sender of its channel; a sender either delivers it
or raises SendFailed, and the outbox decides whether and when to try again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

Channel = Literal["email", "sms"]


@dataclass(frozen=True, slots=True)
class Message:
    """One message to one consumer, already rendered in their language."""

    id: int  # the outbox row; senders pass it on as the message's id where the protocol has one
    channel: Channel
    recipient: str  # an email address, or a phone number in E.164 form
    subject: str  # the email subject; SMS senders ignore it
    body: str  # plain text


class SendFailed(Exception):
    """The message did not leave. `permanent` when trying again cannot help (say, an address
    the server refuses); otherwise the outbox retries later."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent


class Sender(Protocol):
    """Delivers messages of one channel."""

    async def send(self, message: Message) -> None:
        """Deliver `message` or raise SendFailed."""
        ...
