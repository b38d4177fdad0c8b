from __future__ import annotations

import annotated_types

from kairo_ingest import config
from kairo_ingest.cli import argtypes


def test_the_concurrency_bound_is_the_settings_bound() -> None:
    bounds = config.Settings.model_fields["concurrency"].metadata
    highest = next(b.le for b in bounds if isinstance(b, annotated_types.Le))
    assert highest == argtypes.MAX_CONCURRENCY


def test_json_depth_is_measured_outside_strings() -> None:
    assert argtypes._bracket_depth('{"a": "[[[[{{{{", "b": [[1]]}') == 3
    assert argtypes._bracket_depth('{"a": "\\"[[["}') == 1
