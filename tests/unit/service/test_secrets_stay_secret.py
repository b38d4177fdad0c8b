from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from kairo_ingest import config, errors, logs, redaction

TOKEN = "apify_api_Zx9QvLm2Rt7Kp4Wn8Yb3"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    out = io.StringIO()
    logs.configure(level="DEBUG", json_format=True)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=out))
    yield out
    structlog.reset_defaults()


def test_the_redaction_processor_drops_the_token_and_authorization_values(
    captured: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAIRO_APIFY_TOKEN", TOKEN)
    config.load()  # registers the token as a secret
    log = logs.get("test")
    log.info(
        "request", headers={"Authorization": f"Bearer {TOKEN}"}, url=f"https://x/?token={TOKEN}"
    )
    log.info(f"free text with {TOKEN} inside", authorization="Bearer abc.def")
    log.warning("nested", detail=[{"apify_token": TOKEN}, ("x", TOKEN)])
    text = captured.getvalue()
    assert TOKEN not in text
    assert "abc.def" not in text
    records = [json.loads(line) for line in text.splitlines()]
    assert records[0]["headers"]["Authorization"] == redaction.MASK
    assert records[1]["authorization"] == redaction.MASK


def test_context_variables_name_the_job_in_every_line(captured: io.StringIO) -> None:
    with logs.bind(job_id="j-1", brand_id="b-1", source_id=None):
        logs.get("test").info("inside")
    logs.get("test").info("outside")
    inside, outside = (json.loads(line) for line in captured.getvalue().splitlines())
    assert (inside["job_id"], inside["brand_id"]) == ("j-1", "b-1")
    assert "source_id" not in inside
    assert "job_id" not in outside


def test_settings_and_errors_never_show_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIRO_APIFY_TOKEN", TOKEN)
    settings = config.load()
    assert TOKEN not in repr(settings)
    assert TOKEN not in str(settings.model_dump())
    error = errors.ApifyAuthError(f"401 for Authorization: Bearer {TOKEN}")
    assert TOKEN not in str(error)
    assert TOKEN not in repr(error)


def test_a_bad_setting_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIRO_LEASE_SECONDS", "abc")
    with pytest.raises(errors.ConfigError, match="KAIRO_LEASE_SECONDS") as caught:
        config.load()
    assert caught.value.variable == "KAIRO_LEASE_SECONDS"
    monkeypatch.delenv("KAIRO_LEASE_SECONDS")
    monkeypatch.setenv("KAIRO_DISABLED_CAPABILITIES", "instagram.stories")
    with pytest.raises(errors.ConfigError, match="KAIRO_DISABLED_CAPABILITIES"):
        config.load()
