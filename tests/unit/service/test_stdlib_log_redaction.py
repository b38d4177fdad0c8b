"""Third-party stdlib log records (asyncio, uvicorn, SQLAlchemy) go through redaction too."""

from __future__ import annotations

import logging

import pytest

from kairo_ingest import logs, redaction

SECRET = "apify_api_stdlib_0123456789abcdef"


def test_a_stdlib_record_and_its_traceback_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    redaction.register_secret(SECRET)
    logs.configure(level="INFO", json_format=True)
    logger = logging.getLogger("kairo.test.thirdparty")
    try:
        raise RuntimeError(f"failed near {SECRET}")
    except RuntimeError:
        logger.error(
            "request to https://user:hunter2pass@proxy.example failed: %s", SECRET, exc_info=True
        )
    assert "RuntimeError" in caplog.text
    assert SECRET not in caplog.text
    assert "hunter2pass" not in caplog.text


def test_a_url_password_is_masked_whatever_the_scheme() -> None:
    assert "s3cret" not in redaction.redact("base http://kairo:s3cret@apify-proxy:8080/v2")
