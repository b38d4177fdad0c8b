"""Raw dataset items and normalized evidence items, written in batches.

Both writes are single set-based statements over ``unnest`` arrays, so a batch of a
thousand items costs one round trip and one prepared statement, whatever its size.
JSON goes over the wire as ``text[]`` cast to ``jsonb[]`` by the server: the driver
encodes a text array in C, where a ``jsonb[]`` parameter costs a Python codec call per
element on the event loop.

* raw items: ``INSERT ... ON CONFLICT (apify_run_id, item_index, raw_partition_at) DO
  NOTHING`` - a re-fetch after a crash neither duplicates nor deletes. Every item of a
  run carries the run's ``raw_partition_at`` (read from ``apify_runs`` by the statement
  itself), the key ``raw_apify_items`` is partitioned by day on, so the three columns are
  unique exactly when the first two are; reads and updates name it too, so PostgreSQL
  visits the run's one partition (docs/raw-retention.md);
* evidence: ``INSERT ... ON CONFLICT <the uniqueness rule> DO UPDATE`` - the database
  enforces dedupe, so two workers upserting the same items cannot race into
  duplicates. Rows are sorted by key so concurrent batches lock in the same order.
"""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.domain import normalize

# The run's partition key, for statements about one run's items.
_RUN_KEY = "(SELECT raw_partition_at FROM apify_runs WHERE id = CAST(:run_id AS uuid))"

_INSERT_RAW = sa.text(
    f"""
    INSERT INTO raw_apify_items (
        apify_run_id, item_index, raw_json, skip_reason, raw_partition_at)
    SELECT CAST(:run_id AS uuid), u.item_index, u.raw_json, u.skip_reason, {_RUN_KEY}
    FROM unnest(
        CAST(:indexes AS integer[]),
        CAST(CAST(:docs AS text[]) AS jsonb[]),
        CAST(:reasons AS text[]))
         AS u(item_index, raw_json, skip_reason)
    ON CONFLICT (apify_run_id, item_index, raw_partition_at) DO NOTHING
    RETURNING id, item_index
    """
)

_SET_SKIP_REASONS = sa.text(
    f"""
    UPDATE raw_apify_items AS r SET skip_reason = u.reason
    FROM unnest(CAST(:ids AS bigint[]), CAST(:reasons AS text[])) AS u(id, reason)
    WHERE r.apify_run_id = CAST(:run_id AS uuid) AND r.raw_partition_at = {_RUN_KEY}
      AND r.id = u.id AND r.skip_reason IS DISTINCT FROM u.reason
    """
)

_READ_RAW = sa.text(
    f"""
    SELECT id, item_index, raw_json FROM raw_apify_items
    WHERE apify_run_id = CAST(:run_id AS uuid) AND raw_partition_at = {_RUN_KEY}
      AND item_index >= :after AND item_index < :cap
    ORDER BY item_index
    LIMIT :limit
    """
)

# Shared by both uniqueness rules; {target} is the conflict target of the rule.
_UPSERT_EVIDENCE = """
    INSERT INTO normalized_evidence_items AS e (
        brand_id, platform, content_type, external_id, canonical_url, published_at,
        author_ref, title, text_primary, text_secondary, hashtags, metrics, media, flags,
        raw_refs)
    SELECT CAST(:brand_id AS uuid), u.* FROM unnest(
        CAST(:platform AS text[]), CAST(:content_type AS text[]), CAST(:external_id AS text[]),
        CAST(:canonical_url AS text[]), CAST(:published_at AS timestamptz[]),
        CAST(:author_ref AS text[]), CAST(:title AS text[]), CAST(:text_primary AS text[]),
        CAST(:text_secondary AS text[]),
        CAST(CAST(:hashtags AS text[]) AS jsonb[]), CAST(CAST(:metrics AS text[]) AS jsonb[]),
        CAST(CAST(:media AS text[]) AS jsonb[]), CAST(CAST(:flags AS text[]) AS jsonb[]),
        CAST(CAST(:raw_refs AS text[]) AS jsonb[])) AS u
    ON CONFLICT {target} DO UPDATE SET
        canonical_url = EXCLUDED.canonical_url,
        -- keep the old value where the new one is empty
        published_at = COALESCE(EXCLUDED.published_at, e.published_at),
        title = COALESCE(NULLIF(EXCLUDED.title, ''), e.title),
        text_secondary = COALESCE(NULLIF(EXCLUDED.text_secondary, ''), e.text_secondary),
        author_ref = EXCLUDED.author_ref,
        text_primary = EXCLUDED.text_primary,
        hashtags = EXCLUDED.hashtags,
        metrics = EXCLUDED.metrics,
        media = EXCLUDED.media,
        flags = EXCLUDED.flags,
        -- merge provenance without duplicates, keeping the order refs arrived in
        raw_refs = e.raw_refs || COALESCE(
            (SELECT jsonb_agg(r) FROM jsonb_array_elements(EXCLUDED.raw_refs) AS r
             WHERE NOT e.raw_refs @> jsonb_build_array(r)),
            '[]'::jsonb),
        updated_at = now()
    RETURNING (xmax = 0) AS inserted
"""
_UPSERT_BY_EXTERNAL_ID = sa.text(
    _UPSERT_EVIDENCE.format(
        target="(brand_id, platform, content_type, external_id) WHERE platform <> 'web'"
    )
)
_UPSERT_BY_URL = sa.text(
    _UPSERT_EVIDENCE.format(
        target="(brand_id, platform, content_type, canonical_url) WHERE platform = 'web'"
    )
)


# A JSON-escaped NUL (\u0000) not itself preceded by an escaping backslash.
_ESCAPED_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")
_SURROGATE = re.compile("[\ud800-\udfff]")


_ENCODERS = {
    allow_nan: json.JSONEncoder(
        ensure_ascii=False, default=str, separators=(",", ":"), allow_nan=allow_nan
    )
    for allow_nan in (True, False)
}
"""Built once: ``json.dumps`` with options builds an encoder per call, a third of its cost."""


def dumps(value: Any, *, allow_nan: bool = True) -> str:
    """JSON text that a jsonb column accepts.

    jsonb refuses NUL characters, so they are dropped; lone surrogates (not Unicode, so
    not encodable as UTF-8) become U+FFFD. Everything else is kept as the actor sent it.
    """
    text = _ENCODERS[allow_nan].encode(value)
    if "\\u0000" in text:
        text = _ESCAPED_NUL.sub(r"\1", text)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = _SURROGATE.sub("\ufffd", text)
    return text


EXCERPT_CHARS = 2000
"""How much of an unstorable item its placeholder keeps."""

TOO_DEEP = "too_deep"
INVALID_JSON = "invalid_json"


class Unencodable(Exception):
    """A raw value that cannot become jsonb text; ``reason`` is ``too_deep`` or ``invalid_json``."""

    def __init__(self, reason: str, excerpt: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.excerpt = excerpt


def encode_raw(value: Any) -> str:
    """:func:`dumps` for a raw dataset item, or :class:`Unencodable`.

    Any JSON value is kept as it is (a string or a list is stored as that JSON value).
    NaN and the infinities (Python's decoder accepts them, jsonb does not) raise
    ``invalid_json``; a value nested past the encoder's recursion limit raises
    ``too_deep`` (``json.dumps`` raises RecursionError there, which must never escape).
    """
    try:
        return dumps(value, allow_nan=False)
    except RecursionError:
        raise Unencodable(TOO_DEEP, f"{type(value).__name__} nested too deep to encode") from None
    except ValueError:
        raise Unencodable(INVALID_JSON, excerpt(dumps(value))) from None


def excerpt(text: str) -> str:
    """A short prefix of ``text`` that jsonb accepts (no NUL, no lone surrogate)."""
    return normalize.clean_text(text[:EXCERPT_CHARS])


def placeholder(reason: str, text: str) -> str:
    """The jsonb text stored in place of an item the database cannot hold as it is."""
    return dumps({"kairo_unstorable": reason, "excerpt": excerpt(text)})


def is_placeholder(raw_json: Any) -> bool:
    """True for a stored :func:`placeholder` (its skip reason was set when it was stored)."""
    return isinstance(raw_json, dict) and set(raw_json) == {"kairo_unstorable", "excerpt"}


@dataclasses.dataclass(frozen=True, slots=True)
class RawRow:
    id: int
    item_index: int
    raw_json: Any


JsonColumns = tuple[str, str, str, str]
"""An item's hashtags, metrics, media and flags as jsonb text (:func:`json_columns`)."""


def json_columns(item: normalize.NormalizedItem) -> JsonColumns:
    """Encode an item's JSON columns: CPU work the pipeline does off the event loop."""
    return (dumps(list(item.hashtags)), dumps(item.metrics), dumps(item.media), dumps(item.flags))


@dataclasses.dataclass(frozen=True, slots=True)
class EvidenceRow:
    """A normalized item and the raw items it came from, ready to upsert for a brand.

    ``columns`` is :func:`json_columns` of ``item`` when the caller encoded it already.
    """

    item: normalize.NormalizedItem
    raw_refs: list[dict[str, Any]]
    columns: JsonColumns | None = None

    def json_columns(self) -> JsonColumns:
        return self.columns if self.columns is not None else json_columns(self.item)


async def insert_raw(
    conn: sa_async.AsyncConnection,
    run_id: uuid.UUID,
    items: Sequence[tuple[int, str, str | None]],
) -> dict[int, int]:
    """Insert ``(item_index, raw_json_text, skip_reason)`` rows.

    Returns ``{item_index: id}`` for the rows that were new.
    """
    if not items:
        return {}
    # A value the database refuses arrives as errors.DatabaseValueError (the engine's error
    # boundary, db/dberrors.py): the pipeline isolates it (pipeline/store.py).
    result = await conn.execute(
        _INSERT_RAW,
        {
            "run_id": run_id,
            "indexes": [i for i, _, _ in items],
            "docs": [doc for _, doc, _ in items],
            "reasons": [reason for _, _, reason in items],
        },
    )
    return {row.item_index: row.id for row in result}


async def set_skip_reasons(
    conn: sa_async.AsyncConnection,
    run_id: uuid.UUID,
    reasons: Sequence[tuple[int, str | None]],
) -> None:
    """Set the skip reason of the run's raw items ``(id, reason)``."""
    if reasons:
        await conn.execute(
            _SET_SKIP_REASONS,
            {"run_id": run_id, "ids": [i for i, _ in reasons], "reasons": [r for _, r in reasons]},
        )


async def read_raw(
    conn: sa_async.AsyncConnection, run_id: uuid.UUID, *, after: int, cap: int, limit: int
) -> list[RawRow]:
    rows = await conn.execute(
        _READ_RAW, {"run_id": run_id, "after": after, "cap": cap, "limit": limit}
    )
    return [RawRow(r.id, r.item_index, r.raw_json) for r in rows]


def merge_duplicates(rows: Sequence[EvidenceRow]) -> tuple[list[EvidenceRow], int]:
    """Fold rows that share a key (duplicates inside one dataset page) into one.

    ``ON CONFLICT DO UPDATE`` cannot touch one row twice in a statement, so the batch is
    deduplicated first with the same update rule the database applies. Returns the rows
    sorted by key (so concurrent batches lock rows in one order) and how many were folded.
    """
    merged: dict[tuple[str, str, str], EvidenceRow] = {}
    for row in rows:
        key = row.item.dedupe_key
        previous = merged.get(key)
        if previous is not None:
            row = EvidenceRow(
                normalize.merge_update(previous.item, row.item),
                normalize.merge_raw_refs(previous.raw_refs, row.raw_refs),
                # merge_update takes every JSON column from the new item: its encoding holds.
                row.columns,
            )
        merged[key] = row
    return [merged[k] for k in sorted(merged)], len(rows) - len(merged)


@dataclasses.dataclass(frozen=True, slots=True)
class EvidenceBatch:
    """Evidence rows merged and laid out as statement parameters (:func:`evidence_batch`)."""

    statements: list[tuple[sa.TextClause, dict[str, Any]]]
    folded: int


def evidence_batch(brand_id: uuid.UUID, rows: Sequence[EvidenceRow]) -> EvidenceBatch:
    """Merge a batch's duplicates and build its upsert parameters: CPU only, no I/O, so a
    caller may run it off the event loop (the pipeline does)."""
    unique, folded = merge_duplicates(rows)
    statements = []
    for statement, part in (
        (_UPSERT_BY_EXTERNAL_ID, [r for r in unique if r.item.platform != "web"]),
        (_UPSERT_BY_URL, [r for r in unique if r.item.platform == "web"]),
    ):
        if not part:
            continue
        columns = [r.json_columns() for r in part]
        parameters = {
            "brand_id": brand_id,
            "platform": [r.item.platform.value for r in part],
            "content_type": [r.item.content_type.value for r in part],
            "external_id": [r.item.external_id for r in part],
            "canonical_url": [r.item.canonical_url for r in part],
            "published_at": [r.item.published_at for r in part],
            "author_ref": [r.item.author_ref for r in part],
            "title": [r.item.title for r in part],
            "text_primary": [r.item.text_primary for r in part],
            "text_secondary": [r.item.text_secondary for r in part],
            "hashtags": [c[0] for c in columns],
            "metrics": [c[1] for c in columns],
            "media": [c[2] for c in columns],
            "flags": [c[3] for c in columns],
            "raw_refs": [dumps(r.raw_refs) for r in part],
        }
        statements.append((statement, parameters))
    return EvidenceBatch(statements, folded)


async def upsert_evidence(
    conn: sa_async.AsyncConnection,
    brand_id: uuid.UUID,
    rows: Sequence[EvidenceRow] | EvidenceBatch,
) -> tuple[int, int]:
    """Upsert a batch (rows, or an :func:`evidence_batch` of them); return ``(created, updated)``.

    Duplicates within the batch count as updated.
    """
    batch = rows if isinstance(rows, EvidenceBatch) else evidence_batch(brand_id, rows)
    created, updated = 0, batch.folded
    for statement, parameters in batch.statements:
        result = await conn.execute(statement, parameters)
        for row in result:
            if row.inserted:
                created += 1
            else:
                updated += 1
    return created, updated
