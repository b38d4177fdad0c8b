"""Settings that decide what a worker does on its own: no silent fake Apify, and
retention 0 keeps every finished job. Unit-level, so their mutants die in a second
(the CLI's end-to-end tests check the same through a subprocess)."""

from __future__ import annotations

import datetime as dt

import pytest

from kairo_ingest import config, errors
from kairo_ingest.service import apify_access
from kairo_ingest.worker import parameters


@pytest.fixture(autouse=True)
def _no_apify_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("KAIRO_APIFY_TOKEN", "KAIRO_APIFY_SIMULATOR", "KAIRO_APIFY_BASE_URL"):
        monkeypatch.delenv(variable, raising=False)


def test_run_without_a_token_refuses_instead_of_using_the_simulator() -> None:
    settings = config.load(apify_token=None)
    assert not apify_access.wants_builtin(settings)
    with pytest.raises(errors.ConfigError) as caught:
        apify_access.require_token(settings)
    assert "KAIRO_APIFY_TOKEN" in caught.value.message


def test_the_simulator_is_used_only_when_asked_for() -> None:
    assert apify_access.wants_builtin(config.load(apify_token=None), demo=True)
    asked = config.load(apify_token=None, apify_simulator=True)
    assert apify_access.wants_builtin(asked)
    apify_access.require_token(asked)  # no error: asked for explicitly
    assert apify_access.label(asked) == apify_access.SIMULATOR_LABEL


def test_retention_0_keeps_every_finished_job() -> None:
    settings = config.load(finished_job_retention_days=0)
    assert settings.finished_job_retention is None
    built = parameters.WorkerConfig.from_settings(settings, owner="t")
    assert built.retention is None  # no pruner runs


def test_a_positive_retention_is_a_duration() -> None:
    settings = config.load(finished_job_retention_days=0.5)
    assert settings.finished_job_retention == dt.timedelta(hours=12)
