"""libpq URL parameters in KAIRO_DATABASE_URL, mapped onto asyncpg's connect arguments.

Users paste URLs from managed providers, and those carry libpq parameters
(``?sslmode=require&connect_timeout=5&application_name=...``). SQLAlchemy's asyncpg
dialect hands every query parameter to ``asyncpg.connect`` as a keyword, which fails
with a ``TypeError`` for most of them. So the query is read here, once: each parameter
we understand becomes the matching asyncpg argument, and any other one is refused with a
:class:`~kairo_ingest.errors.ConfigError` naming KAIRO_DATABASE_URL (exit 2).

=======================  ==================================================
``sslmode``              asyncpg ``ssl`` (the same mode names)
``sslrootcert``,         an ``ssl.SSLContext`` (CA file; client cert and key)
``sslcert``, ``sslkey``
``connect_timeout``      asyncpg ``timeout`` (seconds, a positive number)
``application_name``     the ``application_name`` server setting
``options``              ``-c name=value`` pairs become server settings
``target_session_attrs`` asyncpg ``target_session_attrs``
``host``, ``port``       kept in the URL (socket directory, several hosts)
=======================  ==================================================
"""

from __future__ import annotations

import dataclasses
import shlex
import ssl
from typing import Any

import sqlalchemy as sa

from kairo_ingest import errors

VARIABLE = "KAIRO_DATABASE_URL"
SSL_MODES = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})
SESSION_ATTRS = frozenset(
    {"any", "primary", "standby", "read-write", "read-only", "prefer-standby"}
)
MAPPED = frozenset(
    {
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "connect_timeout",
        "application_name",
        "options",
        "target_session_attrs",
    }
)
KEPT = frozenset({"host", "port"})


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectOptions:
    """What the URL's query asks of the connection, in asyncpg's terms."""

    sslmode: str | None = None
    sslrootcert: str | None = None
    sslcert: str | None = None
    sslkey: str | None = None
    timeout_seconds: float | None = None
    application_name: str | None = None
    server_settings: tuple[tuple[str, str], ...] = ()
    target_session_attrs: str | None = None

    def ssl_argument(self) -> str | ssl.SSLContext | None:
        """asyncpg's ``ssl``: the mode name, or a context when certificate files are named."""
        if not (self.sslrootcert or self.sslcert or self.sslkey):
            return self.sslmode
        mode = self.sslmode or "prefer"
        if mode == "disable":
            return "disable"
        context = ssl.create_default_context(cafile=self.sslrootcert)
        if mode != "verify-full":
            context.check_hostname = False
        # As libpq: with a root certificate, ``require`` verifies the server's chain like
        # ``verify-ca``. (With certificate files, ``prefer`` and ``allow`` also require TLS:
        # asyncpg takes a context as "TLS or nothing".)
        verified = ("verify-ca", "verify-full") + (("require",) if self.sslrootcert else ())
        if mode not in verified:
            context.verify_mode = ssl.CERT_NONE
        if self.sslcert:
            context.load_cert_chain(self.sslcert, self.sslkey)
        return context

    def connect_args(self, application_name: str) -> dict[str, Any]:
        """Keyword arguments for ``asyncpg.connect`` (through SQLAlchemy's connect_args)."""
        settings = dict(self.server_settings)
        settings["application_name"] = self.application_name or application_name
        args: dict[str, Any] = {"server_settings": settings}
        ssl_arg = self.ssl_argument()
        if ssl_arg is not None:
            args["ssl"] = ssl_arg
        if self.timeout_seconds is not None:
            args["timeout"] = self.timeout_seconds
        if self.target_session_attrs is not None:
            args["target_session_attrs"] = self.target_session_attrs
        return args


def _single(query: Any, name: str) -> str | None:
    value = query.get(name)
    if value is None:
        return None
    if isinstance(value, tuple):
        raise errors.ConfigError(f"{VARIABLE}: {name} is given more than once", variable=VARIABLE)
    return str(value)


def _options(raw: str) -> tuple[tuple[str, str], ...]:
    """libpq ``options``: ``-c name=value`` (or ``-cname=value``, ``--name=value``) pairs."""
    try:
        words = shlex.split(raw)
    except ValueError:
        words = []
    pairs: list[tuple[str, str]] = []
    index = 0
    while index < len(words):
        word = words[index]
        if word == "-c" and index + 1 < len(words):
            setting, index = words[index + 1], index + 2
        elif (word.startswith("-c") and len(word) > 2) or (word.startswith("--") and "=" in word):
            setting, index = word[2:], index + 1
        else:
            raise errors.ConfigError(
                f"{VARIABLE}: options must be '-c name=value' pairs", variable=VARIABLE
            )
        name, sep, value = setting.partition("=")
        if not sep or not name:
            raise errors.ConfigError(
                f"{VARIABLE}: options must be '-c name=value' pairs", variable=VARIABLE
            )
        pairs.append((name.replace("-", "_"), value))
    return tuple(pairs)


def split(url: sa.URL) -> tuple[sa.URL, ConnectOptions]:
    """``url`` without the libpq parameters, and what they ask for.

    Raises :class:`ConfigError` naming KAIRO_DATABASE_URL for a parameter we do not know
    or a value we cannot use.
    """
    query = dict(url.query)
    unknown = sorted(set(query) - MAPPED - KEPT)
    if unknown:
        raise errors.ConfigError(
            f"{VARIABLE}: unsupported URL parameter(s) {', '.join(unknown)}; "
            f"supported: {', '.join(sorted(MAPPED | KEPT))}",
            variable=VARIABLE,
        )
    sslmode = _single(query, "sslmode")
    if sslmode is not None and sslmode not in SSL_MODES:
        raise errors.ConfigError(
            f"{VARIABLE}: sslmode must be one of {', '.join(sorted(SSL_MODES))}",
            variable=VARIABLE,
        )
    timeout: float | None = None
    raw_timeout = _single(query, "connect_timeout")
    if raw_timeout is not None:
        try:
            timeout = float(raw_timeout)
        except ValueError:
            timeout = None
        if timeout is None or not 0 < timeout < 86_400:
            raise errors.ConfigError(
                f"{VARIABLE}: connect_timeout must be a positive number of seconds",
                variable=VARIABLE,
            )
    attrs = _single(query, "target_session_attrs")
    if attrs is not None and attrs not in SESSION_ATTRS:
        raise errors.ConfigError(
            f"{VARIABLE}: target_session_attrs must be one of {', '.join(sorted(SESSION_ATTRS))}",
            variable=VARIABLE,
        )
    raw_options = _single(query, "options")
    options = ConnectOptions(
        sslmode=sslmode,
        sslrootcert=_single(query, "sslrootcert"),
        sslcert=_single(query, "sslcert"),
        sslkey=_single(query, "sslkey"),
        timeout_seconds=timeout,
        application_name=_single(query, "application_name"),
        server_settings=_options(raw_options) if raw_options else (),
        target_session_attrs=attrs,
    )
    kept = {name: value for name, value in query.items() if name in KEPT}
    return url.set(query=kept), options


def asyncpg_dsn_query(options: ConnectOptions) -> dict[str, str]:
    """The same options as query parameters of a DSN for a raw ``asyncpg.connect(dsn)``.

    asyncpg's DSN parser knows the ssl parameters and ``target_session_attrs``, and sends
    any other parameter as a server setting; ``connect_timeout`` is left to the caller.
    """
    query: dict[str, str] = dict(options.server_settings)
    for name in ("sslmode", "sslrootcert", "sslcert", "sslkey", "target_session_attrs"):
        value = getattr(options, name)
        if value is not None:
            query[name] = value
    if options.application_name is not None:
        query["application_name"] = options.application_name
    return query
