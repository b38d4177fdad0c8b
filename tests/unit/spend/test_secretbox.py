"""Account tokens at rest: Fernet with rotation, and a keyed fingerprint."""

from __future__ import annotations

import hashlib

import pytest

from kairo_ingest import errors, redaction, secretbox

TOKEN = "apify_api_unitTESTunitTESTunitTEST42"


def test_encrypts_without_the_token_in_clear_and_decrypts_it() -> None:
    box = secretbox.SecretBox(secretbox.generate_key())
    sealed = box.encrypt(TOKEN)
    assert TOKEN not in sealed
    assert box.decrypt(sealed) == TOKEN


def test_a_token_sealed_under_an_old_key_opens_after_rotation_and_reseals_under_the_new() -> None:
    old, new = secretbox.generate_key(), secretbox.generate_key()
    sealed = secretbox.SecretBox(old).encrypt(TOKEN)
    rotated = secretbox.SecretBox(f"{new},{old}")
    assert rotated.decrypt(sealed) == TOKEN
    resealed = rotated.encrypt(rotated.decrypt(sealed))  # what accounts rotate-key does
    assert secretbox.SecretBox(new).decrypt(resealed) == TOKEN
    with pytest.raises(errors.ConfigError, match="KAIRO_SECRET_KEY"):
        secretbox.SecretBox(secretbox.generate_key()).decrypt(sealed)


def test_fingerprint_is_short_keyed_and_not_a_plain_hash_of_the_token() -> None:
    one = secretbox.SecretBox(secretbox.generate_key())
    two = secretbox.SecretBox(secretbox.generate_key())
    fingerprint = one.fingerprint(TOKEN)
    assert len(fingerprint) == 8
    assert fingerprint == one.fingerprint(TOKEN)
    assert fingerprint != two.fingerprint(TOKEN)  # depends on the key
    for digest in (hashlib.sha256, hashlib.sha1, hashlib.md5):
        assert not digest(TOKEN.encode()).hexdigest().startswith(fingerprint)


def test_decrypted_tokens_are_redacted_from_then_on() -> None:
    box = secretbox.SecretBox(secretbox.generate_key())
    token = "apify_api_redactMEredactMEredactME99"
    box.decrypt(box.encrypt(token))
    assert token not in redaction.redact(f"failed with {token} in the message")


@pytest.mark.parametrize("keys", ["", " , ", "not-a-fernet-key"])
def test_a_bad_key_is_a_config_error_naming_the_variable(keys: str) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        secretbox.SecretBox(keys)
    assert caught.value.variable == "KAIRO_SECRET_KEY"
