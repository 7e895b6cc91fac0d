"""What `qrloop serve` does: hold the API's port, prepare the stores and the key ring, then run
the API, worker and signer processes (and the embedded servers, when those are ours) and
restart whichever dies, until a stop signal."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from types import FrameType

from qrloop import db, embedded, liveness
from qrloop.cli.common import on
from qrloop.cli.processes import METRICS_DIR, fresh_metrics_dir
from qrloop.codes.keyring import KeyRing, ensure_dev_keys
from qrloop.restarts import Restarter
from qrloop.settings import Settings

_PR_SET_PDEATHSIG = 1


def serve(settings: Settings) -> int:
    """Hold the port, prepare stores and keys, then supervise API and worker processes (and
    the embedded servers, when those are ours) until a signal."""
    # Until the supervisor loop takes over, a stop request unwinds start-up and what it began.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    with _listen(settings) as listener:
        if settings.database_url:
            return _supervise(settings, listener)
        print(f"starting embedded PostgreSQL and Valkey in {settings.data_dir}/ ...", flush=True)
        servers = embedded.EmbeddedServers(settings.data_dir)
        with servers as urls:
            return _supervise(on(settings, urls), listener, servers)


def _exit_on_signal(signum: int, _: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _listen(settings: Settings, timeout: float = 10.0) -> socket.socket:
    """Bind the API's port now, for every API process this serve will start: nothing can take
    it while the stores start, and a restarted API process cannot fail to bind. A previous
    run's API processes (say, after kill -9) get `timeout` seconds to let go of it."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.create_server((settings.host, settings.port), family=family)
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise SystemExit(
                    f"qrloop: cannot listen on {settings.host}:{settings.port}: {error.strerror}"
                ) from None
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"qrloop: {settings.host}:{settings.port} is in use; set QRLOOP_PORT"
                ) from None
        time.sleep(0.2)


def _prepare(settings: Settings) -> None:
    from qrloop.settlement.state import epochs_of

    assert settings.database_url and settings.redis_url
    if not settings.keyring_json:
        ring = KeyRing.load(settings.keyring_path)
        created = ensure_dev_keys(ring)
        if created:
            ring.save(settings.keyring_path)
            for entry in created:
                kind = f"{entry.purpose.value}, {entry.algorithm.value}"
                print(f"created development key {entry.id} ({kind}) in {settings.keyring_path}")

    async def stores_ready() -> list[int]:
        assert settings.database_url
        await db.migrate(settings.database_url, statement_cache=settings.statement_cache)
        return await epochs_of(settings)

    initialised = asyncio.run(stores_ready())
    if initialised:
        print(f"code state ready on partitions {initialised}")


def _supervise(
    settings: Settings,
    listener: socket.socket,
    servers: embedded.EmbeddedServers | None = None,
) -> int:
    """Run the API, worker and signer processes; restart one that dies (a settlement worker
    killed mid-batch must not take the tills down with it), and the embedded servers too, until
    a stop signal. Exit 1 when the first API process dies before it answers."""
    _prepare(settings)
    assert settings.database_url and settings.redis_url
    nonce = liveness.new_nonce()
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        METRICS_DIR: fresh_metrics_dir(settings),
        liveness.START_NONCE_ENV: nonce,
    }
    roles = ["api"] + (["worker", "signer"] if settings.run_worker else [])
    children = {role: _Child(role, env, listener if role == "api" else None) for role in roles}
    watched = [child.restarter for child in children.values()]
    if servers is not None:
        watched += _embedded_restarters(servers)
    stopping = False

    def request_stop(signum: int, _: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    announced, code = False, 0
    while not stopping:
        if not announced:
            announced = answers_as_ours(settings, nonce)
            if announced:
                print(
                    f"qrloop is serving at {settings.base_url}"
                    f"  (OpenAPI: {settings.base_url}/schema)",
                    flush=True,
                )
            elif children["api"].process.poll() is not None:
                print("qrloop: the API process exited before it answered", file=sys.stderr)
                code = 1
                break
        for restarter in watched:
            restarter.check()
        time.sleep(0.2)
    _stop_children([child.process for child in children.values()])
    return code


def _embedded_restarters(servers: embedded.EmbeddedServers) -> list[Restarter]:
    """Valkey restarts from its AOF and PostgreSQL recovers from its WAL, at the same sockets,
    so the API's and worker's connections find them again by themselves."""

    def down(running: Callable[[], bool]) -> Callable[[], str | None]:
        return lambda: None if running() else "is down"

    return [
        Restarter("the embedded Valkey", down(servers.valkey_running), servers.restart_valkey),
        Restarter(
            "the embedded PostgreSQL", down(servers.postgres_running), servers.restart_postgres
        ),
    ]


class _Child:
    """One supervised process, restarted (with backoff) after it dies."""

    def __init__(self, role: str, env: dict[str, str], listener: socket.socket | None) -> None:
        self.role, self._env = role, env
        # The API processes serve the socket `serve` holds, so they never bind it themselves.
        self._fds: tuple[int, ...] = ()
        if listener is not None:
            self._fds = (listener.fileno(),)
            self._env = {**env, liveness.LISTEN_FD_ENV: str(listener.fileno())}
        self.process = self._start()
        self.restarter = Restarter(f"the {role} process", self._exit, self._restart)

    def _start(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "qrloop", self.role],
            env=self._env,
            pass_fds=self._fds,
            preexec_fn=_die_with_parent,
        )

    def _exit(self) -> str | None:
        code = self.process.poll()
        if code is None:
            return None
        self._forget_live_gauges()
        return f"exited with {code}"

    def _restart(self) -> None:
        self.process = self._start()

    def _forget_live_gauges(self) -> None:
        """A dead process's gauges no longer describe anything; its counters still count."""
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(self.process.pid, self._env[METRICS_DIR])  # type: ignore[no-untyped-call]


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the supervisor dies, even by SIGKILL (Linux)."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def answers_as_ours(settings: Settings, nonce: str) -> bool:
    """Whether this start's own API process answers /health/live (it echoes the nonce)."""
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    url = f"http://{host}:{settings.port}/health/live"
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return liveness.answered_by(nonce, response.headers.get(liveness.START_NONCE_HEADER))
    except OSError:
        return False


def _stop_children(children: list[subprocess.Popen[bytes]], grace: float = 15.0) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
