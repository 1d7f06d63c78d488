"""Password hashing (argon2id) and the password policy."""

from __future__ import annotations

import asyncio
import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# OWASP's first argon2id configuration (19 MiB, t=2, p=1): argon2-cffi's default profile takes
# 64 MiB per sign-in, which on a small NAS is more than the rest of the server together.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verified when the email is unknown, so a wrong email costs as much time as a wrong password.
# A constant, not computed at import: hashing it would cost every process start 19 MiB and time.
_DUMMY_HASH = (
    "$argon2id$v=19$m=19456,t=2,p=1$dmlkYm94LWR1bW15c2FsdA$"
    "9rrhTPQ+nINJYZ1i03MYjgm6IyMttd2Y2yJLkzcNdpc"
)

MIN_LENGTH = 10
MAX_LENGTH = 1024
COMMON = {
    "password",
    "password1",
    "password12",
    "password123",
    "passw0rd",
    "1234567890",
    "0123456789",
    "12345678910",
    "qwertyuiop",
    "qwertzuiop",
    "azertyuiop",
    "1q2w3e4r5t",
    "letmein123",
    "iloveyou12",
    "welcome123",
    "administrator",
    "changeme123",
    "vidbox1234",
}


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(stored: str | None, password: str) -> bool:
    """False for a wrong password or no account; both take the same time."""
    ok = await asyncio.to_thread(_verify, stored or _DUMMY_HASH, password)
    return ok and stored is not None


def password_problem(password: str, *, email: str = "", name: str = "") -> str | None:
    """Why this password is refused, or None when it is acceptable."""
    if len(password) < MIN_LENGTH:
        return f"Use at least {MIN_LENGTH} characters."
    if len(password) > MAX_LENGTH:
        return f"Use at most {MAX_LENGTH} characters."
    low = password.lower()
    folded = re.sub(r"[^a-z0-9]", "", low)
    if low in COMMON or folded in COMMON or "password" in low:
        return "This password is too common; choose another."
    if len(set(password)) <= 2:
        return "This password is too easy to guess; choose another."
    for personal in (email.lower(), email.lower().split("@")[0], name.lower()):
        if len(personal) >= 4 and personal in low:
            return "Do not use your email address or name in your password."
    return None
