"""Invites and self-registration, as ``auth.registration`` allows."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from vidbox.auth.secrets import hash_token, new_token
from vidbox.auth.users import check_email, create_user
from vidbox.db import Database
from vidbox.errors import Forbidden, Gone, ValidationFailed
from vidbox.models import Invite, User, utcnow

INVITE_DAYS = 7


async def create_invite(
    db: Database, admin: User, *, email: str = "", days: int = INVITE_DAYS
) -> tuple[Invite, str]:
    email = check_email(email) if email.strip() else ""
    token = new_token()
    invite = Invite(
        token_hash=hash_token(token),
        email=email,
        created_by=admin.id,
        expires_at=utcnow() + timedelta(days=days),
    )
    async with db.session() as session:
        session.add(invite)
    return invite, token


async def find_invite(session: AsyncSession, token: str) -> Invite | None:
    """The invite when it can still be used."""
    invite = (
        await session.exec(select(Invite).where(Invite.token_hash == hash_token(token)))
    ).first()
    if invite is None or invite.used_at or invite.expires_at <= utcnow():
        return None
    return invite


async def list_open_invites(db: Database) -> list[Invite]:
    async with db.read() as session:
        rows = await session.exec(
            select(Invite)
            .where(col(Invite.used_at).is_(None), Invite.expires_at > utcnow())
            .order_by(col(Invite.created_at).desc())
        )
        return list(rows.all())


async def register(
    db: Database,
    mode: str,
    *,
    email: str,
    password: str,
    name: str = "",
    invite_token: str | None = None,
) -> User:
    """Create an account by self-registration; ``mode`` is ``auth.registration``."""
    if mode == "closed" or (mode == "invite" and not invite_token):
        raise Forbidden("Registration is closed here. Ask an admin of this box for an account.")
    async with db.session() as session:
        invite = None
        if mode == "invite":
            invite = await find_invite(session, invite_token or "")
            if invite is None:
                raise Gone("This invite link has expired or was already used.")
            if invite.email and invite.email != email.strip().lower():
                raise ValidationFailed.field(
                    "email", f"This invite is for {invite.email}; sign up with that address."
                )
        # An invite for a fixed address proves it (the admin chose it); open registration and
        # open invites prove nothing until the mailed link is used (vidbox.auth.verify).
        user = await create_user(
            session,
            email=email,
            password=password,
            name=name,
            email_verified=bool(invite is not None and invite.email),
        )
        if invite is not None:
            invite.used_at, invite.used_by = utcnow(), user.id
            session.add(invite)
    return user
