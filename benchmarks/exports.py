"""Where a CSV export comes from, when API processes share no filesystem: three ways, one run.

* file: the signer's file (the design before issue 12), read back in 256 KiB chunks off the
  event loop, as the API process streamed it. Needs one filesystem shared by signers and API
  processes. The page cache is warm (the file was just written), as it was for a download
  right after signing.
* derived: the rows made again from (campaign, serial, key) in a worker process of the API
  process (`exports.in_worker_process` over `codes.bulk.rows_parallel`, one process), as the
  JSON, PNG, SVG and PDF exports already are. Needs nothing stored.
* postgres: the CSV kept in PostgreSQL, one bytea row per block of 50,000 codes, written as
  the signer would write it (one INSERT per block, each in its own transaction) and read back
  block by block. Reports what it stores per code (table with TOAST, after pglz) and the WAL
  it writes per code.

Each is timed to the last byte of the stream, with the CPU every process involved spent
(the caller and its worker processes; for postgres, the caller and the server's processes).
Variants alternate within each round. Writes the "## Export source" section of RESULTS.md.

    .venv/bin/python benchmarks/exports.py [--codes 1000000] [--ed25519-codes 50000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import psutil
from machine import describe
from results import publish

from qrloop.codes.bulk import CSV_HEADER, rows_parallel
from qrloop.codes.keyring import Algorithm, KeyEntry, KeyRing, Purpose
from qrloop.embedded import EmbeddedServers
from qrloop.issuance.exports import in_worker_process

SECTION = "## Export source"
BLOCK = 50_000
READ_CHUNK = 256 * 1024
CLAIM_BASE = "https://qr.example.com/c/"
CAMPAIGN = 7


class CpuMeter(threading.Thread):
    """CPU seconds used by a set of process trees from now on, sampled every 50 ms so that
    processes which exit in between (pool workers) are still counted up to their last sample."""

    def __init__(self, roots: Callable[[], list[psutil.Process]]) -> None:
        super().__init__(daemon=True)
        self._roots = roots
        self._seen: dict[int, float] = {}
        self._sample()
        self._start = dict(self._seen)  # processes born later start from zero
        self.done = threading.Event()

    def _sample(self) -> None:
        for root in self._roots():
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            for process in tree:
                try:
                    times = process.cpu_times()
                except psutil.Error:
                    continue
                self._seen[process.pid] = times.user + times.system

    def run(self) -> None:
        while not self.done.wait(0.05):
            self._sample()

    def seconds(self) -> float:
        self.done.set()
        self.join()
        self._sample()
        return sum(used - self._start.get(pid, 0.0) for pid, used in self._seen.items())


@dataclass
class Run:
    variant: str
    algorithm: str
    codes: int
    seconds: float
    cpu_seconds: float
    api_cpu_seconds: float  # of which the reading process's own (all its threads)
    extra: dict[str, float]

    @property
    def rate(self) -> float:
        return self.codes / self.seconds


async def _drain(stream: AsyncIterator[bytes]) -> int:
    size = 0
    async for chunk in stream:
        size += len(chunk)
    return size


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    """The signer's file as the API process streamed it before issue 12."""
    file = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(file.read, READ_CHUNK):
            yield chunk
    finally:
        file.close()


def _write_file(path: Path, key: KeyEntry, codes: int) -> None:
    """The signer's file, block by block, each block fsynced (as the signer wrote it)."""
    with path.open("wb") as file:
        file.write(CSV_HEADER)
        for block in rows_parallel(key, CAMPAIGN, 0, codes, CLAIM_BASE, "csv", 2, BLOCK):
            file.write(block)
            file.flush()
            os.fsync(file.fileno())


def _derived_rows(key: KeyEntry, codes: int) -> Iterator[bytes]:
    yield CSV_HEADER
    yield from rows_parallel(key, CAMPAIGN, 0, codes, CLAIM_BASE, "csv", 1, BLOCK)


def _measure(
    roots: Callable[[], list[psutil.Process]], work: Callable[[], object]
) -> tuple[float, float, float, object]:
    """Wall seconds, CPU seconds of the trees, CPU seconds of this process, and the result."""
    meter = CpuMeter(roots)
    meter.start()
    own, start = time.process_time(), time.perf_counter()
    result = work()
    elapsed, own = time.perf_counter() - start, time.process_time() - own
    return elapsed, meter.seconds(), own, result


def file_run(folder: Path, key: KeyEntry, codes: int) -> Run:
    path = folder / f"order-{key.algorithm.value}.csv"
    if not path.exists():
        _write_file(path, key, codes)
    me = psutil.Process()
    *times, size = _measure(lambda: [me], lambda: asyncio.run(_drain(_file_chunks(path))))
    return Run("file", key.algorithm.value, codes, *times, {"bytes": float(str(size))})


def derived_run(key: KeyEntry, codes: int) -> Run:
    me = psutil.Process()
    stream = lambda: in_worker_process(_derived_rows, key, codes)  # noqa: E731
    *times, size = _measure(lambda: [me], lambda: asyncio.run(_drain(stream())))
    return Run("derived", key.algorithm.value, codes, *times, {"bytes": float(str(size))})


_TABLE = """CREATE TABLE IF NOT EXISTS export_blocks
    (order_id bigint, block int, rows bytea NOT NULL, PRIMARY KEY (order_id, block))"""


async def _pg_write(database_url: str, order_id: int, blocks: list[bytes]) -> dict[str, float]:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(_TABLE)
        wal_before = await connection.fetchval("SELECT pg_current_wal_insert_lsn()")
        start = time.perf_counter()
        for number, block in enumerate(blocks):
            async with connection.transaction():
                await connection.execute(
                    "INSERT INTO export_blocks VALUES ($1, $2, $3)", order_id, number, block
                )
        elapsed = time.perf_counter() - start
        wal = await connection.fetchval(
            "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1)", wal_before
        )
        stored = await connection.fetchval(
            "SELECT sum(pg_column_size(rows)) FROM export_blocks WHERE order_id = $1", order_id
        )
        return {"write_seconds": elapsed, "wal_bytes": float(wal), "stored_bytes": float(stored)}
    finally:
        await connection.close()


async def _pg_read(database_url: str, order_id: int) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        size, block = 0, 0
        while True:
            rows = await connection.fetchval(
                "SELECT rows FROM export_blocks WHERE order_id = $1 AND block = $2",
                order_id,
                block,
            )
            if rows is None:
                return size
            size += len(rows)
            block += 1
    finally:
        await connection.close()


def postgres_run(database_url: str, server: psutil.Process, key: KeyEntry, codes: int) -> Run:
    blocks = list(rows_parallel(key, CAMPAIGN, 0, codes, CLAIM_BASE, "csv", 2, BLOCK))
    blocks[0] = CSV_HEADER + blocks[0]
    order_id = time.monotonic_ns()
    me = psutil.Process()
    roots = lambda: [me, server]  # noqa: E731
    _, write_cpu, _, written = _measure(
        roots, lambda: asyncio.run(_pg_write(database_url, order_id, blocks))
    )
    *times, size = _measure(roots, lambda: asyncio.run(_pg_read(database_url, order_id)))
    assert isinstance(written, dict)
    extra = {**written, "write_cpu": write_cpu, "bytes": float(str(size))}
    return Run("postgres", key.algorithm.value, codes, *times, extra)


def _postmaster(database_url: str) -> psutil.Process:
    """The server's postmaster: every backend, the WAL writer and the checkpointer are its
    children."""

    async def find() -> psutil.Process:
        connection = await asyncpg.connect(database_url)
        try:
            backend = psutil.Process(await connection.fetchval("SELECT pg_backend_pid()"))
            parent = backend.parent()
            assert parent is not None
            return parent
        finally:
            await connection.close()

    return asyncio.run(find())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codes", type=int, default=1_000_000)
    parser.add_argument("--ed25519-codes", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    ring = KeyRing()
    keys = [
        (ring.generate(Purpose.CODE, Algorithm.HMAC_SHA256), args.codes),
        (ring.generate(Purpose.CODE, Algorithm.ED25519), args.ed25519_codes),
    ]
    folder = Path(tempfile.mkdtemp(prefix="qrloop-bench-exports-"))
    runs: list[Run] = []
    try:
        with EmbeddedServers(folder / "stores") as urls:
            server = _postmaster(urls.database_url)
            for round_no in range(args.rounds):
                for key, codes in keys:
                    for variant in ("file", "derived", "postgres"):
                        if variant == "file":
                            run = file_run(folder, key, codes)
                        elif variant == "derived":
                            run = derived_run(key, codes)
                        else:
                            run = postgres_run(urls.database_url, server, key, codes)
                        print(round_no + 1, run, flush=True)
                        runs.append(run)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    publish(SECTION, report(runs, args), write=not args.no_write)


def _median(runs: list[Run], value: Callable[[Run], float]) -> float:
    return statistics.median(value(run) for run in runs)


def report(runs: list[Run], args: argparse.Namespace) -> str:
    rows = []
    for algorithm in ("hmac-sha256", "ed25519"):
        for variant in ("file", "derived", "postgres"):
            cell = [r for r in runs if r.variant == variant and r.algorithm == algorithm]
            if not cell:
                continue
            codes = cell[0].codes
            rate = _median(cell, lambda r: r.rate)
            cpu_us = _median(cell, lambda r: r.cpu_seconds / r.codes * 1e6)
            api_us = _median(cell, lambda r: r.api_cpu_seconds / r.codes * 1e6)
            row_bytes = cell[0].extra["bytes"] / codes
            stored = write = wal = "0"
            if variant == "file":
                stored = f"{row_bytes:.0f} (file)"
            if variant == "postgres":
                stored = f"{_median(cell, lambda r: r.extra['stored_bytes']) / codes:.0f}"
                write = (
                    f"{_median(cell, lambda r: r.extra['write_seconds']):.2f} s,"
                    f" {_median(cell, lambda r: r.extra['write_cpu'] / r.codes * 1e6):.2f}"
                    " CPU µs/code"
                )
                wal = f"{_median(cell, lambda r: r.extra['wal_bytes']) / codes:.0f}"
            rows.append(
                f"| {algorithm} | {codes:,} | {variant} | {rate:,.0f} | {codes / rate:.2f} s"
                f" | {cpu_us:.2f} | {api_us:.2f} | {row_bytes:.0f} | {stored} | {write} | {wal} |"
            )
    return "\n".join(
        [
            SECTION,
            "",
            f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `.venv/bin/python"
            f" benchmarks/exports.py --codes {args.codes} --ed25519-codes {args.ed25519_codes}"
            f" --rounds {args.rounds}`; embedded PostgreSQL (fsync on).",
            "",
            *describe(),
            "",
            "Medians of the rounds. *Read*: from the first byte asked for to the last byte of the"
            " CSV in the API process. *CPU*: every process involved (the reader and its worker"
            " process; for postgres also the server), per code; *API*: the reading process's"
            " own share, which competes with the tills. *Stored*: bytes per code kept"
            " (the file; PostgreSQL's column after TOAST compression); *write* and *WAL*: what"
            " putting the CSV into PostgreSQL costs at signing time.",
            "",
            "| codes | count | source | codes/s read | read time | CPU µs/code read"
            " | API µs/code | CSV bytes/code | stored bytes/code | write | WAL bytes/code |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|---|---:|",
            *rows,
            "",
        ]
    )


if __name__ == "__main__":
    main()
