"""Property tests: no raw value, however malformed, makes ``normalize`` raise, and every
result it returns is storable (JSON-safe, UTF-8-safe, aware UTC, known counts only)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from domain_samples import PROPERTY_SETTINGS, SAMPLES, sample
from hypothesis import given
from hypothesis import strategies as st

from kairo_ingest.domain import normalize, registry

PAIRS = sorted(SAMPLES)
SKIP_REASONS = {"error_item", "missing_id", "missing_url"}


def _keys(value: object, found: set[str]) -> set[str]:
    if isinstance(value, dict):
        for key, child in value.items():
            found.add(key)
            _keys(child, found)
    elif isinstance(value, list):
        for child in value:
            _keys(child, found)
    return found


# Real field names make random objects hit the normalizers' code paths.
ERROR_KEYS = {"error", "errorDescription", "noResults"}
KNOWN_KEYS = sorted(
    _keys(list(SAMPLES.values()), set()) | {"@graph", "@type", "datePublished"} | ERROR_KEYS
)

_text = st.one_of(
    st.text(max_size=12),
    st.text(st.characters(exclude_categories=()), max_size=6),  # surrogates, NUL, controls
    st.sampled_from(
        [
            "",
            " ",
            "-1",
            "1,234",
            "https://",
            "https://x.example/a b",
            "http://[::1",
            "/relative",
            "2021-12-21",
            "2026-01-07 20:00:09",
            "10 months ago",
            "urn:li:activity:1",
            "urn:li:ugcPost:2",
            "CollectionPage",
            "og:image",
            "#tag",
        ]
    ),
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(),
    _text,
)
JSON_VALUES = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=6)), children, max_size=5
        ),
    ),
    max_leaves=20,
)


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for key, child in value.items() for s in (*_strings(key), *_strings(child))]
    if isinstance(value, list | tuple):
        return [s for child in value for s in _strings(child)]
    return []


def check(pair: tuple[str, str], result: object) -> None:
    """The invariants every normalizer result keeps."""
    if isinstance(result, normalize.Skip):
        assert result.reason in SKIP_REASONS or result.reason.startswith("invalid_field:")
        return
    assert isinstance(result, normalize.NormalizedItem)
    spec = registry.get_spec(*pair)
    assert result.platform == spec.platform
    assert result.content_type == spec.content_type
    if pair[0] == "web":
        assert result.external_id is None
    else:
        assert isinstance(result.external_id, str)
        assert result.external_id
    assert isinstance(result.canonical_url, str)
    assert result.canonical_url.lower().startswith(("http://", "https://"))
    assert result.published_at is None or result.published_at.utcoffset() == dt.timedelta(0)
    assert isinstance(result.author_ref, str)
    assert isinstance(result.text_primary, str)
    for optional in (result.title, result.text_secondary):
        assert optional is None or (isinstance(optional, str) and optional.strip())
    assert isinstance(result.hashtags, tuple)
    assert all(isinstance(tag, str) and tag for tag in result.hashtags)
    for count in result.metrics.values():
        assert type(count) is int
        assert count >= 0
    record = result.as_record()
    record["published_at"] = None
    json.dumps(record, allow_nan=False)  # raises on NaN, inf, non-JSON values
    for text in _strings(record):
        assert "\x00" not in text
        text.encode("utf-8")  # no lone surrogates


@PROPERTY_SETTINGS
@given(pair=st.sampled_from(PAIRS), raw=JSON_VALUES)
def test_any_json_value_never_raises(pair: tuple[str, str], raw: Any) -> None:
    check(pair, normalize.normalize(*pair, raw))


@PROPERTY_SETTINGS
@given(
    pair=st.sampled_from(PAIRS),
    raw=st.dictionaries(st.sampled_from(KNOWN_KEYS), JSON_VALUES, max_size=12),
)
def test_objects_with_real_keys_and_random_values_never_raise(
    pair: tuple[str, str], raw: Any
) -> None:
    check(pair, normalize.normalize(*pair, raw))


@PROPERTY_SETTINGS
@given(data=st.data(), pair=st.sampled_from(PAIRS))
def test_samples_with_fields_replaced_or_dropped_never_raise(
    data: st.DataObject, pair: tuple[str, str]
) -> None:
    raw = sample(SAMPLES[pair])
    keys = sorted(raw)
    for key in data.draw(st.lists(st.sampled_from(keys), min_size=1, max_size=5, unique=True)):
        if data.draw(st.booleans()):
            raw[key] = data.draw(JSON_VALUES)
        else:
            del raw[key]
    check(pair, normalize.normalize(*pair, raw))


def _paths(value: object, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        for key, child in value.items():
            paths.append((*prefix, key))
            paths.extend(_paths(child, (*prefix, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            paths.append((*prefix, index))
            paths.extend(_paths(child, (*prefix, index)))
    return paths


@PROPERTY_SETTINGS
@given(data=st.data(), pair=st.sampled_from(PAIRS))
def test_samples_with_nested_fields_replaced_never_raise(
    data: st.DataObject, pair: tuple[str, str]
) -> None:
    raw = sample(SAMPLES[pair])
    paths = _paths(raw)
    for path in data.draw(st.lists(st.sampled_from(paths), min_size=1, max_size=4)):
        parent: Any = raw
        try:
            for step in path[:-1]:
                parent = parent[step]
            parent[path[-1]] = data.draw(JSON_VALUES)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier replacement removed this path
    check(pair, normalize.normalize(*pair, raw))


@PROPERTY_SETTINGS
@given(
    pair=st.sampled_from(PAIRS), extra=st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4)
)
def test_unknown_extra_fields_do_not_change_the_item(
    pair: tuple[str, str], extra: dict[str, Any]
) -> None:
    base_item = normalize.normalize(*pair, sample(SAMPLES[pair]))
    extra = {key: value for key, value in extra.items() if key not in KNOWN_KEYS}
    assert normalize.normalize(*pair, {**sample(SAMPLES[pair]), **extra}) == base_item
