"""Encryption at rest for third-party secrets (Meta system-user tokens).

Fernet (AES-128-CBC + HMAC-SHA256) with key rotation: TOKEN_ENCRYPTION_KEYS lists keys, the
first encrypts, every one decrypts, so a new key can be put first and old ciphertexts re-encrypted
at leisure.
"""

import base64
import hashlib

from cryptography.fernet import Fernet, MultiFernet

from server.config import Settings


class SecretCipher:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is needed")
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    @classmethod
    def from_settings(cls, settings: Settings) -> "SecretCipher":
        keys = [key.strip() for key in settings.token_encryption_keys.get_secret_value().split(",") if key.strip()]
        if not keys:
            # Development: a key derived from SECRET_KEY (production requires explicit keys).
            digest = hashlib.sha256(settings.secret_key.get_secret_value().encode() + b"adplane.token-encryption")
            keys = [base64.urlsafe_b64encode(digest.digest()).decode()]
        return cls(keys)

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        return self._fernet.decrypt(ciphertext.encode()).decode()
