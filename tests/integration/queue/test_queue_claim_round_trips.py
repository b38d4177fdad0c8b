"""A claim on a direct server is one statement and one round trip.

The claim needs bitmap scans off. It used to set that with SET LOCAL in a transaction of
its own: BEGIN, SET LOCAL, the claim, COMMIT, four round trips per claim. Direct to
PostgreSQL the claim loop now sets it once for its connection's session and claims in
AUTOCOMMIT; that connection is closed for good afterwards, so the setting never reaches
another user of the pool. Behind a transaction-mode pooler the claim keeps its SET LOCAL
transaction (tests/integration/db/test_pooler_mode.py).
"""

from __future__ import annotations

import sqlalchemy as sa

from kairo_ingest import config
from kairo_ingest.db import engine as db_engine
from kairo_ingest.queue import jobs as queue_jobs
from kairo_ingest.worker import claiming
from support import noop, roundtrips


async def _claims(conn: claiming.ClaimConnection, times: int) -> int:
    claimed = 0
    for _ in range(times):
        leases = await conn.claim(
            owner="rt-test", limit=5, lease_seconds=30, kinds=[noop.NOOP_KIND]
        )
        claimed += len(leases)
    return claimed


async def test_a_claim_on_a_direct_server_is_one_round_trip(db_url: str) -> None:
    engine = db_engine.create(db_url, pool_size=2, max_overflow=0)
    conn = claiming.ClaimConnection(engine)
    try:
        await queue_jobs.enqueue_many(engine, kind=noop.NOOP_KIND, count=20)
        await _claims(conn, 1)  # the first claim also sets the session's planner setting
        with roundtrips.counting(engine) as counter:
            assert await _claims(conn, 3) == 15
        assert counter.snapshot() == {"begin": 0, "statement": 3, "commit": 0, "rollback": 0}
    finally:
        await conn.close()
        await engine.dispose()


async def test_the_claim_connection_is_never_handed_back_with_its_setting(db_url: str) -> None:
    engine = db_engine.create(db_url, pool_size=1, max_overflow=0)
    conn = claiming.ClaimConnection(engine)
    try:
        await queue_jobs.enqueue_many(engine, kind=noop.NOOP_KIND, count=3)
        assert await _claims(conn, 1) == 3
        await conn.close()
        # The pool's only connection slot: whatever it hands out now has the default.
        async with engine.connect() as other:
            value = (await other.execute(sa.text("SHOW enable_bitmapscan"))).scalar_one()
        assert value == "on"
    finally:
        await engine.dispose()


async def test_the_session_setting_holds_for_every_claim_on_the_connection(db_url: str) -> None:
    """Set once, the setting stays for every later claim on the connection (a claim
    without it may plan a bitmap scan of every ready row on a table without statistics)."""
    engine = db_engine.create(db_url, pool_size=2, max_overflow=0)
    conn = claiming.ClaimConnection(engine)
    try:
        assert conn.session_setting
        await queue_jobs.enqueue_many(engine, kind=noop.NOOP_KIND, count=10)
        for _ in range(3):
            await _claims(conn, 1)
            raw = await conn._conn.get()
            value = (await raw.execute(sa.text("SHOW enable_bitmapscan"))).scalar_one()
            assert value == "off"
    finally:
        await conn.close()
        await engine.dispose()


async def test_behind_a_transaction_pooler_the_claim_keeps_its_set_local(db_url: str) -> None:
    engine = db_engine.create(
        db_url, pool_size=2, max_overflow=0, pooler=config.DatabasePooler.TRANSACTION
    )
    conn = claiming.ClaimConnection(engine)
    try:
        assert not conn.session_setting
        await queue_jobs.enqueue_many(engine, kind=noop.NOOP_KIND, count=10)
        with roundtrips.counting(engine) as counter:
            assert await _claims(conn, 2) == 10
        assert counter.snapshot() == {"begin": 2, "statement": 4, "commit": 2, "rollback": 0}
    finally:
        await conn.close()
        await engine.dispose()
