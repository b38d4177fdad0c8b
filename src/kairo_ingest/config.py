"""Settings, read once at start from ``KAIRO_*`` environment variables and ``.env``.

A bad value raises :class:`kairo_ingest.errors.ConfigError` naming the variable, so
the CLI can print one line and exit 2. Durations carry their unit in the name
(``lease_seconds``) and have ``timedelta`` views where the code wants them.
"""

from __future__ import annotations

import datetime as dt
import enum
import pathlib
import sys
import urllib.parse

import pydantic
import pydantic_settings

from kairo_ingest import errors, redaction, token_strength
from kairo_ingest.domain import registry

ENV_PREFIX = "KAIRO_"
# LISTEN + /readyz + claim + finisher + heartbeat + at least one for the handlers.
MIN_DATABASE_POOL_SIZE = 6
DEFAULT_APIFY_BASE_URL = "https://api.apify.com"
# The console's own connections when it is on: a read-only pool of 2 and one for actions.
CONSOLE_CONNECTIONS = 3
CONSOLE_TOKEN_MIN_BITS = 128


class DatabasePooler(enum.StrEnum):
    """What sits between us and PostgreSQL (KAIRO_DATABASE_POOLER)."""

    NONE = "none"  # a direct connection, or a session-mode pooler
    TRANSACTION = "transaction"  # PgBouncer pool_mode=transaction, Supabase, Heroku, ...


class LogFormat(enum.StrEnum):
    CONSOLE = "console"
    JSON = "json"


class Settings(pydantic_settings.BaseSettings):
    model_config = pydantic_settings.SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    database_url: pydantic.SecretStr | None = None
    # Behind a transaction-mode pooler: no named prepared statements, no session state and
    # no LISTEN (KAIRO_LISTEN_NOTIFY is ignored there; the worker polls).
    database_pooler: DatabasePooler = DatabasePooler.NONE
    # Every connection one process opens: the pool (handlers, and the worker's claim,
    # finisher and heartbeat connections, which it lends out), LISTEN, and /readyz's own.
    # A hard ceiling, whatever KAIRO_CONCURRENCY is.
    database_pool_size: int = pydantic.Field(15, ge=MIN_DATABASE_POOL_SIZE, le=1000)
    data_dir: pathlib.Path = pathlib.Path(".kairo")
    apify_token: pydantic.SecretStr | None = None
    apify_base_url: str = DEFAULT_APIFY_BASE_URL
    # The only way, besides `demo`, to use the built-in Apify simulator (issue 9): a
    # missing token must never silently turn into fake evidence in a real database.
    apify_simulator: bool = False

    concurrency: int = pydantic.Field(50, ge=1, le=10_000)
    lease_seconds: float = pydantic.Field(60.0, ge=1.0)
    run_deadline_seconds: float = pydantic.Field(900.0, gt=0)
    shutdown_grace_seconds: float = pydantic.Field(30.0, ge=0)
    http_host: str = "127.0.0.1"
    http_port: int = pydantic.Field(8080, ge=0, le=65535)
    log_format: LogFormat | None = None
    log_level: str = "INFO"
    freshness_ttl_hours: float = pydantic.Field(24.0, ge=0)
    disabled_capabilities: str = ""

    # Queue tuning (README lists them; the contract leaves them to us).
    poll_interval_seconds: float = pydantic.Field(1.0, gt=0)
    listen_notify: bool = True
    retry_base_seconds: float = pydantic.Field(15.0, gt=0)
    retry_cap_seconds: float = pydantic.Field(900.0, gt=0)
    snooze_seconds: float = pydantic.Field(60.0, gt=0)
    reap_interval_seconds: float = pydantic.Field(10.0, gt=0)
    finished_job_retention_days: float = pydantic.Field(14.0, ge=0, le=36_500, allow_inf_nan=False)
    source_concurrency: int = pydantic.Field(8, ge=1)
    apify_max_concurrent_runs: int = pydantic.Field(200, ge=1)

    # Spend control (issue 10). The `default` account's limits match Apify's Starter plan
    # (32 concurrent runs, 32 GB of actor memory); no daily cap unless one is set.
    secret_key: pydantic.SecretStr | None = None
    apify_account_max_concurrent_runs: int = pydantic.Field(32, ge=1)
    apify_account_max_memory_mbytes: int = pydantic.Field(32_768, ge=128)
    apify_account_daily_cap_usd: float | None = pydantic.Field(None, ge=0, allow_inf_nan=False)
    # Sent as each run's memory, so a power of 2 from 128 MB to 32 GB, as Apify requires.
    apify_run_memory_mbytes: int = pydantic.Field(1024, ge=128, le=32_768)
    # Sent as each run's maxTotalChargeUsd: the most a pay-per-event run may charge, which
    # bounds what runs in flight add past a daily cap. Unset: not sent.
    apify_run_max_charge_usd: float | None = pydantic.Field(
        None, gt=0, le=1_000_000, allow_inf_nan=False
    )
    budget_poll_seconds: float = pydantic.Field(5.0, gt=0)
    # Test-only: the length of the daily cap's window (86400 = the UTC day).
    budget_window_seconds: int = pydantic.Field(86_400, ge=1)

    # The operator console (kairo_ingest.console): off unless a port is set.
    console_port: int | None = pydantic.Field(None, ge=0, le=65535)
    console_host: str = "127.0.0.1"
    console_token: pydantic.SecretStr | None = None
    # Proxies whose X-Forwarded-For / X-Forwarded-Proto the console believes (comma-separated
    # addresses or networks); none by default, so the client address is the socket's peer.
    console_trusted_proxies: str = ""

    @pydantic.field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return upper

    @pydantic.field_validator("apify_run_memory_mbytes")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value & (value - 1):
            raise ValueError("must be a power of 2 (Apify refuses any other run memory)")
        return value

    @pydantic.field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: pydantic.SecretStr | None) -> pydantic.SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        raw = value.get_secret_value().strip()
        if not raw.startswith(("postgresql://", "postgresql+asyncpg://", "postgres://")):
            raise ValueError("must be a postgresql:// or postgresql+asyncpg:// URL")
        return pydantic.SecretStr(raw)

    @pydantic.field_validator("apify_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @pydantic.field_validator(
        "secret_key", "apify_account_daily_cap_usd", "apify_run_max_charge_usd", mode="before"
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @pydantic.field_validator("console_port", mode="before")
    @classmethod
    def _blank_port_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @pydantic.field_validator("console_token")
    @classmethod
    def _strong_token(cls, value: pydantic.SecretStr | None) -> pydantic.SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if token_strength.bits(value.get_secret_value().strip()) < CONSOLE_TOKEN_MIN_BITS:
            raise ValueError(
                f"must carry at least {CONSOLE_TOKEN_MIN_BITS} bits, not a short or patterned "
                "string: for instance 22 random base64url characters "
                "(python -c 'import secrets; print(secrets.token_urlsafe(16))') or 32 hex "
                "digits (openssl rand -hex 16)"
            )
        return pydantic.SecretStr(value.get_secret_value().strip())

    @pydantic.field_validator("console_port")
    @classmethod
    def _console_fits_the_pool(cls, value: int | None, info: pydantic.ValidationInfo) -> int | None:
        least = MIN_DATABASE_POOL_SIZE + CONSOLE_CONNECTIONS
        pool = info.data.get("database_pool_size")
        if value is not None and pool is not None and pool < least:
            raise ValueError(
                f"the console takes {CONSOLE_CONNECTIONS} of KAIRO_DATABASE_POOL_SIZE's "
                f"connections: with KAIRO_CONSOLE_PORT set it must be at least {least}"
            )
        return value

    @pydantic.model_validator(mode="after")
    def _no_listen_behind_a_transaction_pooler(self) -> Settings:
        if self.database_pooler is DatabasePooler.TRANSACTION and self.listen_notify:
            self.listen_notify = False
            self._listen_notify_ignored = True
        return self

    _listen_notify_ignored: bool = pydantic.PrivateAttr(default=False)

    @property
    def listen_notify_ignored(self) -> bool:
        """KAIRO_LISTEN_NOTIFY was on but a transaction-mode pooler turned it off."""
        return self._listen_notify_ignored

    @property
    def finished_job_retention(self) -> dt.timedelta | None:
        """None (keep forever) when KAIRO_FINISHED_JOB_RETENTION_DAYS is 0."""
        days = self.finished_job_retention_days
        return dt.timedelta(days=days) if days > 0 else None

    @property
    def freshness_ttl(self) -> dt.timedelta:
        return dt.timedelta(hours=self.freshness_ttl_hours)

    @property
    def disabled_capability_set(self) -> frozenset[str]:
        return registry.parse_disabled_capabilities(self.disabled_capabilities)

    @property
    def resolved_log_format(self) -> LogFormat:
        if self.log_format is not None:
            return self.log_format
        return LogFormat.CONSOLE if sys.stderr.isatty() else LogFormat.JSON

    @property
    def uses_simulator(self) -> bool:
        """KAIRO_APIFY_SIMULATOR=true: the built-in simulator stands in for Apify."""
        return self.apify_simulator


def load(**overrides: object) -> Settings:
    """Read settings; translate validation errors into one ConfigError naming the variable."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        variable = f"{ENV_PREFIX}{field.upper()}"
        raise errors.ConfigError(
            f"invalid setting {variable}: {first['msg']}", variable=variable
        ) from None
    settings.disabled_capability_set  # noqa: B018 - ConfigError naming the variable when bad
    if settings.apify_token is not None:
        redaction.register_secret(settings.apify_token.get_secret_value())
    if settings.console_token is not None:
        redaction.register_secret(settings.console_token.get_secret_value())
    if settings.database_url is not None:
        for secret in database_password_forms(settings.database_url.get_secret_value()):
            redaction.register_secret(secret)
    if settings.secret_key is not None:
        for key in settings.secret_key.get_secret_value().split(","):
            redaction.register_secret(key.strip())
    return settings


def database_password_forms(url: str) -> set[str]:
    """The password of a database URL as written and percent-decoded, for redaction.

    Read without a URL parser, up to the last ``@``, so that a password with an
    unencoded ``@``, ``:`` or ``/`` is still found whole.
    """
    _, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return set()
    userinfo = rest.rsplit("@", 1)[0]
    if ":" not in userinfo:
        return set()
    raw = userinfo.split(":", 1)[1]
    return {form for form in (raw, urllib.parse.unquote(raw)) if form}
