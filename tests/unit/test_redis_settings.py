"""The Redis settings refuse, at start, what could not work: TLS files without TLS, half a
client certificate, files that do not load, an unknown durability, `replicated` on the
embedded Valkey (it has no replica)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qrloop.settings import SettingsError, load
from redis_servers import make_certificates

STORES = {"DATABASE_URL": "postgresql://db/qrloop"}


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"REDIS_URL": "redis://h/0", "QRLOOP_REDIS_TLS_CA": "ca.pem"}, "need a rediss://"),
        ({"REDIS_URL": "rediss://h/0", "QRLOOP_REDIS_TLS_CERT": "c.pem"}, "together"),
        ({"REDIS_URL": "rediss://h/0", "QRLOOP_REDIS_TLS_CA": "/no/such.pem"}, "TLS_CA"),
        ({"REDIS_URL": "redis://h/0", "QRLOOP_REDIS_DURABILITY": "fsync"}, "DURABILITY"),
        ({"REDIS_URL": "redis://h/0", "QRLOOP_REDIS_CONFIRM_MS": "0"}, "CONFIRM_MS"),
        ({"DATABASE_URL": "", "QRLOOP_REDIS_DURABILITY": "replicated"}, "embedded Valkey"),
    ],
)
def test_unusable_redis_settings_stop_the_start(environ: dict[str, str], message: str) -> None:
    """Each bad combination is refused with a message naming what to fix."""
    with pytest.raises(SettingsError, match=message):
        load({**STORES, **environ})


def test_tls_files_that_load_are_taken(tmp_path: Path) -> None:
    """A CA, a client certificate and its key that load are accepted with rediss://; a key
    that does not belong to the certificate is refused."""
    files = make_certificates(tmp_path)
    environ = {
        **STORES,
        "REDIS_URL": "rediss://qrloop:secret@127.0.0.1:6380/0",
        "QRLOOP_REDIS_TLS_CA": str(files.ca),
        "QRLOOP_REDIS_TLS_CERT": str(files.client_cert),
        "QRLOOP_REDIS_TLS_KEY": str(files.client_key),
    }
    assert load(environ).redis_tls_cert == files.client_cert
    with pytest.raises(SettingsError, match="TLS_CERT"):
        load({**environ, "QRLOOP_REDIS_TLS_KEY": str(files.server_key)})
