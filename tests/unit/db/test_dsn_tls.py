"""sslmode with certificate files follows libpq: a root certificate makes ``require`` verify.

The root certificate is one the test makes (a self-signed CA), so the tests never depend
on, or skip for, a system CA bundle.
"""

from __future__ import annotations

import datetime as dt
import pathlib
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kairo_ingest.db import dsn


@pytest.fixture(scope="module")
def root_certificate(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PEM file holding one self-signed CA certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kairo test CA")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = pathlib.Path(tmp_path_factory.mktemp("ca")) / "root.crt"
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return str(path)


def _context(mode: str, root_certificate: str) -> ssl.SSLContext:
    arg = dsn.ConnectOptions(sslmode=mode, sslrootcert=root_certificate).ssl_argument()
    assert isinstance(arg, ssl.SSLContext)
    return arg


def test_require_with_a_root_certificate_verifies_the_chain_but_not_the_name(
    root_certificate: str,
) -> None:
    context = _context("require", root_certificate)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert not context.check_hostname


def test_verify_full_checks_the_name_too(root_certificate: str) -> None:
    context = _context("verify-full", root_certificate)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname


def test_without_a_root_certificate_require_only_encrypts() -> None:
    assert dsn.ConnectOptions(sslmode="require").ssl_argument() == "require"
