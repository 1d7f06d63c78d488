"""Claiming an empty box: ``vidbox serve`` prints a one-time setup URL; whoever opens it first
(and has the token, so is the person at the console) creates the first admin.

The token belongs to the box, not to a process: several processes starting at once (or one
restarting) on one database all print the same link, and any of them accepts it, until it is
used or expires (``vidbox user setup-link`` replaces it). Reissuing at every start made the link
of the first process useless as soon as a second one started. The database keeps only the
token's hash, plus a random seed from which a process holding the box's secret key derives the
token again (an HMAC): a copy of the database alone still opens nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import timedelta

from sqlalchemy import delete, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from vidbox.auth.secrets import hash_token, new_token
from vidbox.auth.users import create_user
from vidbox.db import Database
from vidbox.errors import NotFound
from vidbox.mail.origin import remember_setup_origin
from vidbox.models import BoxMeta, SetupToken, User, utcnow

SETUP_TOKEN_TTL = timedelta(hours=24)
SETUP_SEED = "setup_token_seed"  # box_meta key


async def count_users(session: AsyncSession) -> int:
    return (await session.exec(select(func.count()).select_from(User))).one()


def _derive(secret_key: bytes, seed: str) -> str:
    digest = hmac.new(secret_key, b"vidbox-setup-token:" + seed.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


async def setup_token(db: Database, secret_key: bytes) -> str | None:
    """The box's setup token while it has no users (issued by the first process to ask, the
    same for every later one), else None. The write session serialises processes asking at
    once: one issues, the others find its token."""
    async with db.session() as session:
        if await count_users(session):
            return None
        seed = await session.get(BoxMeta, SETUP_SEED)
        if seed is not None and seed.value:
            token = _derive(secret_key, seed.value)
            if await find_setup_token(session, token) is not None:
                return token
        # None yet, used, expired, or made under another key.
        return await _issue(session, secret_key)


async def replace_setup_token(db: Database, secret_key: bytes) -> str | None:
    """A new setup token (the old one stops working) while the box has no users, else None:
    for an operator who missed the log line that printed the link."""
    async with db.session() as session:
        if await count_users(session):
            return None
        return await _issue(session, secret_key)


async def _issue(session: AsyncSession, secret_key: bytes) -> str:
    await session.exec(delete(SetupToken))
    seed = await session.get(BoxMeta, SETUP_SEED) or BoxMeta(key=SETUP_SEED)
    seed.value, seed.updated_at = new_token(), utcnow()
    session.add(seed)
    token = _derive(secret_key, seed.value)
    session.add(SetupToken(token_hash=hash_token(token), expires_at=utcnow() + SETUP_TOKEN_TTL))
    return token


async def find_setup_token(session: AsyncSession, token: str) -> SetupToken | None:
    """The token's row when it can still be used: unused, unexpired, and the box still empty."""
    row = (
        await session.exec(select(SetupToken).where(SetupToken.token_hash == hash_token(token)))
    ).first()
    if row is None or row.used_at is not None or row.expires_at <= utcnow():
        return None
    if await count_users(session):
        return None
    return row


async def claim_first_admin(
    db: Database,
    token: str,
    *,
    email: str,
    password: str,
    name: str = "",
    origin: str | None = None,
) -> User:
    """Create the first admin with a valid setup token, all in one transaction (two people
    racing for the box cannot both win: the write lock is held from the first read).
    ``origin``: where the setup form was used, kept for mailed links (vidbox.mail.origin)."""
    async with db.session() as session:
        row = await find_setup_token(session, token)
        if row is None:
            raise NotFound("This setup link is no longer valid.")
        # The person at the console (holding the setup token) sets their own address.
        user = await create_user(
            session, email=email, password=password, name=name, is_admin=True, email_verified=True
        )
        row.used_at = utcnow()
        session.add(row)
        await session.exec(delete(BoxMeta).where(col(BoxMeta.key) == SETUP_SEED))
        if origin is not None:
            await remember_setup_origin(session, origin)
    return user
