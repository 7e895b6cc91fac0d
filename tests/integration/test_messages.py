"""The consumer-message outbox and its delivery loop, against a real PostgreSQL, with a sender
of the test's own (the Sender protocol is all a sender is)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import asyncpg
import pytest

from qrloop import db
from qrloop.messages import outbox
from qrloop.messages.delivery import Courier
from qrloop.messages.dev import DevSender
from qrloop.messages.sender import Message, Sender, SendFailed
from support import Stores, own_stores


class Gateway:
    """A sender that fails as told, then delivers; it keeps what it was given."""

    def __init__(self, failures: dict[str, list[SendFailed]]) -> None:
        self.failures = failures
        self.delivered: list[Message] = []

    async def send(self, message: Message) -> None:
        planned = self.failures.get(message.recipient, [])
        if planned:
            raise planned.pop(0)
        self.delivered.append(message)


@pytest.fixture
def database(stores: Stores) -> Iterator[str]:
    with own_stores(stores) as fresh:
        yield fresh.database_url


@pytest.fixture
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:
    await db.migrate(database, progress=lambda _: None)
    created = await db.create_pool(database, 4)
    try:
        yield created
    finally:
        await created.close()


async def _until(probe: Callable[[], Awaitable[bool]], within: float) -> None:
    deadline = time.monotonic() + within
    while not await probe():
        assert time.monotonic() < deadline, f"did not happen within {within} s"
        await asyncio.sleep(0.05)


async def _delivering(
    pool: asyncpg.Pool, sender: Sender
) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    return stop, asyncio.create_task(Courier(pool, {"email": sender, "sms": sender}).run(stop))


async def test_a_real_senders_messages_keep_nothing_personal_once_delivered_or_given_up(
    pool: asyncpg.Pool,
) -> None:
    """A message a real sender delivered, possibly after a failure it retried, loses its
    recipient, subject and body; so does one refused for good (failed after one attempt)."""
    gateway = Gateway(
        {
            "+8613800000001": [SendFailed("gateway busy")],
            "gone@example.com": [SendFailed("no such mailbox", permanent=True)],
        }
    )
    stop, task = await _delivering(pool, gateway)
    ids = [
        await outbox.enqueue(pool, "email", "ana@example.com", "en", "otp", 600, code="123456"),
        await outbox.enqueue(pool, "sms", "+8613800000001", "zh-CN", "otp", 600, code="654321"),
        await outbox.enqueue(pool, "email", "gone@example.com", "en", "otp", 600, code="111111"),
    ]

    async def settled() -> bool:
        rows = await pool.fetch("SELECT status FROM consumer_messages WHERE id = ANY($1)", ids)
        return all(row["status"] != "pending" for row in rows)

    await _until(settled, within=15)
    stop.set()
    await task
    rows = {
        row["id"]: row
        for row in await pool.fetch("SELECT * FROM consumer_messages WHERE id = ANY($1)", ids)
    }
    assert [rows[i]["status"] for i in ids] == ["sent", "sent", "failed"]
    assert [rows[i]["attempts"] for i in ids] == [1, 2, 1]
    assert rows[ids[2]]["last_error"] == "no such mailbox"
    for row in rows.values():
        assert (row["recipient"], row["subject"], row["body"]) == (None, None, None)
    assert [(m.recipient, m.channel) for m in gateway.delivered] == [
        ("ana@example.com", "email"),
        ("+8613800000001", "sms"),
    ]
    assert "654321" in gateway.delivered[1].body
    assert "验证码" in gateway.delivered[1].body


async def test_the_development_senders_messages_are_kept_for_outbox_tail(
    pool: asyncpg.Pool,
) -> None:
    """The development sender delivers nothing, so its messages keep recipient and body, and
    `latest` lists them oldest first."""
    stop, task = await _delivering(pool, DevSender())
    for code in ("000001", "000002", "000003"):
        await outbox.enqueue(pool, "email", "dev@example.com", "en", "otp", 600, code=code)
    await outbox.wait_for_queued(pool, within=15)
    stop.set()
    await task
    shown = await outbox.latest(pool, DevSender.__name__, 2)
    assert [row["recipient"] for row in shown] == ["dev@example.com"] * 2
    assert ["000002" in shown[0]["body"], "000003" in shown[1]["body"]] == [True, True]
