"""One hostile dataset item never costs the rest of its page.

Each hostile item sits among good ones; every good item must be stored and normalized,
and each hostile one kept as a raw row (the value itself, or a placeholder where the
database refuses it) with a skip reason.
"""

from __future__ import annotations

from typing import Any

import pytest
from pipeline_kit import Kit

from kairo_ingest.apify import models as apify_models
from kairo_ingest.db import items, runs, sources, tables
from kairo_ingest.domain import registry
from kairo_ingest.domain.normalize import limits
from kairo_ingest.pipeline import store
from kairo_ingest.queue import jobs as queue_jobs

TIKTOK = [("tiktok", "profile_videos", "@acme")]


def _good(n: int) -> dict[str, Any]:
    video = f"76{n:017d}"
    return {
        "id": video,
        "text": f"video {n}",
        "authorMeta": {"name": "acme"},
        "webVideoUrl": f"https://www.tiktok.com/@acme/video/{video}",
    }


def _nested(depth: int) -> Any:
    value: Any = {"leaf": 1}
    for _ in range(depth):
        value = {"a": value}
    return value


HOSTILE: dict[str, tuple[Any, str]] = {
    # name: (item, skip reason it is stored with)
    "string": ("not an object", "invalid_field:item"),
    "number": (42, "invalid_field:item"),
    "null": (None, "invalid_field:item"),
    "list": ([1, {"id": "x"}], "invalid_field:item"),
    "undecodable": (
        apify_models.UnparsableItem("undecodable", '{"id": "\\xff\\xfe'),
        "unparsable:undecodable",
    ),
    "client_too_deep": (
        apify_models.UnparsableItem("too_deep", "[" * 100),
        "unparsable:too_deep",
    ),
    "invalid_json": (
        apify_models.UnparsableItem("invalid_json", '{"id": 1,,}'),
        "unparsable:invalid_json",
    ),
    "too_deep_to_encode": (_nested(5000), "unstorable:too_deep"),
    "nan": ({**_good(990), "playCount": float("nan")}, "unstorable:invalid_json"),
    "infinity": ({**_good(991), "diggCount": float("inf")}, "unstorable:invalid_json"),
}


async def _intent(kit: Kit, lease: queue_jobs.Lease, source: sources.Source) -> runs.Run:
    spec = registry.get_spec(source.platform, source.capability)
    async with kit.engine.begin() as conn:
        return await runs.create_intent(
            conn,
            job_id=lease.job_id,
            source_id=source.id,
            brand_id=source.brand_id,
            actor_id=spec.actor_id,
            run_input=spec.build_input(source.identifier, source.settings, spec.default_cap),
            item_cap=spec.default_cap,
            attempt=1,
        )


@pytest.mark.parametrize("name", sorted(HOSTILE))
async def test_one_hostile_item_among_good_ones_costs_only_itself(kit: Kit, name: str) -> None:
    hostile, reason = HOSTILE[name]
    brand, (source,) = await kit.brand(TIKTOK)
    lease = await kit.lease(brand)
    run = await _intent(kit, lease, source)
    page = [(i, _good(i)) for i in range(6)]
    page.insert(3, (100, hostile))

    counts = await store.store_page(
        kit.engine, lease, run, platform="tiktok", capability="profile_videos", page=page
    )

    assert counts == store.Counts(raw=7, created=6, updated=0, skipped=1)
    raw = {r.item_index: r for r in await kit.rows(tables.raw_apify_items)}
    assert sorted(raw) == [0, 1, 2, 3, 4, 5, 100]
    assert [raw[i].skip_reason for i in range(6)] == [None] * 6
    assert raw[100].skip_reason == reason
    stored = raw[100].raw_json
    if reason == "invalid_field:item":
        assert stored == hostile, "a non-object JSON value is stored as itself"
    else:
        assert set(stored) == {"kairo_unstorable", "excerpt"}
        assert stored["kairo_unstorable"] == reason.split(":", 1)[1]
        assert len(stored["excerpt"]) <= items.EXCERPT_CHARS
    evidence = await kit.rows(tables.normalized_evidence_items)
    assert sorted(e.external_id for e in evidence) == sorted(_good(i)["id"] for i in range(6))


async def test_a_value_the_database_refuses_is_split_out_of_its_page(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever slips past the encoder (here an escaped NUL, which jsonb refuses) is found
    by splitting the page and stored as a placeholder; the other items are stored."""
    brand, (source,) = await kit.brand(TIKTOK)
    lease = await kit.lease(brand)
    run = await _intent(kit, lease, source)
    poison = {**_good(50), "text": "poison"}
    encode = items.encode_raw

    def leaky(value: Any) -> str:
        return '{"text":"\\u0000"}' if value is poison else encode(value)

    monkeypatch.setattr(items, "encode_raw", leaky)
    page = [(i, _good(i)) for i in range(9)]
    page.insert(5, (50, poison))

    counts = await store.store_page(
        kit.engine, lease, run, platform="tiktok", capability="profile_videos", page=page
    )

    assert counts == store.Counts(raw=10, created=9, updated=0, skipped=1)
    raw = {r.item_index: r for r in await kit.rows(tables.raw_apify_items)}
    assert raw[50].skip_reason == store.UNSTORABLE
    assert raw[50].raw_json["kairo_unstorable"] == "refused"
    assert await kit.count(tables.normalized_evidence_items) == 9


async def test_renormalizing_keeps_the_skip_reason_of_a_placeholder(kit: Kit) -> None:
    brand, (source,) = await kit.brand(TIKTOK)
    lease = await kit.lease(brand)
    run = await _intent(kit, lease, source)
    page = [(0, _good(0)), (1, apify_models.UnparsableItem("too_deep", "[[[")), (2, _good(2))]
    await store.store_page(
        kit.engine, lease, run, platform="tiktok", capability="profile_videos", page=page
    )

    counts = await store.renormalize(
        kit.engine, lease, run, platform="tiktok", capability="profile_videos", cap=10
    )

    assert counts.skipped == 1
    raw = {r.item_index: r.skip_reason for r in await kit.rows(tables.raw_apify_items)}
    assert raw == {0: None, 1: "unparsable:too_deep", 2: None}


async def test_a_huge_text_is_cut_in_evidence_and_kept_whole_raw(kit: Kit) -> None:
    """A 5 MB caption used to be copied whole into text_primary; an id too long for the
    unique index made PostgreSQL refuse the whole page."""
    brand, (source,) = await kit.brand(TIKTOK)
    lease = await kit.lease(brand)
    run = await _intent(kit, lease, source)
    huge = "#big " + "x" * (5 * 1024 * 1024)
    page = [
        (0, _good(0)),
        (1, {**_good(1), "text": huge}),
        (2, {**_good(2), "id": "7" * 10_000}),
        (3, _good(3)),
    ]

    counts = await store.store_page(
        kit.engine, lease, run, platform="tiktok", capability="profile_videos", page=page
    )

    assert counts == store.Counts(raw=4, created=3, updated=0, skipped=1)
    raw = {r.item_index: r for r in await kit.rows(tables.raw_apify_items)}
    assert raw[1].raw_json["text"] == huge
    assert (raw[2].skip_reason, len(raw[2].raw_json["id"])) == ("invalid_field:id", 10_000)
    (cut,) = [
        e
        for e in await kit.rows(tables.normalized_evidence_items)
        if e.external_id == _good(1)["id"]
    ]
    assert len(cut.text_primary) == limits.MAX_TEXT_CHARS
    assert cut.flags["truncated"] == ["text_primary"]
