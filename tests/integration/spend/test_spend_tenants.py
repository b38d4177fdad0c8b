"""Tokens per tenant: each source's runs go out with its own account's token.

The old system stored a token per user but its worker used one token for everyone. The
simulator records which token started each run (a digest) and which tokens asked about
it afterwards; every request for a brand's runs must carry that brand's token.
"""

from __future__ import annotations

import sqlalchemy as sa
from spend_kit import DEFAULT_TOKEN, TOKEN_A, TOKEN_B, SpendKit

from kairo_apify_sim import platform
from kairo_ingest import metrics
from kairo_ingest.apify import client as apify_client
from kairo_ingest.db import tables
from kairo_ingest.pipeline import compile_job


async def test_every_request_for_a_brands_runs_carries_that_brands_token(kit: SpendKit) -> None:
    await kit.account("tenant-a", TOKEN_A)
    await kit.account("tenant-b", TOKEN_B)
    expected = {}
    for account, token in (("tenant-a", TOKEN_A), ("tenant-b", TOKEN_B), (None, DEFAULT_TOKEN)):
        brand, _ = await kit.brand(account)
        expected[brand] = (account or "default", platform.token_tag(token))
        result = await compile_job.run(kit.deps(), await kit.lease(brand))
        assert len(result.evidence_status["refreshed"]) == 2, result.evidence_status

    async with kit.engine.connect() as conn:
        runs = (await conn.execute(sa.select(tables.apify_runs))).all()
    assert len(runs) == 6
    by_id = {s["id"]: s for s in kit.sim.state.run_summaries()}
    for run in runs:
        account, tag = expected[run.brand_id]
        assert run.account == account
        summary = by_id[run.apify_run_id]
        assert summary["tokenTag"] == tag, (account, summary)
        # Start, waits, INPUT reads and dataset pages: all with the brand's token.
        assert set(summary["requestTokenTags"]) == {tag}, summary
    assert kit.sim.stats()["foreignTokenRequests"] == 0


async def test_cost_is_recorded_per_run_totalled_per_job_and_counted(kit: SpendKit) -> None:
    await kit.account("tenant-a", TOKEN_A)
    brand, _ = await kit.brand("tenant-a")
    before = (
        metrics.REGISTRY.get_sample_value(
            "kairo_apify_spent_usd_total",
            {"account": "tenant-a", "actor": "apify~instagram-scraper"},
        )
        or 0.0
    )
    result = await compile_job.run(kit.deps(), await kit.lease(brand))

    async with kit.engine.connect() as conn:
        runs = (await conn.execute(sa.select(tables.apify_runs))).all()
    by_id = {s["id"]: s for s in kit.sim.state.run_summaries()}
    for run in runs:
        assert run.usage_total_usd is not None
        assert run.usage_total_usd > 0
        assert float(run.usage_total_usd) == by_id[run.apify_run_id]["usageTotalUsd"]
        assert run.usage is not None
        assert "ACTOR_COMPUTE_UNITS" in run.usage
    entries = result.evidence_status["refreshed"]
    assert all(e["usage_total_usd"] > 0 for e in entries)
    total = round(sum(float(r.usage_total_usd) for r in runs), 6)
    assert result.evidence_status["cost_usd"] == total
    instagram = next(r for r in runs if r.actor_id == "apify~instagram-scraper")
    after = metrics.REGISTRY.get_sample_value(
        "kairo_apify_spent_usd_total",
        {"account": "tenant-a", "actor": "apify~instagram-scraper"},
    )
    assert after is not None
    assert abs(after - before - float(instagram.usage_total_usd)) < 1e-9


async def test_tokens_never_reach_the_database_or_metrics_in_clear(kit: SpendKit) -> None:
    await kit.account("tenant-a", TOKEN_A)
    brand, _ = await kit.brand("tenant-a")
    await compile_job.run(kit.deps(), await kit.lease(brand))
    dump = await kit.dump()
    assert "tenant-a" in dump  # the dump does hold the accounts table
    rendered = metrics.render().decode()
    for token in (TOKEN_A, DEFAULT_TOKEN):
        assert token not in dump
        assert token not in rendered


async def test_a_reencrypted_token_keeps_its_client_and_a_new_token_closes_the_old_one(
    kit: SpendKit,
) -> None:
    """``accounts rotate-key`` rewrites every ciphertext but no token: the worker keeps the
    account's client (a new one per rotation was an open connection pool each time). A
    really new token gets a new client; the old one is closed with the rest, not dropped."""
    made: list[apify_client.ApifyClient] = []
    factory = kit.tenants._factory

    def counting(token: str) -> apify_client.ApifyClient:
        made.append(factory(token))
        return made[-1]

    kit.tenants._factory = counting
    await kit.account("acme", TOKEN_A)
    first = (await kit.tenants.resolve("acme")).api

    async def set_ciphertext(token: str) -> None:
        async with kit.engine.begin() as conn:
            await conn.execute(
                sa.update(tables.accounts)
                .where(tables.accounts.c.name == "acme")
                .values(token_ciphertext=kit.box.encrypt(token))
            )

    await set_ciphertext(TOKEN_A)  # what rotate-key does: same token, new ciphertext
    assert (await kit.tenants.resolve("acme")).api is first
    assert len(made) == 1

    await set_ciphertext(TOKEN_B)  # a new token
    second = (await kit.tenants.resolve("acme")).api
    assert second is not first
    assert len(made) == 2
    await kit.tenants.aclose()
    assert all(api._http.is_closed for api in made)
