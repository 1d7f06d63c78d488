"""Random tokens and their stored form. Only a SHA-256 of a token is ever stored, so a copy of
the database does not hand out working credentials."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_token(prefix: str = "") -> str:
    """256 random bits, URL-safe; the prefix says what kind of token a leaked string is."""
    return prefix + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
