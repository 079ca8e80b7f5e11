"""Secrets of DICOMweb sources: environment-variable references or values encrypted at rest.

A reference ("env:ORTHANC_PASSWORD") keeps the secret out of the database entirely (the usual choice
in production). A value typed into the API is encrypted with Fernet under a key derived from
SECRET_KEY, so a database dump alone does not reveal it. Neither is ever returned or logged.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

ENV_PREFIX = "env:"
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class SecretError(ValueError):
    """The source's secret cannot be used; the message names no secret value."""


def _fernet() -> Fernet:
    # A key of its own (domain-separated), so that the raw SECRET_KEY is not the encryption key.
    digest = hashlib.sha256(b"seganypet-pacs-secrets:" + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt(value: str) -> str:
    return _fernet().encrypt(value.encode()).decode()


def check_reference(reference: str) -> str:
    if not reference.startswith(ENV_PREFIX) or not ENV_NAME.match(reference[len(ENV_PREFIX):]):
        raise SecretError("A secret reference looks like 'env:NAME' (an environment variable of the server).")
    return reference


def resolve(reference: str, encrypted: str) -> str:
    """The secret in clear, for building the HTTP session only."""
    if reference:
        name = check_reference(reference)[len(ENV_PREFIX):]
        value = os.environ.get(name)
        if value is None:
            raise SecretError(f"The environment variable {name} named by this source's secret is not set on the "
                              "server.")
        return value
    if encrypted:
        try:
            return _fernet().decrypt(encrypted.encode()).decode()
        except InvalidToken:
            raise SecretError("This source's stored secret cannot be decrypted (SECRET_KEY changed?); enter it "
                              "again.") from None
    return ""
