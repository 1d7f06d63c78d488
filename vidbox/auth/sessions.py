"""Sign-in sessions and the tokens issued under them.

A browser sign-in is one session with one cookie token. An API login is one session (a token
family) with short-lived access tokens and single-use refresh tokens: each refresh retires the
refresh token it used, and a retired one coming back means it was stolen, so the whole family is
revoked. A personal API token is a session of its own, named by its owner. Every check goes to
the database, so signing out takes effect at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from vidbox.auth.secrets import hash_token, new_token
from vidbox.db import Database
from vidbox.errors import Unauthorized
from vidbox.models import AuthSession, AuthToken, User, utcnow
from vidbox.notify import AUTH, announce

# Every kind of sign-in, for "sign out everywhere": personal API tokens included, or a thief's
# script set up with a stolen password outlives the password change.
EVERY_KIND = ("browser", "api", "personal")
PREFIXES = {"access": "vbx_at_", "refresh": "vbx_rt_", "personal": "vbx_pat_", "cookie": ""}


@dataclass(frozen=True)
class Principal:
    """Who is making a request, and through which credential."""

    user: User
    session: AuthSession
    via: str  # "cookie" | "access" | "personal"
    expires_at: datetime | None = None  # of the token itself


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str
    expires_in: int  # seconds the access token lives


def _issue(session_id: str, kind: str, ttl: timedelta | None) -> tuple[AuthToken, str]:
    token = new_token(PREFIXES[kind])
    row = AuthToken(
        session_id=session_id,
        kind=kind,
        token_hash=hash_token(token),
        expires_at=utcnow() + ttl if ttl else None,
    )
    return row, token


async def start_browser_session(db: Database, user: User, *, days: int, agent: str) -> str:
    async with db.session() as session:
        auth = AuthSession(
            user_id=user.id,
            kind="browser",
            name=agent[:200],
            expires_at=utcnow() + timedelta(days=days),
        )
        session.add(auth)
        await session.flush()
        row, token = _issue(auth.id, "cookie", timedelta(days=days))
        session.add(row)
    return token


async def start_api_session(
    db: Database, user: User, *, access_minutes: int, refresh_days: int
) -> TokenPair:
    async with db.session() as session:
        auth = AuthSession(user_id=user.id, kind="api", name="API login")
        session.add(auth)
        await session.flush()
        return _pair(session, auth.id, access_minutes, refresh_days)


def _pair(
    session: AsyncSession, session_id: str, access_minutes: int, refresh_days: int
) -> TokenPair:
    access_row, access = _issue(session_id, "access", timedelta(minutes=access_minutes))
    refresh_row, refresh = _issue(session_id, "refresh", timedelta(days=refresh_days))
    session.add_all([access_row, refresh_row])
    return TokenPair(access=access, refresh=refresh, expires_in=access_minutes * 60)


REFRESH_REFUSED = "This refresh token is not valid. Sign in again."


async def rotate_refresh(
    db: Database, refresh: str, *, access_minutes: int, refresh_days: int
) -> TokenPair:
    """Trade a refresh token for a new pair. Replaying a used one revokes its whole family."""
    now = utcnow()
    reused = False
    async with db.session() as session:
        found = (await session.exec(_token_lookup(hash_token(refresh), ("refresh",)))).first()
        if found is None:
            raise Unauthorized(REFRESH_REFUSED)
        token, auth, user = found
        if auth.revoked_at or user.disabled or (token.expires_at and token.expires_at <= now):
            raise Unauthorized(REFRESH_REFUSED)
        if token.used_at is not None:
            auth.revoked_at = now
            session.add(auth)
            announce(session, AUTH)
            reused = True
        else:
            token.used_at = now
            auth.last_used_at = now
            session.add_all([token, auth])
            pair = _pair(session, auth.id, access_minutes, refresh_days)
    if reused:
        raise Unauthorized(
            "This refresh token was already used, so every token of this sign-in has been "
            "revoked. Sign in again."
        )
    return pair


async def create_personal_token(db: Database, user: User, name: str) -> tuple[AuthSession, str]:
    async with db.session() as session:
        auth = AuthSession(user_id=user.id, kind="personal", name=name)
        session.add(auth)
        await session.flush()
        row, token = _issue(auth.id, "personal", None)
        session.add(row)
    return auth, token


async def list_personal_tokens(db: Database, user: User) -> list[AuthSession]:
    async with db.read() as session:
        rows = await session.exec(
            select(AuthSession)
            .where(
                AuthSession.user_id == user.id,
                AuthSession.kind == "personal",
                col(AuthSession.revoked_at).is_(None),
            )
            .order_by(col(AuthSession.created_at).desc())
        )
        return list(rows.all())


async def authenticate(db: Database, token: str, kinds: tuple[str, ...]) -> Principal | None:
    """The principal behind a token, or None when it is unknown, expired or revoked."""
    if not token or len(token) > 200:
        return None
    token_hash = hash_token(token)

    async def load() -> Principal | None:
        async with db.read() as session:
            found = (await session.exec(_token_lookup(token_hash, kinds))).first()
        if found is None:
            return None
        row, auth, user = found
        principal = Principal(user=user, session=auth, via=row.kind, expires_at=row.expires_at)
        return principal if _still_valid(principal, utcnow()) else None

    principal = await db.auth_cache.get_or_load((token_hash, kinds), load)
    # A cached principal is checked again: its token or session may have expired since.
    return principal if principal is not None and _still_valid(principal, utcnow()) else None


def _token_lookup(token_hash: str, kinds: tuple[str, ...]) -> Any:
    """The token row with its session and user, for a token hash of one of ``kinds``.
    (Typed Any: SQLAlchemy 2.0 spells a three-entity select Select[tuple[A, B, C]] and 2.1
    Select[A, B, C], and both are supported.)"""
    return (
        select(AuthToken, AuthSession, User)
        .join(AuthSession, col(AuthToken.session_id) == AuthSession.id)
        .join(User, col(AuthSession.user_id) == User.id)
        .where(AuthToken.token_hash == token_hash, col(AuthToken.kind).in_(kinds))
    )


def _still_valid(principal: Principal, now: datetime) -> bool:
    auth = principal.session
    if principal.expires_at and principal.expires_at <= now:
        return False
    return not (
        auth.revoked_at or (auth.expires_at and auth.expires_at <= now) or principal.user.disabled
    )


async def revoke_session(
    db: Database, session_id: str, *, user_id: str | None = None, kind: str | None = None
) -> bool:
    """Revoke one session (optionally only if it belongs to ``user_id`` and is of ``kind``);
    False when there was no such session to revoke."""
    query = update(AuthSession).where(
        col(AuthSession.id) == session_id, col(AuthSession.revoked_at).is_(None)
    )
    if user_id is not None:
        query = query.where(col(AuthSession.user_id) == user_id)
    if kind is not None:
        query = query.where(col(AuthSession.kind) == kind)
    async with db.session() as session:
        result = await session.exec(query.values(revoked_at=utcnow()))
        announce(session, AUTH)
    return bool(result.rowcount)


async def revoke_user_sessions(db: Database, user_id: str, *, kinds: tuple[str, ...]) -> int:
    """Sign a user out everywhere (the given session kinds)."""
    async with db.session() as session:
        revoked = await revoke_sessions_in(session, user_id, kinds=kinds)
    return revoked


async def revoke_sessions_in(session: AsyncSession, user_id: str, *, kinds: tuple[str, ...]) -> int:
    """``revoke_user_sessions`` inside the caller's transaction (a disable or a password change
    and its sign-outs commit together); every process forgets the revoked sign-ins at the
    commit (notify.AUTH)."""
    result = await session.exec(
        update(AuthSession)
        .where(
            col(AuthSession.user_id) == user_id,
            col(AuthSession.kind).in_(kinds),
            col(AuthSession.revoked_at).is_(None),
        )
        .values(revoked_at=utcnow())
    )
    announce(session, AUTH)
    return int(result.rowcount)
