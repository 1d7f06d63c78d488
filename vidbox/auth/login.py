"""Checking an email and password, with rate limits per address and per account."""

from __future__ import annotations

from datetime import timedelta

from vidbox.auth.passwords import verify_password
from vidbox.auth.ratelimit import RateLimiter
from vidbox.auth.users import find_user, normalise_email
from vidbox.db import Database
from vidbox.errors import Forbidden, Unauthorized
from vidbox.models import User

WINDOW = timedelta(minutes=15)
FAILURES_PER_IP = 20
FAILURES_PER_ACCOUNT = 8
WRONG = "Wrong email or password."


async def sign_in(db: Database, *, email: str, password: str, ip: str) -> User:
    """The user for these credentials. Unknown emails and wrong passwords get the same answer
    in about the same time; failures count towards 429s per client address and per account."""
    email = normalise_email(email)
    limiter = RateLimiter(db)
    ip_key, account_key = f"login-ip:{ip}", f"login-account:{email[:180]}"
    await limiter.check(ip_key, limit=FAILURES_PER_IP, window=WINDOW)
    await limiter.check(account_key, limit=FAILURES_PER_ACCOUNT, window=WINDOW)
    async with db.read() as session:
        user = await find_user(session, email) if email else None
    if not await verify_password(user.password_hash if user else None, password):
        await limiter.record(ip_key, window=WINDOW)
        await limiter.record(account_key, window=WINDOW)
        raise Unauthorized(WRONG)
    assert user is not None
    if user.disabled:
        raise Forbidden("This account is disabled. Ask an admin of this box.")
    await limiter.reset(account_key)
    return user
