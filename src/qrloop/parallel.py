"""Worker process pools that never outlive the process that asked for them.

Pools start from a fork server (forking a process that runs threads is unsafe). A fork
server's children hold its liveness pipe open, so after a kill -9 of the owner neither they
nor the fork server would notice and exit; each worker therefore watches its owner's pid and
leaves when the owner is gone.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any, TypeVar

OWNER_CHECK_SECONDS = 1.0
T = TypeVar("T")
BACKGROUND_NICENESS = 10


def process_pool(
    processes: int, initializer: Callable[..., None], initargs: tuple[Any, ...]
) -> ProcessPoolExecutor:
    """A fork-server pool whose workers run `initializer(*initargs)` and die with this process."""
    return ProcessPoolExecutor(
        processes,
        mp_context=multiprocessing.get_context("forkserver"),
        initializer=_start,
        initargs=(os.getpid(), initializer, initargs),
    )


def _start(owner: int, initializer: Callable[..., None], initargs: tuple[Any, ...]) -> None:
    threading.Thread(target=_leave_with, args=(owner,), daemon=True).start()
    initializer(*initargs)


def _leave_with(owner: int) -> None:
    while True:
        time.sleep(OWNER_CHECK_SECONDS)
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            os._exit(1)


def lower_priority() -> None:
    """Let the scheduler run this process behind the API processes: on a busy machine a
    merchant's bulk work must take CPU from the tills' answers as little as possible."""
    os.nice(BACKGROUND_NICENESS)


async def run_in_pool(pool: Executor, function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` in `pool`, awaited without blocking the event loop. The submit itself
    runs in a thread: a pool's first submit starts its processes and waits for the fork
    server, which takes seconds on a busy machine."""
    future = await asyncio.to_thread(pool.submit, function, *args)
    return await asyncio.wrap_future(future)
