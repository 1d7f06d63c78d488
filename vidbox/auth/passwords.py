"""Password hashing (argon2id) and the password policy."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn import zxcvbn

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
# zxcvbn's scores run 0-4; 2 means about a million guesses or more. Behind argon2 and the
# sign-in rate limits that is out of reach online, while every password on the public
# breached-password lists zxcvbn ships (qwerty12345, iloveyou123, ...) scores 0 or 1.
MIN_SCORE = 2
# zxcvbn's matching grows with length; past this many characters only the start is scored.
SCORED_LENGTH = 100


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
    personal = [email.lower(), email.lower().split("@")[0], name.lower()]
    if any(len(part) >= 4 and part in low for part in personal):
        return "Do not use your email address or name in your password."
    verdict = zxcvbn(password[:SCORED_LENGTH], user_inputs=[part for part in personal if part])
    if verdict["score"] < MIN_SCORE:
        feedback = verdict["feedback"]
        why = feedback["warning"] or "It would be among the first guesses an attacker tries."
        hint = (feedback["suggestions"] or ["Add another word or two."])[0]
        return f"This password is too easy to guess. {why.rstrip('.')}. {hint}"
    return None
