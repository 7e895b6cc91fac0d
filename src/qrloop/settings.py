"""Typed settings read from the environment and validated once, at start."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import phonenumbers

from qrloop import redis_client
from qrloop.claim import client_address
from qrloop.messages import servers

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Positive = Annotated[int, msgspec.Meta(ge=1)]


class SettingsError(Exception):
    """A setting has a value qrloop cannot use; the message names it."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Every knob qrloop reads, with the environment variable that sets it."""

    database_url: str | None = None
    redis_url: str | None = None
    redis_tls_ca: Path | None = None
    redis_tls_cert: Path | None = None
    redis_tls_key: Path | None = None
    redis_durability: Literal["local", "replicated"] = "local"
    redis_confirm_ms: Annotated[int, msgspec.Meta(ge=10, le=10_000)] = 500
    host: str = "127.0.0.1"
    port: Port = 8000
    public_url: str | None = None
    data_dir: Path = Path(".qrloop")
    keys_dir: Path = Path("keys")
    keyring_json: str | None = None
    partitions: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 16
    api_processes: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    run_worker: bool = True
    token_ttl_seconds: Annotated[int, msgspec.Meta(ge=60, le=86400)] = 900
    signer_processes: Annotated[int, msgspec.Meta(ge=1, le=64)] = 2
    signer_stale_seconds: Annotated[int, msgspec.Meta(ge=1, le=3600)] = 30
    settlement_consumers: Annotated[int, msgspec.Meta(ge=1, le=32)] = 2
    db_pool_size: Annotated[int, msgspec.Meta(ge=1, le=100)] = 10
    # `transaction`: DATABASE_URL is a PgBouncer (or like pooler) in transaction mode, which
    # hands each transaction to any server connection: no prepared statement outlives its
    # statement, and nothing LISTENs through it.
    database_pool_mode: Literal["session", "transaction"] = "session"
    database_listen_url: str | None = None
    partition_months_ahead: Annotated[int, msgspec.Meta(ge=1, le=24)] = 2
    invalid_scans_per_minute: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 10
    fast_path: bool = True
    webhook_retry_hours: Annotated[float, msgspec.Meta(gt=0, le=168)] = 24.0
    webhook_first_retry_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 10.0
    webhook_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 10.0
    webhook_private_networks: bool = False
    smtp_url: str | None = None
    smtp_ca_file: Path | None = None
    messages_from: str | None = None
    sms_gateway_url: str | None = None
    sms_gateway_token: str | None = None
    messages_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 10.0
    log_level: str = "info"
    phone_region: str = "CN"
    metrics_token: str | None = None
    probe_port: Port | None = None
    quota_outstanding_codes: Annotated[int, msgspec.Meta(ge=0)] = 100_000_000
    quota_orders_per_day: Annotated[int, msgspec.Meta(ge=0)] = 1_000
    otp_sends_per_link_hour: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 10
    otp_sends_per_pool_hour: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 100
    otp_sends_per_pool_code_hour: Annotated[int, msgspec.Meta(ge=0, le=100)] = 2
    otp_sends_per_ip_hour: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 30
    trusted_proxies: str | None = None
    lookups_per_key_minute: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 60
    dashboard_idle_minutes: Annotated[int, msgspec.Meta(ge=1, le=24 * 60)] = 30
    dashboard_session_hours: Annotated[int, msgspec.Meta(ge=1, le=24 * 30)] = 12
    dashboard_logins_per_account: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 5
    dashboard_logins_per_ip: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 30
    dashboard_invitation_hours: Annotated[int, msgspec.Meta(ge=1, le=24 * 30)] = 72

    @property
    def base_url(self) -> str:
        """The address consumers and tills reach, without a trailing slash."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def webhook_retry_seconds(self) -> float:
        """How long a delivery is retried after its event, before it is marked failed."""
        return self.webhook_retry_hours * 3600

    @property
    def statement_cache(self) -> bool:
        """Whether database connections may keep prepared statements (asyncpg's cache)."""
        return self.database_pool_mode == "session"

    @property
    def keyring_path(self) -> Path:
        return self.keys_dir / "keyring.json"


# Environment variable → field. Unprefixed names follow the twelve-factor convention.
ENVIRONMENT = {
    "DATABASE_URL": "database_url",
    "REDIS_URL": "redis_url",
    "QRLOOP_REDIS_TLS_CA": "redis_tls_ca",
    "QRLOOP_REDIS_TLS_CERT": "redis_tls_cert",
    "QRLOOP_REDIS_TLS_KEY": "redis_tls_key",
    "QRLOOP_REDIS_DURABILITY": "redis_durability",
    "QRLOOP_REDIS_CONFIRM_MS": "redis_confirm_ms",
    "QRLOOP_HOST": "host",
    "QRLOOP_PORT": "port",
    "QRLOOP_PUBLIC_URL": "public_url",
    "QRLOOP_DATA_DIR": "data_dir",
    "QRLOOP_KEYS_DIR": "keys_dir",
    "QRLOOP_KEYRING": "keyring_json",
    "QRLOOP_PARTITIONS": "partitions",
    "QRLOOP_API_PROCESSES": "api_processes",
    "QRLOOP_RUN_WORKER": "run_worker",
    "QRLOOP_TOKEN_TTL_SECONDS": "token_ttl_seconds",
    "QRLOOP_SIGNER_PROCESSES": "signer_processes",
    "QRLOOP_SIGNER_STALE_SECONDS": "signer_stale_seconds",
    "QRLOOP_SETTLEMENT_CONSUMERS": "settlement_consumers",
    "QRLOOP_DB_POOL_SIZE": "db_pool_size",
    "QRLOOP_DATABASE_POOL_MODE": "database_pool_mode",
    "QRLOOP_DATABASE_LISTEN_URL": "database_listen_url",
    "QRLOOP_PARTITION_MONTHS_AHEAD": "partition_months_ahead",
    "QRLOOP_INVALID_SCANS_PER_MINUTE": "invalid_scans_per_minute",
    "QRLOOP_FAST_PATH": "fast_path",
    "QRLOOP_WEBHOOK_RETRY_HOURS": "webhook_retry_hours",
    "QRLOOP_WEBHOOK_FIRST_RETRY_SECONDS": "webhook_first_retry_seconds",
    "QRLOOP_WEBHOOK_TIMEOUT_SECONDS": "webhook_timeout_seconds",
    "QRLOOP_WEBHOOK_PRIVATE_NETWORKS": "webhook_private_networks",
    "QRLOOP_SMTP_URL": "smtp_url",
    "QRLOOP_SMTP_CA_FILE": "smtp_ca_file",
    "QRLOOP_MESSAGES_FROM": "messages_from",
    "QRLOOP_SMS_GATEWAY_URL": "sms_gateway_url",
    "QRLOOP_SMS_GATEWAY_TOKEN": "sms_gateway_token",
    "QRLOOP_MESSAGES_TIMEOUT_SECONDS": "messages_timeout_seconds",
    "QRLOOP_LOG_LEVEL": "log_level",
    "QRLOOP_PHONE_REGION": "phone_region",
    "QRLOOP_METRICS_TOKEN": "metrics_token",
    "QRLOOP_PROBE_PORT": "probe_port",
    "QRLOOP_QUOTA_OUTSTANDING_CODES": "quota_outstanding_codes",
    "QRLOOP_QUOTA_ORDERS_PER_DAY": "quota_orders_per_day",
    "QRLOOP_OTP_SENDS_PER_LINK_HOUR": "otp_sends_per_link_hour",
    "QRLOOP_OTP_SENDS_PER_POOL_HOUR": "otp_sends_per_pool_hour",
    "QRLOOP_OTP_SENDS_PER_POOL_CODE_HOUR": "otp_sends_per_pool_code_hour",
    "QRLOOP_OTP_SENDS_PER_IP_HOUR": "otp_sends_per_ip_hour",
    "QRLOOP_TRUSTED_PROXIES": "trusted_proxies",
    "QRLOOP_LOOKUPS_PER_KEY_MINUTE": "lookups_per_key_minute",
    "QRLOOP_DASHBOARD_IDLE_MINUTES": "dashboard_idle_minutes",
    "QRLOOP_DASHBOARD_SESSION_HOURS": "dashboard_session_hours",
    "QRLOOP_DASHBOARD_LOGINS_PER_ACCOUNT": "dashboard_logins_per_account",
    "QRLOOP_DASHBOARD_LOGINS_PER_IP": "dashboard_logins_per_ip",
    "QRLOOP_DASHBOARD_INVITATION_HOURS": "dashboard_invitation_hours",
}
_FIELD_TO_ENV = {field: env for env, field in ENVIRONMENT.items()}
_LOG_LEVELS = {"debug", "info", "warning", "error"}
SMTP_WITHOUT_FROM = "QRLOOP_SMTP_URL is set: set QRLOOP_MESSAGES_FROM, the From of its mail"


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from the environment; raise SettingsError naming a bad variable."""
    environ = os.environ if environ is None else environ
    raw = {field: environ[env] for env, field in ENVIRONMENT.items() if environ.get(env, "") != ""}
    try:
        settings = msgspec.convert(raw, Settings, strict=False, dec_hook=_decode_path)
    except msgspec.ValidationError as error:
        raise SettingsError(_explain(str(error))) from None
    if bool(settings.database_url) != bool(settings.redis_url):
        raise SettingsError(
            "set both DATABASE_URL and REDIS_URL, or neither for the embedded default"
        )
    if settings.log_level not in _LOG_LEVELS:
        raise SettingsError(
            f"QRLOOP_LOG_LEVEL must be one of {sorted(_LOG_LEVELS)}, not {settings.log_level!r}"
        )
    _check_redis_tls(settings)
    if settings.redis_durability == "replicated" and not settings.redis_url:
        raise SettingsError(
            "QRLOOP_REDIS_DURABILITY=replicated needs a REDIS_URL whose primaries have replicas"
            " (the embedded Valkey has none: every redemption would be refused)"
        )
    _check_phone_region(settings.phone_region)
    _check_trusted_proxies(settings.trusted_proxies)
    _check_messages(settings)
    return settings


def _check_redis_tls(settings: Settings) -> None:
    """TLS files go with a rediss:// URL, a certificate with its key, and they must load."""
    files = (settings.redis_tls_ca, settings.redis_tls_cert, settings.redis_tls_key)
    if not any(files):
        return
    if not (settings.redis_url and redis_client.uses_tls(settings.redis_url)):
        raise SettingsError("QRLOOP_REDIS_TLS_* need a rediss:// REDIS_URL (TLS)")
    if (settings.redis_tls_cert is None) != (settings.redis_tls_key is None):
        raise SettingsError("set QRLOOP_REDIS_TLS_CERT and QRLOOP_REDIS_TLS_KEY together")
    try:
        redis_client.tls_context(*files)
    except ValueError as error:
        raise SettingsError(str(error)) from None


def _check_phone_region(region: str) -> None:
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise SettingsError(
            f"QRLOOP_PHONE_REGION must be an ISO 3166 region phonenumbers knows, like CN or GB,"
            f" not {region!r}"
        )


def _check_trusted_proxies(setting: str | None) -> None:
    try:
        client_address.trusted_networks(setting)
    except ValueError as error:
        raise SettingsError(
            f"QRLOOP_TRUSTED_PROXIES must be comma-separated CIDRs like 10.0.0.0/8: {error}"
        ) from None


def _check_messages(settings: Settings) -> None:
    """Refuse at start a mail server, From address, CA file or SMS gateway that cannot work."""
    checks: dict[str, Callable[[Any], object]] = {
        "smtp_url": servers.smtp_server,
        "messages_from": servers.one_address,
        "smtp_ca_file": servers.tls_context,
        "sms_gateway_url": servers.sms_gateway_url,
    }
    for field, check in checks.items():
        value = getattr(settings, field)
        if value is None:
            continue
        try:
            check(value)
        except ValueError as error:
            raise SettingsError(f"{_FIELD_TO_ENV[field]}: {error}") from None
    if settings.smtp_url and not settings.messages_from:
        raise SettingsError(SMTP_WITHOUT_FROM)


def _decode_path(kind: type, value: object) -> object:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError


def _explain(message: str) -> str:
    """Turn msgspec's `... - at `$.field`` into a message that names the variable."""
    text, _, where = message.rpartition(" - at `$.")
    field = where.rstrip("`")
    env = _FIELD_TO_ENV.get(field)
    if env is None:
        return message
    return f"{env}: {text}"
