"""SQLModel tables. Every schema change here comes with an Alembic migration in migrations/."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out. SQLite keeps no zone, so values are
    stored as naive UTC and given their zone back on the way out."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    # Stored lower-cased, which makes the unique index case-insensitive.
    email: str = Field(unique=True, index=True, max_length=320)
    name: str = Field(default="", max_length=200)
    password_hash: str = Field(max_length=255)
    is_admin: bool = Field(default=False)
    disabled: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class SetupToken(SQLModel, table=True):
    """The one-time token that lets whoever started the box claim the first admin account."""

    __tablename__ = "setup_tokens"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(unique=True, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class AuthSession(SQLModel, table=True):
    """One sign-in: a browser session, an API login (a refresh-token family) or a personal API
    token. Revoking the row signs out everything issued under it."""

    __tablename__ = "auth_sessions"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    user_id: str = Field(foreign_key="users.id", index=True, ondelete="CASCADE", max_length=32)
    kind: str = Field(max_length=16)  # "browser" | "api" | "personal"
    name: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class AuthToken(SQLModel, table=True):
    """A credential under a session, stored as a SHA-256 of the token."""

    __tablename__ = "auth_tokens"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    session_id: str = Field(
        foreign_key="auth_sessions.id", index=True, ondelete="CASCADE", max_length=32
    )
    kind: str = Field(max_length=16)  # "cookie" | "access" | "refresh" | "personal"
    token_hash: str = Field(unique=True, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    # A refresh token is used once; a second use means it leaked.
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class Invite(SQLModel, table=True):
    __tablename__ = "invites"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    token_hash: str = Field(unique=True, max_length=64)
    email: str = Field(default="", max_length=320)
    created_by: str | None = Field(
        default=None, foreign_key="users.id", ondelete="SET NULL", max_length=32
    )
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    used_by: str | None = Field(
        default=None, foreign_key="users.id", ondelete="SET NULL", max_length=32
    )


class RateLimit(SQLModel, table=True):
    """Fixed-window counters, kept in the database so several processes share them."""

    __tablename__ = "rate_limits"

    key: str = Field(primary_key=True, max_length=200)
    window_start: datetime = Field(sa_type=UTCDateTime)
    count: int = Field(default=0)
