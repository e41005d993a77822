"""Secrets at rest: Fernet (AES-128-CBC + HMAC) with the keys in ENCRYPTION_KEY (first one encrypts)."""

from __future__ import annotations

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models


@cache
def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(k.strip()) for k in settings.ENCRYPTION_KEY.split(",") if k.strip()])


def encrypt(value: str) -> str:
    return _fernet().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ValueError("stored secret cannot be decrypted with the configured ENCRYPTION_KEY") from exc


class EncryptedTextField(models.TextField):
    """Stores ciphertext; Python code sees plaintext. Never render it back to users."""

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        return decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(value)
