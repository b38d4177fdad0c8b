"""Account tokens at rest: Fernet encryption with key rotation, and a keyed fingerprint.

``KAIRO_SECRET_KEY`` holds one or more Fernet keys, comma-separated, newest first
(``Fernet.generate_key()``: 32 url-safe base64-encoded bytes). Encryption uses the first
key; decryption tries each (``MultiFernet``), so a new key can be put in front, the
tokens re-encrypted (``kairo-ingest accounts rotate-key``), and the old key dropped.

The fingerprint shown by ``accounts list`` is an HMAC-SHA256 of the token under a key
derived from the first secret key, first 8 hex characters: enough to tell two tokens
apart, useless for guessing one (a plain hash of a token could be matched against a
leaked token list offline). It is stored with the account when the token is added, so
putting a new key in front changes no fingerprint by itself; ``accounts rotate-key``
re-encrypts the tokens and recomputes every fingerprint under the new first key (and
prints old and new), so that all of them are keyed alike again. Every decrypted token
is registered with :mod:`kairo_ingest.redaction`, so logs and stored errors mask it.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography import fernet

from kairo_ingest import errors, redaction

SECRET_KEY_VARIABLE = "KAIRO_SECRET_KEY"  # noqa: S105 - the name of a variable
FINGERPRINT_HEX_CHARS = 8


class SecretBox:
    def __init__(self, keys: str) -> None:
        parts = [k.strip() for k in keys.split(",") if k.strip()]
        if not parts:
            raise errors.ConfigError(
                f"{SECRET_KEY_VARIABLE} is empty", variable=SECRET_KEY_VARIABLE
            )
        try:
            fernets = [fernet.Fernet(k.encode()) for k in parts]
        except (ValueError, TypeError):
            raise errors.ConfigError(
                f"{SECRET_KEY_VARIABLE} must be one or more comma-separated Fernet keys "
                "(32 url-safe base64-encoded bytes each)",
                variable=SECRET_KEY_VARIABLE,
            ) from None
        self._multi = fernet.MultiFernet(fernets)
        self._mac_key = hashlib.sha256(b"kairo-token-fingerprint:" + parts[0].encode()).digest()

    def encrypt(self, token: str) -> str:
        return self._multi.encrypt(token.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            token = self._multi.decrypt(ciphertext.encode()).decode()
        except fernet.InvalidToken:
            raise errors.ConfigError(
                f"an account token cannot be decrypted with {SECRET_KEY_VARIABLE} "
                "(was the key that encrypted it removed?)",
                variable=SECRET_KEY_VARIABLE,
            ) from None
        redaction.register_secret(token)
        return token

    def fingerprint(self, token: str) -> str:
        digest = hmac.new(self._mac_key, token.encode(), hashlib.sha256).hexdigest()
        return digest[:FINGERPRINT_HEX_CHARS]


def generate_key() -> str:
    return fernet.Fernet.generate_key().decode()
