"""Every connection qrloop makes to Redis starts here.

The URL names the server and, for an ACL user, `user:password@`; `rediss://` is TLS, checked
against QRLOOP_REDIS_TLS_CA (else the system's CAs), presenting QRLOOP_REDIS_TLS_CERT and
QRLOOP_REDIS_TLS_KEY when the server asks for a client certificate. The hot-path pipe and the
redis-py clients get them alike, so no path reaches Redis another way.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import redis.asyncio as redis

from qrloop.redemption.pipe import RedisPipe

if TYPE_CHECKING:
    from qrloop.settings import Settings

TLS_SCHEME = "rediss"


def uses_tls(url: str) -> bool:
    return urlsplit(url).scheme == TLS_SCHEME


def tls_context(ca: Path | None, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    """A client context that verifies the server's certificate and name, and presents the
    client certificate when one is given. Raises ValueError naming what it cannot load."""
    try:
        context = ssl.create_default_context(cafile=ca)
    except OSError as error:  # ssl.SSLError included
        raise ValueError(f"QRLOOP_REDIS_TLS_CA: cannot load {ca}: {error}") from None
    if cert is not None:
        try:
            context.load_cert_chain(cert, key)
        except OSError as error:
            raise ValueError(
                f"QRLOOP_REDIS_TLS_CERT, QRLOOP_REDIS_TLS_KEY: cannot load {cert}: {error}"
            ) from None
    return context


class RedisConnector:
    """Makes connections to one Redis/Valkey URL with the deployment's TLS files."""

    def __init__(
        self,
        url: str,
        ca: Path | None = None,
        cert: Path | None = None,
        key: Path | None = None,
    ) -> None:
        self.url = url
        self._tls = uses_tls(url)
        self._ca, self._cert, self._key = ca, cert, key

    @classmethod
    def of(cls, settings: Settings, url: str | None = None) -> RedisConnector:
        """For `url` (else the settings' REDIS_URL) with the settings' TLS files."""
        found = url or settings.redis_url
        assert found, "no Redis URL"
        return cls(found, settings.redis_tls_ca, settings.redis_tls_cert, settings.redis_tls_key)

    def client(self, **options: Any) -> redis.Redis:
        """A redis-py asyncio client (a connection pool); `options` as redis.Redis takes."""
        if self._tls:
            options |= {
                "ssl_cert_reqs": "required",
                "ssl_ca_certs": _text(self._ca),
                "ssl_certfile": _text(self._cert),
                "ssl_keyfile": _text(self._key),
            }
        return redis.Redis.from_url(self.url, **options)

    def pipe(self, **options: Any) -> RedisPipe:
        """The hot path's auto-pipelining connection; `options` as RedisPipe takes."""
        context = tls_context(self._ca, self._cert, self._key) if self._tls else None
        return RedisPipe(self.url, ssl=context, **options)


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)
