"""`qrloop orders watch ID`: a progress bar for an order being signed, and how fast it went."""

from __future__ import annotations

import asyncio
import time
from typing import TextIO

from qrloop.db import connect

WIDTH = 30
POLL_SECONDS = 0.5
FINISHED = {"done", "failed", "cancelled"}

# `seconds`: from the order being placed to its last block written, as PostgreSQL stamped
# them (the signer sets finished_at in the statement that counts the last block).
_ORDER = """
SELECT status, done, quantity, extract(epoch FROM finished_at - created_at)::float8 AS seconds
FROM orders WHERE id = $1
"""


def bar(done: int, total: int, rate: float | None, status: str) -> str:
    """`[#######.......]  45%  450,000/1,000,000  180,000 codes/s  ETA 3 s  running`; the
    rate (and ETA) only once there is one."""
    filled = WIDTH * done // total if total else WIDTH
    speed = f"  {rate:,.0f} codes/s" if rate is not None else ""
    eta = f"  ETA {round((total - done) / rate)} s" if rate and done < total else ""
    return (
        f"[{'#' * filled}{'.' * (WIDTH - filled)}] {100 * done // max(total, 1):3d}%"
        f"  {done:,}/{total:,}{speed}{eta}  {status}"
    )


def summary(codes: int, seconds: float) -> str:
    """`100,000 codes in 812 ms (123,153 codes/s)`: the rate over the order's whole life."""
    rate = f" ({codes / seconds:,.0f} codes/s)" if seconds > 0 else ""
    return f"{codes:,} codes in {_duration(seconds)}{rate}"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def _redraw(out: TextIO, line: str) -> None:
    """Draw `line` over the previous one; on a terminal, also erase what is left of a longer
    previous line (the rate and ETA go when the order finishes)."""
    out.write("\r" + line + ("\x1b[K" if out.isatty() else ""))
    out.flush()


async def watch(database_url: str, order_id: int, out: TextIO, statement_cache: bool = True) -> int:
    """Redraw the bar until the order finishes, then say how long it took; exit status 0 only
    when it is done. The bar's rate is the last poll's; the final one is the order's own."""
    connection = await connect(database_url, statement_cache=statement_cache)
    try:
        last: tuple[int, float] | None = None
        while True:
            row = await connection.fetchrow(_ORDER, order_id)
            if row is None:
                out.write(f"no order {order_id}\n")
                return 1
            now = time.monotonic()
            rate = (row["done"] - last[0]) / (now - last[1]) if last and now > last[1] else None
            last = row["done"], now
            if row["status"] in FINISHED:
                _redraw(out, bar(row["done"], row["quantity"], None, row["status"]))
                out.write("\n")
                if row["status"] == "done":
                    out.write(summary(row["done"], row["seconds"]) + "\n")
                return 0 if row["status"] == "done" else 1
            _redraw(out, bar(row["done"], row["quantity"], rate, row["status"]))
            await asyncio.sleep(POLL_SECONDS)
    finally:
        await connection.close()
