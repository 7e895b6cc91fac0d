"""`qrloop orders watch ID`: a progress bar for an order being signed."""

from __future__ import annotations

import asyncio
import time
from typing import TextIO

from qrloop.db import connect

WIDTH = 30
POLL_SECONDS = 0.5
FINISHED = {"done", "failed", "cancelled"}


def bar(done: int, total: int, rate: float, status: str) -> str:
    """`[#######.......]  45%  450,000/1,000,000  180,000 codes/s  ETA 3 s  running`"""
    filled = WIDTH * done // total if total else WIDTH
    eta = f"ETA {round((total - done) / rate)} s" if rate > 0 and done < total else ""
    return (
        f"[{'#' * filled}{'.' * (WIDTH - filled)}] {100 * done // max(total, 1):3d}%"
        f"  {done:,}/{total:,}  {rate:,.0f} codes/s  {eta}  {status}"
    )


async def watch(database_url: str, order_id: int, out: TextIO, statement_cache: bool = True) -> int:
    """Redraw the bar until the order finishes; exit status 0 only when it is done."""
    connection = await connect(database_url, statement_cache=statement_cache)
    try:
        last_done, last_time, rate = None, time.monotonic(), 0.0
        while True:
            row = await connection.fetchrow(
                "SELECT status, done, quantity FROM orders WHERE id = $1", order_id
            )
            if row is None:
                out.write(f"no order {order_id}\n")
                return 1
            now = time.monotonic()
            if last_done is not None and now > last_time:
                rate = (row["done"] - last_done) / (now - last_time)
            last_done, last_time = row["done"], now
            out.write("\r" + bar(row["done"], row["quantity"], rate, row["status"]))
            out.flush()
            if row["status"] in FINISHED:
                out.write("\n")
                return 0 if row["status"] == "done" else 1
            await asyncio.sleep(POLL_SECONDS)
    finally:
        await connection.close()
