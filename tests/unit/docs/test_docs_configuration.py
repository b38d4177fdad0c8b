"""docs/configuration.md is generated from the settings' descriptions, and is up to date."""

from __future__ import annotations

import importlib.util
import pathlib
from types import ModuleType

import pydantic
import pytest

from kairo_ingest import config

ROOT = pathlib.Path(__file__).resolve().parents[3]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("settings_doc", ROOT / "scripts/settings_doc.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_setting_has_a_description() -> None:
    groups = [config.Settings, config.Caps, config.Features]
    missing = [
        f"{model.__name__}.{name}"
        for model in groups
        for name, field in model.model_fields.items()
        if not (field.description or "").strip()
    ]
    assert missing == []


def test_the_configuration_page_is_generated_from_them_and_up_to_date() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert page == _generator().render(), "run: python scripts/settings_doc.py"


def test_the_page_names_every_variable_with_its_default() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert "| `KAIRO_CONCURRENCY` | `50` |" in page
    assert "| `KAIRO_CAP_INSTAGRAM_POSTS` | `8` |" in page
    assert "| `KAIRO_FEATURE_LINKEDIN_PROFILE_POSTS` | `false` |" in page
    assert "| `KAIRO_MIGRATIONS_DIR` | unset |" in page


def test_a_setting_without_a_description_stops_the_generator() -> None:
    generator = _generator()

    class Undocumented(pydantic.BaseModel):
        documented: int = pydantic.Field(1, description="a setting")
        silent: int = 2

    with pytest.raises(generator.MissingDescription, match="KAIRO_X_SILENT"):
        generator._rows("KAIRO_X_", Undocumented)
