"""One settings surface: caps, feature flags and the migrations folder are settings like
the rest, read from the environment or ``.env`` and validated at start (a bad value is a
ConfigError naming its variable: exit 2)."""

from __future__ import annotations

import os
import pathlib

import pytest

from kairo_ingest import config, errors
from kairo_ingest.db import migrate
from kairo_ingest.domain import registry

ROOT = pathlib.Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    """No KAIRO_* variable from outside, and no stray .env."""
    for name in list(os.environ):
        if name.startswith("KAIRO_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def refused(monkeypatch: pytest.MonkeyPatch, **variables: str) -> errors.ConfigError:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    try:
        config.load()
    except errors.ConfigError as exc:
        return exc
    raise AssertionError(f"{variables} was accepted")


def test_caps_default_to_the_registry() -> None:
    caps = config.load().caps_by_pair
    assert caps == {spec.key: spec.default_cap for spec in registry.SPECS.values()}


def test_a_cap_is_read_from_the_environment_and_from_dotenv(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    monkeypatch.setenv("KAIRO_CAP_INSTAGRAM_POSTS", " 20 ")
    (tmp_path / ".env").write_text("KAIRO_CAP_WEB_CRAWL_PAGES=2\n")
    caps = config.load().caps_by_pair
    assert (caps["instagram.posts"], caps["web.crawl_pages"], caps["instagram.reels"]) == (20, 2, 6)


@pytest.mark.parametrize("value", ["0", "-3", "abc", "2.5", "1e3", "0x10", "9999999999"])
def test_a_bad_cap_exits_2_naming_its_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    exc = refused(monkeypatch, KAIRO_CAP_INSTAGRAM_POSTS=value)
    assert exc.variable == "KAIRO_CAP_INSTAGRAM_POSTS"
    assert exc.message.startswith("invalid setting KAIRO_CAP_INSTAGRAM_POSTS: ")


def test_a_blank_cap_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIRO_CAP_INSTAGRAM_POSTS", " ")
    assert config.load().caps_by_pair["instagram.posts"] == 8


@pytest.mark.parametrize(
    "variable", ["KAIRO_CAP_INSTAGRAM_POST", "KAIRO_CAP_MYSPACE_POSTS", "KAIRO_FEATURE_WEB"]
)
def test_a_misspelt_cap_or_flag_exits_2_listing_the_known_ones(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    exc = refused(monkeypatch, **{variable: "1"})
    assert exc.variable == variable
    assert "KAIRO_CAP_INSTAGRAM_POSTS" in exc.message
    assert "KAIRO_FEATURE_LINKEDIN_PROFILE_POSTS" in exc.message


@pytest.mark.parametrize(
    ("value", "on"),
    [("1", True), ("true", True), ("TRUE", True), ("yes", True), ("on", True), ("0", False),
     ("false", False), ("no", False), ("off", False), ("", False)],
)  # fmt: skip
def test_a_feature_flag_is_on_or_off(monkeypatch: pytest.MonkeyPatch, value: str, on: bool) -> None:
    monkeypatch.setenv("KAIRO_FEATURE_LINKEDIN_PROFILE_POSTS", value)
    features = config.load().enabled_features
    assert ("linkedin.profile_posts" in features) is on


@pytest.mark.parametrize("value", ["2", "enabled", "maybe"])
def test_a_bad_feature_flag_exits_2_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    exc = refused(monkeypatch, KAIRO_FEATURE_LINKEDIN_PROFILE_POSTS=value)
    assert exc.variable == "KAIRO_FEATURE_LINKEDIN_PROFILE_POSTS"


def test_the_caps_and_flags_are_exactly_the_registrys() -> None:
    assert set(config.Caps.model_fields) == {s.setting_name for s in registry.SPECS.values()}
    flagged = {s.setting_name for s in registry.SPECS.values() if s.feature_flag is not None}
    assert set(config.Features.model_fields) == flagged
    for spec in registry.SPECS.values():
        assert config.Caps.model_fields[spec.setting_name].default == spec.default_cap


def test_an_unknown_disabled_pair_exits_2_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exc = refused(monkeypatch, KAIRO_DISABLED_CAPABILITIES="linkedin.company_posts,ig.stories")
    assert exc.variable == "KAIRO_DISABLED_CAPABILITIES"
    assert "ig.stories" in exc.message
    assert "instagram.posts" in exc.message  # the valid pairs are listed


def test_disabled_pairs_are_normalized(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIRO_DISABLED_CAPABILITIES", " WEB.crawl_pages , linkedin.company_posts,")
    disabled = config.load().disabled_capability_set
    assert disabled == {"web.crawl_pages", "linkedin.company_posts"}


def test_a_migrations_dir_without_alembic_exits_2_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    exc = refused(monkeypatch, KAIRO_MIGRATIONS_DIR=str(tmp_path))
    assert exc.variable == "KAIRO_MIGRATIONS_DIR"


def test_the_migrations_dir_comes_from_the_settings_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIRO_MIGRATIONS_DIR", str(ROOT / "migrations"))
    settings = config.load()
    assert migrate.migrations_dir(settings.migrations_dir) == ROOT / "migrations"
    # The db layer reads no environment: only what the settings hand it counts.
    monkeypatch.setenv("KAIRO_MIGRATIONS_DIR", "/nowhere")
    assert migrate.migrations_dir() == ROOT / "migrations"
