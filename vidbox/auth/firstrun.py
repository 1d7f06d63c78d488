"""Claiming an empty box: ``vidbox serve`` prints a one-time setup URL; whoever opens it first
(and has the token, so is the person at the console) creates the first admin."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, func
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from vidbox.auth.secrets import hash_token, new_token
from vidbox.auth.users import create_user
from vidbox.db import Database
from vidbox.errors import NotFound
from vidbox.mail.origin import remember_setup_origin
from vidbox.models import SetupToken, User, utcnow

SETUP_TOKEN_TTL = timedelta(hours=24)


async def count_users(session: AsyncSession) -> int:
    return (await session.exec(select(func.count()).select_from(User))).one()


async def issue_setup_token(db: Database) -> str | None:
    """A fresh setup token when the box has no users yet (earlier unused ones stop working),
    else None."""
    async with db.session() as session:
        if await count_users(session):
            return None
        await session.exec(delete(SetupToken))
        token = new_token()
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
        if origin is not None:
            await remember_setup_origin(session, origin)
    return user
