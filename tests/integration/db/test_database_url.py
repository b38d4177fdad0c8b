"""libpq parameters in KAIRO_DATABASE_URL reach the connection, or are refused clearly."""

from __future__ import annotations

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from kairo_ingest import config, errors, redaction
from kairo_ingest.db import engine as db_engine
from support import outcomes

LIBPQ_QUERY = {
    "sslmode": "prefer",
    "connect_timeout": "5",
    "application_name": "kairo-url-test",
    "options": "-c statement_timeout=4321 -c lock_timeout=1234",
    "target_session_attrs": "any",
}


def _with_libpq_params(db_url: str) -> str:
    return make_url(db_url).update_query_dict(LIBPQ_QUERY).render_as_string(hide_password=False)


async def test_libpq_parameters_are_mapped_onto_the_engine_connection(db_url: str) -> None:
    engine = outcomes.result_of(db_engine.create, _with_libpq_params(db_url), pool_size=1)
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.text(
                        "SELECT current_setting('application_name'),"
                        " current_setting('statement_timeout'), current_setting('lock_timeout')"
                    )
                )
            ).one()
    finally:
        await engine.dispose()
    assert tuple(row) == ("kairo-url-test", "4321ms", "1234ms")


async def test_libpq_parameters_are_mapped_onto_raw_asyncpg_connections(db_url: str) -> None:
    conn = await asyncpg.connect(db_engine.plain_dsn(_with_libpq_params(db_url)), timeout=10)
    try:
        assert await conn.fetchval("SELECT current_setting('application_name')") == (
            "kairo-url-test"
        )
        assert await conn.fetchval("SELECT current_setting('statement_timeout')") == "4321ms"
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "query",
    [
        "keepalives=1",
        "gssencmode=disable",
        "sslmode=sometimes",
        "connect_timeout=soon",
        "connect_timeout=0",
        "target_session_attrs=fastest",
        "options=statement_timeout",
    ],
)
def test_parameters_we_cannot_honour_are_a_config_error_naming_the_variable(query: str) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        db_engine.create(f"postgresql://u@127.0.0.1:5432/db?{query}")
    assert caught.value.variable == "KAIRO_DATABASE_URL"
    assert "KAIRO_DATABASE_URL" in caught.value.message


def test_the_database_password_is_registered_for_redaction_whatever_it_contains() -> None:
    encoded = "Pw%40with%3Aall%2Fthree"
    settings = config.load(database_url=f"postgresql://kairo:{encoded}@db.example:5432/kairo")
    assert settings.database_url is not None
    message = errors.DatabaseError("server said: password Pw@with:all/three rejected").message
    assert "Pw@with:all/three" not in message
    assert redaction.redact(f"dsn={encoded}") == f"dsn={redaction.MASK}"


def test_a_password_the_url_parser_cuts_short_is_refused_not_shown() -> None:
    with pytest.raises(errors.ConfigError) as caught:
        db_engine.create("postgresql://kairo:half@way/secret@db.example:5432/kairo")
    assert "secret" not in caught.value.message
    assert caught.value.variable == "KAIRO_DATABASE_URL"
