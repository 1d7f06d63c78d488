"""Checking an email and password, with rate limits that an attacker cannot turn against the
account's owner.

Every attempt is counted before its password is checked (see ``vidbox.auth.ratelimit``), and a
correct password gives its count back, so the counts are of failures (and checks in flight).
Three limits, per 15 minutes:

- per client address, over all accounts (``FAILURES_PER_CLIENT_ADDRESS``): one client trying
  many accounts;
- per account and client address (``FAILURES_PER_CLIENT``): one client guessing one account.
  Keyed by both, so a stranger's wrong guesses lock out the stranger, not the owner;
- per account over all clients (``FAILURES_PER_ACCOUNT``), looser, against guesses spread over
  many addresses. Past it, a client that has already failed on the account is refused, but a
  client's first try still gets its password checked: the owner signing in from their own
  device is never locked out by someone else.

The client address is the one uvicorn reports: the peer, or the forwarded address when the
peer is one of ``server.trusted_proxies``.
"""

from __future__ import annotations

from datetime import timedelta

from vidbox.auth.passwords import verify_password
from vidbox.auth.ratelimit import RateLimiter
from vidbox.auth.secrets import hash_token
from vidbox.auth.users import find_user, normalise_email
from vidbox.db import Database
from vidbox.errors import Forbidden, Unauthorized
from vidbox.models import User

WINDOW = timedelta(minutes=15)
FAILURES_PER_CLIENT_ADDRESS = 20
FAILURES_PER_CLIENT = 8
FAILURES_PER_ACCOUNT = 100
WRONG = "Wrong email or password."


def _keys(email: str, ip: str) -> tuple[str, str, str]:
    # Hashed: the keys stay short whatever the address, and the table lists no emails.
    account = hash_token(email)[:32]
    client = hash_token(ip)[:32]
    return f"login-ip:{client}", f"login-account-ip:{account}:{client}", f"login-account:{account}"


async def sign_in(db: Database, *, email: str, password: str, ip: str) -> User:
    """The user for these credentials. Unknown emails and wrong passwords get the same answer
    in about the same time, and count the same towards the limits."""
    email = normalise_email(email)
    limiter = RateLimiter(db)
    ip_key, pair_key, account_key = _keys(email, ip)
    by_ip, by_pair = await limiter.take_all(
        [(ip_key, FAILURES_PER_CLIENT_ADDRESS), (pair_key, FAILURES_PER_CLIENT)], window=WINDOW
    )
    by_account = await limiter.count(account_key, window=WINDOW)
    if by_account.count > FAILURES_PER_ACCOUNT and by_pair.count > 1:
        for earlier in (by_ip, by_pair):
            await limiter.give_back(earlier)
        raise by_account.refuse()

    async with db.read() as session:
        user = await find_user(session, email) if email else None
    if not await verify_password(user.password_hash if user else None, password):
        raise Unauthorized(WRONG)
    assert user is not None
    # The right password: this client starts afresh, the other counts lose this attempt.
    await limiter.reset(pair_key)
    await limiter.give_back(by_ip)
    await limiter.give_back(by_account)
    if user.disabled:
        raise Forbidden("This account is disabled. Ask an admin of this box.")
    return user
