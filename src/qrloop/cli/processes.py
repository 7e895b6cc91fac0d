"""`qrloop serve`, and the processes it runs, each also a command of its own: `api`, `worker`
and `signer`."""

from __future__ import annotations

import os
import shutil
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

    import uvicorn

    from qrloop.cli.common import Commands
    from qrloop.settings import Settings

# qrloop.metrics.MULTIPROC_DIR_VARIABLE: importing that module would load prometheus_client,
# which reads the variable once, before `run_api` sets it.
METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"

_SERVE = """\
Hold the API's port, start the stores (the embedded PostgreSQL and Valkey in QRLOOP_DATA_DIR
unless DATABASE_URL and REDIS_URL are set), apply migrations, make a development key ring if
there is none, then run and supervise the API, a settlement worker and an order signer until
Ctrl-C, restarting whatever dies."""


def register(commands: Commands) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the API, a settlement worker and an order signer",
        description=_SERVE,
    )
    serve.set_defaults(run=cmd_serve)
    both = "DATABASE_URL and REDIS_URL"
    for name, run, what, needs in (
        ("api", cmd_api, "run API processes only", both),
        ("worker", cmd_worker, "run a settlement worker only", both),
        ("signer", cmd_signer, "run an order signer only", "DATABASE_URL"),
    ):
        command = commands.add_parser(
            name,
            help=what,
            description=f"{what[0].upper()}{what[1:]}, as `qrloop serve` does; needs {needs}.",
        )
        command.set_defaults(run=run)


def cmd_serve(settings: Settings, _: argparse.Namespace) -> int:
    from qrloop.cli.supervisor import serve

    return serve(settings)


def cmd_api(settings: Settings, _: argparse.Namespace) -> int:
    if not (settings.database_url and settings.redis_url):
        raise SystemExit("qrloop api: set DATABASE_URL and REDIS_URL (or use `qrloop serve`)")
    run_api(settings)
    return 0


def cmd_worker(settings: Settings, _: argparse.Namespace) -> int:
    import asyncio

    from qrloop.settlement.worker import serve

    if not (settings.database_url and settings.redis_url):
        raise SystemExit("qrloop worker: set DATABASE_URL and REDIS_URL (or use `qrloop serve`)")
    asyncio.run(serve(settings))
    return 0


def cmd_signer(settings: Settings, _: argparse.Namespace) -> int:
    import asyncio

    from qrloop.issuance.signer import serve

    if not settings.database_url:
        raise SystemExit("qrloop signer: set DATABASE_URL (or use `qrloop serve`)")
    asyncio.run(serve(settings))
    return 0


def run_api(settings: Settings, factory: str = "qrloop.app:create_asgi") -> None:
    """Serve the ASGI app from `factory` in QRLOOP_API_PROCESSES processes, as `qrloop api` does."""
    import uvicorn

    if not os.environ.get(METRICS_DIR):  # else `serve`, or the operator, made it
        os.environ[METRICS_DIR] = fresh_metrics_dir(settings)

    config = uvicorn.Config(
        factory,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.api_processes,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level=settings.log_level,
        # Uvicorn would take X-Forwarded-For from any local peer as the client's address;
        # qrloop reads it only from QRLOOP_TRUSTED_PROXIES (claim/client_address.py).
        proxy_headers=False,
    )
    if not _serve_on(uvicorn.Server(config), listening_socket(config)):
        raise SystemExit(3)  # as uvicorn.run: the app did not start


def listening_socket(config: uvicorn.Config) -> socket.socket:
    """Under `serve`, the socket it holds; run alone, the address in the settings.

    Not uvicorn's own `fd=`: it takes every passed socket for a Unix one, so the event loop
    never sets TCP_NODELAY on the connections, and each answer waited 40 ms for the client's
    delayed ACK (Nagle). `socket(fileno=…)` reads the socket's real family."""
    from qrloop import liveness

    listen_fd = os.environ.get(liveness.LISTEN_FD_ENV)
    return socket.socket(fileno=int(listen_fd)) if listen_fd else config.bind_socket()


def _serve_on(server: uvicorn.Server, listener: socket.socket) -> bool:
    """Serve in this process, or in QRLOOP_API_PROCESSES processes; False if it never
    started."""
    from uvicorn.supervisors import Multiprocess

    if server.config.workers > 1:
        Multiprocess(server.config, sockets=[listener]).run()
        return True
    server.run(sockets=[listener])
    return server.started


def fresh_metrics_dir(settings: Settings) -> str:
    """An empty folder for this run's metric files (see qrloop.metrics), under the data dir:
    a previous run's files would add its counts to this run's. It must be in the environment
    before any process of the run imports prometheus_client, which reads it once."""
    folder = settings.data_dir.resolve() / "metrics"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, mode=0o700)
    return str(folder)
