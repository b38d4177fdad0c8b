"""The update rule for an evidence item that already exists.

- ``raw_refs`` gains the new refs, without duplicates, old ones first.
- ``published_at``, ``title`` and ``text_secondary`` keep their old value when the new one is
  empty (None or blank). Normalizers never emit ``""`` for these, so in SQL this is
  ``COALESCE(excluded.x, items.x)`` (``NULLIF(excluded.x, '')`` for belt and braces).
- Everything else is overwritten.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence

from kairo_ingest.domain.normalize import base

RAW_REF_KEYS = ("apify_run_id", "raw_item_id")


def _ref_key(ref: Mapping[str, object]) -> str:
    if all(ref.get(key) is not None for key in RAW_REF_KEYS):
        return json.dumps([str(ref[key]) for key in RAW_REF_KEYS])
    return json.dumps(dict(ref), sort_keys=True, default=str)


def merge_raw_refs(
    old: Sequence[Mapping[str, object]], new: Sequence[Mapping[str, object]]
) -> list[dict[str, object]]:
    """``old`` then the refs of ``new`` not already present, each ref once.

    Two refs are the same when their ``apify_run_id`` and ``raw_item_id`` are equal as
    strings (a UUID and its text are the same ref); refs missing either key are compared whole.
    Entries that are not objects are dropped.
    """
    merged: dict[str, dict[str, object]] = {}
    for ref in [*old, *new]:
        if isinstance(ref, Mapping):
            merged.setdefault(_ref_key(ref), dict(ref))
    return list(merged.values())


def _empty(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def merge_update(old: base.NormalizedItem, new: base.NormalizedItem) -> base.NormalizedItem:
    """The item to store when ``new`` arrives for an existing ``old`` with the same key."""
    return dataclasses.replace(
        new,
        published_at=old.published_at if new.published_at is None else new.published_at,
        title=old.title if _empty(new.title) else new.title,
        text_secondary=old.text_secondary if _empty(new.text_secondary) else new.text_secondary,
    )
