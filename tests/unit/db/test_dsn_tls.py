"""sslmode with certificate files follows libpq: a root certificate makes ``require`` verify."""

from __future__ import annotations

import pathlib
import ssl

import pytest

from kairo_ingest.db import dsn

CA = "/etc/ssl/certs/ca-certificates.crt"


def _context(mode: str) -> ssl.SSLContext:
    arg = dsn.ConnectOptions(sslmode=mode, sslrootcert=CA).ssl_argument()
    assert isinstance(arg, ssl.SSLContext)
    return arg


@pytest.fixture(autouse=True)
def _needs_a_ca_bundle() -> None:
    if not pathlib.Path(CA).is_file():
        pytest.skip(f"no CA bundle at {CA}")


def test_require_with_a_root_certificate_verifies_the_chain_but_not_the_name() -> None:
    context = _context("require")
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert not context.check_hostname


def test_verify_full_checks_the_name_too() -> None:
    context = _context("verify-full")
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname


def test_without_a_root_certificate_require_only_encrypts() -> None:
    assert dsn.ConnectOptions(sslmode="require").ssl_argument() == "require"
