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
from typing import Any

import pydantic
import pydantic_settings

from kairo_ingest import errors, redaction, token_strength
from kairo_ingest.domain import registry

ENV_PREFIX = "KAIRO_"
# LISTEN + /readyz + claim + finisher + heartbeat + at least one for the handlers.
MIN_DATABASE_POOL_SIZE = 6
DEFAULT_APIFY_BASE_URL = "https://api.apify.com"
MAX_CONCURRENCY = 10_000  # KAIRO_CONCURRENCY and run --concurrency
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


def _cap(pair: str) -> Any:
    """The ``KAIRO_CAP_...`` field of a pair: its default and bounds from the registry."""
    spec = registry.get_spec(*pair.split("."))
    return pydantic.Field(
        spec.default_cap,
        ge=1,
        le=registry.MAX_CAP,
        description=f"The result cap of {pair} ({spec.actor_id}).",
    )


def _flag(pair: str) -> Any:
    """The ``KAIRO_FEATURE_...`` field of a flagged pair: off unless set."""
    spec = registry.get_spec(*pair.split("."))
    if spec.feature_flag is None:
        raise ValueError(f"{pair} has no feature flag in the registry")
    return pydantic.Field(
        False,
        description=f"Turns {pair} on ({spec.actor_id}): `true`, `1`, `yes` or `on`; "
        "`false`, `0`, `no` or `off` keep it off.",
    )


class _PerPair(pydantic.BaseModel):
    """Settings named after a (platform, capability) pair: ``KAIRO_<GROUP>_<PLATFORM>_<CAP>``.

    An unknown name (a typo) is an error, not ignored; a blank value is unset.
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, values: object) -> object:
        if isinstance(values, dict):
            return {k: v for k, v in values.items() if not _blank(v)}
        return values

    def by_pair(self) -> dict[str, Any]:
        """``{"platform.capability": value}`` for every field."""
        return {registry.pair_of_setting(name): value for name, value in self}


class Caps(_PerPair):
    """Per-pair result caps (``KAIRO_CAP_<PLATFORM>_<CAPABILITY>``)."""

    instagram_posts: int = _cap("instagram.posts")
    instagram_reels: int = _cap("instagram.reels")
    linkedin_company_posts: int = _cap("linkedin.company_posts")
    linkedin_profile_posts: int = _cap("linkedin.profile_posts")
    tiktok_profile_videos: int = _cap("tiktok.profile_videos")
    youtube_channel_videos: int = _cap("youtube.channel_videos")
    web_crawl_pages: int = _cap("web.crawl_pages")


class Features(_PerPair):
    """Feature flags of the pairs that have one (``KAIRO_FEATURE_<PLATFORM>_<CAPABILITY>``)."""

    linkedin_profile_posts: bool = _flag("linkedin.profile_posts")


class Settings(pydantic_settings.BaseSettings):
    """Every setting, read once at start. Each field's description is its documentation:
    ``docs/configuration.md`` is generated from them (``scripts/settings_doc.py``)."""

    model_config = pydantic_settings.SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
        # KAIRO_CAP_INSTAGRAM_POSTS -> cap.instagram_posts: only the nested fields (cap,
        # feature) are split, and only once, after their group's name.
        env_nested_delimiter="_",
        env_nested_max_split=1,
    )

    database_url: pydantic.SecretStr | None = pydantic.Field(
        None,
        description="A `postgresql://` or `postgresql+asyncpg://` URL, with the libpq "
        "parameters `sslmode`, `sslrootcert`, `sslcert`, `sslkey`, `connect_timeout`, "
        "`application_name`, `options`, `target_session_attrs`, `host` and `port` (any "
        "other is refused). Percent-encode `@`, `:` and `/` in the password; it is masked "
        "in every log line and error. Unset: an embedded PostgreSQL under `KAIRO_DATA_DIR`.",
    )
    database_pooler: DatabasePooler = pydantic.Field(
        DatabasePooler.NONE,
        description="What sits between us and PostgreSQL: `none` (a direct connection or a "
        "session-mode pooler) or `transaction` (PgBouncer in transaction mode, Supabase, "
        "Heroku): then no named prepared statements, no session state and no LISTEN.",
    )
    database_pool_size: int = pydantic.Field(
        15,
        ge=MIN_DATABASE_POOL_SIZE,
        le=1000,
        description="Every connection one process opens: the pool (handlers, and the "
        "worker's claim and finisher connections), LISTEN, `/readyz`'s own and the "
        "heartbeat's, and the console's 3 when `KAIRO_CONSOLE_PORT` is set (then at least "
        "9). A hard ceiling, whatever `KAIRO_CONCURRENCY` is.",
    )
    data_dir: pathlib.Path = pydantic.Field(
        pathlib.Path(".kairo"), description="Where the embedded PostgreSQL keeps its data."
    )
    migrations_dir: pathlib.Path | None = pydantic.Field(
        None,
        description="The alembic scripts (the folder holding `env.py`). Unset: the "
        "`migrations/` folder next to the source tree, or in the working directory (the "
        "container image sets it).",
    )
    apify_token: pydantic.SecretStr | None = pydantic.Field(
        None,
        description="The Apify API token of the `default` account, sent only in the "
        "`Authorization` header. `run` refuses to start without it (unless "
        "`KAIRO_APIFY_SIMULATOR=true`).",
    )
    apify_base_url: str = pydantic.Field(
        DEFAULT_APIFY_BASE_URL,
        description="The Apify API; point it at a simulator (`kairo-ingest simulator`).",
    )
    apify_simulator: bool = pydantic.Field(
        False,
        description="`true` runs against the built-in Apify simulator. The only way besides "
        "`demo`: a missing token must never silently turn into fake evidence in a real "
        "database.",
    )

    concurrency: int = pydantic.Field(
        50, ge=1, le=MAX_CONCURRENCY, description="Jobs in flight per process."
    )
    lease_seconds: float = pydantic.Field(
        60.0, ge=1.0, description="A job's lease; the heartbeat extends it every sixth of it."
    )
    run_deadline_seconds: float = pydantic.Field(
        900.0, gt=0, description="How long one Apify run may take before it is aborted."
    )
    shutdown_grace_seconds: float = pydantic.Field(
        25.0,
        ge=0,
        description="The whole exit after SIGTERM: grace for jobs in flight, then their "
        "cancellation, release and final writes. 25 s fits Kubernetes' default 30 s "
        "termination grace.",
    )
    http_host: str = pydantic.Field(
        "127.0.0.1",
        description="The health and metrics server's address (the image sets `0.0.0.0`).",
    )
    http_port: int = pydantic.Field(
        8080, ge=0, le=65535, description="The health and metrics server's port."
    )
    log_format: LogFormat | None = pydantic.Field(
        None, description="`console` or `json`. Unset: `console` on a terminal, else `json`."
    )
    log_level: str = pydantic.Field(
        "INFO",
        description="DEBUG, INFO, WARNING, ERROR or CRITICAL. DEBUG also prints redacted "
        "tracebacks of unexpected CLI errors.",
    )
    freshness_ttl_hours: float = pydantic.Field(
        24.0, ge=0, description="How old a source's last succeeded run may be to be reused."
    )
    disabled_capabilities: str = pydantic.Field(
        "",
        description="Pairs that never run, comma-separated (`linkedin.company_posts, "
        "web.crawl_pages`). An unknown pair is an error.",
    )
    cap: Caps = pydantic.Field(
        default_factory=Caps,
        description="Result caps per pair, `KAIRO_CAP_<PLATFORM>_<CAPABILITY>`: the most "
        "items one run returns, a whole number from 1 to 999,999,999, enforced in the actor "
        "input, on the dataset fetch and in normalization. An unknown pair is an error.",
    )
    feature: Features = pydantic.Field(
        default_factory=Features,
        description="Feature flags per pair, `KAIRO_FEATURE_<PLATFORM>_<CAPABILITY>`: a "
        "pair with a flag runs only when it is on. An unknown pair is an error.",
    )

    # Queue tuning (the contract leaves them to us).
    poll_interval_seconds: float = pydantic.Field(
        1.0, gt=0, description="How often an idle worker looks for jobs when no NOTIFY came."
    )
    listen_notify: bool = pydantic.Field(
        True,
        description="`false` polls only. Off, whatever it says, with "
        "`KAIRO_DATABASE_POOLER=transaction` (no LISTEN behind such a pooler).",
    )
    retry_base_seconds: float = pydantic.Field(
        15.0,
        gt=0,
        description="The first retry's backoff ceiling: a retry waits between half and all of a "
        "ceiling that doubles each attempt.",
    )
    retry_cap_seconds: float = pydantic.Field(900.0, gt=0, description="The largest retry backoff.")
    snooze_seconds: float = pydantic.Field(
        60.0, gt=0, description='The wait after a "not now" error; no attempt is spent.'
    )
    reap_interval_seconds: float = pydantic.Field(
        10.0, gt=0, description="How often each worker reclaims expired leases."
    )
    max_interruptions: int = pydantic.Field(
        10,
        ge=1,
        description="A job fails at its Nth interruption (released at shutdown, given up on "
        "a lost lease or reaped): it keeps wedging its worker. Interruptions refund the "
        "attempt.",
    )
    max_snoozes: int = pydantic.Field(
        100,
        ge=1,
        description='A job fails at its Nth snooze ("not now" errors, which spend no attempt).',
    )
    finished_job_retention_days: float = pydantic.Field(
        14.0,
        ge=0,
        le=36_500,
        allow_inf_nan=False,
        description="Finished jobs older than this are pruned; 0 keeps them all.",
    )
    source_concurrency: int = pydantic.Field(
        8, ge=1, description="The sources of one job processed at once."
    )
    apify_max_concurrent_runs: int = pydantic.Field(
        200, ge=1, description="Apify runs in flight per process, across its jobs."
    )
    raw_retention_days: int | None = pydantic.Field(
        None,
        ge=1,
        le=36_500,
        description="Raw dataset items are kept this many days, by their run's day (whole "
        "daily partitions are dropped: docs/raw-retention.md). Unset: kept forever.",
    )

    # Spend control. The `default` account's limits match Apify's Starter plan
    # (32 concurrent runs, 32 GB of actor memory); no daily cap unless one is set.
    secret_key: pydantic.SecretStr | None = pydantic.Field(
        None,
        description="One or more Fernet keys, comma-separated, newest first: they encrypt "
        "the accounts' tokens at rest. `accounts add` refuses to run without it.",
    )
    apify_account_max_concurrent_runs: int = pydantic.Field(
        32, ge=1, description="The `default` account's concurrent runs (Apify's Starter plan)."
    )
    apify_account_max_memory_mbytes: int = pydantic.Field(
        32_768, ge=128, description="The `default` account's total actor memory, in MB."
    )
    apify_account_daily_cap_usd: float | None = pydantic.Field(
        None,
        ge=0,
        allow_inf_nan=False,
        description="The `default` account's spend per UTC day, in USD. Unset: no cap.",
    )
    apify_run_memory_mbytes: int = pydantic.Field(
        1024,
        ge=128,
        le=32_768,
        description="Sent as each run's memory and counted against its account's memory "
        "budget: a power of 2 from 128 to 32768, as Apify requires.",
    )
    apify_run_max_charge_usd: float | None = pydantic.Field(
        None,
        gt=0,
        le=1_000_000,
        allow_inf_nan=False,
        description="Sent as each run's `maxTotalChargeUsd`: the most a pay-per-event run "
        "may charge, which bounds what runs in flight add past a daily cap. Unset: not sent.",
    )
    budget_poll_seconds: float = pydantic.Field(
        5.0,
        gt=0,
        description="How often a source waiting for a run slot looks again when no NOTIFY "
        "woke it (at most 1 s without LISTEN).",
    )
    budget_window_seconds: int = pydantic.Field(
        86_400,
        ge=1,
        description="Test-only: the length of the daily cap's window (86400 = the UTC day).",
    )
    ledger_interval_seconds: float = pydantic.Field(
        2.0,
        gt=0,
        le=3600,
        allow_inf_nan=False,
        description="How often the run ledger looks for Apify runs that no job follows (it "
        "also wakes on `NOTIFY kairo_ledger` from `jobs cancel`); a run that is just running "
        "is looked at less often, at most every 60 s.",
    )

    # The operator console (kairo_ingest.console): off unless a port is set.
    console_port: int | None = pydantic.Field(
        None, ge=0, le=65535, description="Serve the operator console from `run` on this port."
    )
    console_host: str = pydantic.Field("127.0.0.1", description="The console's address.")
    console_token: pydantic.SecretStr | None = pydantic.Field(
        None,
        description=f"The console's credential, at least {CONSOLE_TOKEN_MIN_BITS} bits. Unset: "
        "a random one is made at start and its login URL printed once; required for a "
        "console bound to anything but loopback.",
    )
    console_trusted_proxies: str = pydantic.Field(
        "",
        description="Proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` the console "
        "believes (comma-separated addresses or networks). Empty: the client address is "
        "the socket's peer.",
    )

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
        "apify_token",
        "secret_key",
        "apify_account_daily_cap_usd",
        "apify_run_max_charge_usd",
        "console_port",
        "migrations_dir",
        "raw_retention_days",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if _blank(value) else value

    @pydantic.field_validator("migrations_dir")
    @classmethod
    def _alembic_folder(cls, value: pathlib.Path | None) -> pathlib.Path | None:
        if value is not None and not (value / "env.py").is_file():
            raise ValueError(f"{value} holds no alembic env.py")
        return value

    @pydantic.field_validator("disabled_capabilities")
    @classmethod
    def _known_pairs(cls, value: str) -> str:
        pairs = registry.parse_pairs(value)
        unknown = registry.unknown_pairs(pairs)
        if unknown:
            raise ValueError(
                f"unknown pair(s) {', '.join(unknown)}; "
                f"valid pairs: {', '.join(registry.valid_pairs())}"
            )
        return ",".join(sorted(pairs))

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
    def raw_retention(self) -> dt.timedelta | None:
        """None (keep raw items forever) when KAIRO_RAW_RETENTION_DAYS is unset."""
        days = self.raw_retention_days
        return dt.timedelta(days=days) if days is not None else None

    @property
    def freshness_ttl(self) -> dt.timedelta:
        return dt.timedelta(hours=self.freshness_ttl_hours)

    @property
    def disabled_capability_set(self) -> frozenset[str]:
        """``KAIRO_DISABLED_CAPABILITIES`` as ``platform.capability`` strings."""
        return registry.parse_pairs(self.disabled_capabilities)

    @property
    def caps_by_pair(self) -> dict[str, int]:
        """``{"platform.capability": cap}`` for every pair (``KAIRO_CAP_*``)."""
        return self.cap.by_pair()

    @property
    def enabled_features(self) -> frozenset[str]:
        """The pairs whose feature flag is on (``KAIRO_FEATURE_*``)."""
        return frozenset(pair for pair, on in self.feature.by_pair().items() if on)

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
        variable = ENV_PREFIX + "_".join(str(part) for part in first["loc"]).upper()
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":  # KAIRO_CAP_<typo>, KAIRO_FEATURE_<typo>
            message = f"no such setting; the known ones: {', '.join(_nested_variables())}"
        raise errors.ConfigError(
            f"invalid setting {variable}: {message}", variable=variable
        ) from None
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


def _blank(value: object) -> bool:
    return isinstance(value, str) and not value.strip()


def _nested_variables() -> list[str]:
    """Every ``KAIRO_CAP_*`` and ``KAIRO_FEATURE_*`` variable."""
    return [
        f"{ENV_PREFIX}{group.upper()}_{name.upper()}"
        for group, model in (("cap", Caps), ("feature", Features))
        for name in model.model_fields
    ]


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
