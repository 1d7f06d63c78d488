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


# Byte counts: past 2 GiB, beyond PostgreSQL's 4-byte INTEGER. SQLite's INTEGER holds 8 bytes
# already, and keeps its declared type so existing files match the models.
ByteCount = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    # Stored lower-cased, which makes the unique index case-insensitive.
    email: str = Field(unique=True, index=True, max_length=320)
    # Whether the address is proven to be this account's: by a mailed link, or because an
    # admin or the CLI set it, or an invite fixed it. Only a proven address receives what is
    # shared privately with it; anyone can register someone else's.
    email_verified: bool = Field(default=False)
    name: str = Field(default="", max_length=200)
    password_hash: str = Field(max_length=255)
    is_admin: bool = Field(default=False)
    disabled: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class BoxMeta(SQLModel, table=True):
    """Facts about this box learnt while it runs, one row each (e.g. ``setup_origin``)."""

    __tablename__ = "box_meta"

    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(default="", max_length=2000)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


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


class VideoStatus:
    UPLOADING = "UPLOADING"
    PROCESSING = "PROCESSING"
    READY = "READY"
    FAILED = "FAILED"


class Video(SQLModel, table=True):
    __tablename__ = "videos"
    # The dashboard's order (newest first, id breaking ties) straight from the index: without
    # the id, SQLite sorts every page in a temporary B-tree.
    __table_args__ = (sa.Index("ix_videos_owner_created_id", "owner_id", "created_at", "id"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    owner_id: str = Field(foreign_key="users.id", ondelete="CASCADE", max_length=32)
    title: str = Field(default="", max_length=200)
    # The uploader's file name, cleaned; kept as metadata only (storage keys are ours).
    filename: str = Field(default="", max_length=255)
    size_bytes: int = Field(default=0, sa_type=ByteCount)
    content_type: str = Field(default="", max_length=100)
    container: str = Field(default="", max_length=16)
    status: str = Field(default=VideoStatus.UPLOADING, max_length=16, index=True)
    progress: int = Field(default=0)
    error: str | None = Field(default=None, max_length=500)
    # Sentences about a READY video's renditions: damage found while encoding ("damaged from
    # 0:12"), and tracks only the original download has.
    warnings: list[str] | None = Field(default=None, sa_type=sa.JSON, nullable=True)
    left_out: str | None = Field(default=None, max_length=300)
    duration_seconds: float | None = Field(default=None)
    width: int | None = Field(default=None)
    height: int | None = Field(default=None)
    fps: float | None = Field(default=None)
    video_codec: str | None = Field(default=None, max_length=32)
    audio_codec: str | None = Field(default=None, max_length=32)
    original_key: str | None = Field(default=None, max_length=500)
    thumbnail_key: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    ready_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


@sa.event.listens_for(Video, "before_update")
def _touch_video(_mapper: object, _connection: object, video: Video) -> None:
    # Live pages find changed videos by updated_at, so no writer may forget it.
    video.updated_at = utcnow()


class Rendition(SQLModel, table=True):
    """One HLS rung of a video: a media playlist plus fMP4 init and segments in storage."""

    __tablename__ = "renditions"
    __table_args__ = (sa.UniqueConstraint("video_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    video_id: str = Field(foreign_key="videos.id", index=True, ondelete="CASCADE", max_length=32)
    name: str = Field(max_length=16)  # "720p"
    width: int
    height: int
    bandwidth: int  # peak bits/s, for the master playlist
    average_bandwidth: int
    codecs: str = Field(default="", max_length=100)
    frame_rate: float | None = Field(default=None)
    copied: bool = Field(default=False)  # remuxed from the source, not re-encoded
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Upload(SQLModel, table=True):
    """A resumable (tus) upload. The bytes and the offset live in the spool file."""

    __tablename__ = "uploads"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    video_id: str = Field(foreign_key="videos.id", unique=True, ondelete="CASCADE", max_length=32)
    owner_id: str = Field(foreign_key="users.id", index=True, ondelete="CASCADE", max_length=32)
    length: int = Field(sa_type=ByteCount)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
    completed_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    # Who is writing it (``host:pid:process/request``) and until when, so that web processes
    # sharing a spool never write one upload at once (vidbox.upload_lease).
    writer: str | None = Field(default=None, max_length=160, nullable=True)
    writer_until: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class JobState:
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # a permanent error: retrying cannot help
    DEAD = "dead"  # retries used up


class Job(SQLModel, table=True):
    __tablename__ = "jobs"
    __table_args__ = (sa.Index("ix_jobs_claim", "state", "lane", "run_at"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32)
    # "media" jobs (FFmpeg) and "small" jobs (mail, cleanup) have separate worker limits.
    lane: str = Field(default="small", max_length=16)
    payload: str = Field(default="{}")  # JSON
    state: str = Field(default=JobState.QUEUED, max_length=16)
    attempts: int = Field(default=0)
    max_attempts: int = Field(default=5)
    run_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    worker: str | None = Field(default=None, max_length=100)
    last_error: str | None = Field(default=None)
    # At most one live job per key (e.g. "process_video:<id>").
    idempotency_key: str | None = Field(default=None, unique=True, max_length=200)
    video_id: str | None = Field(default=None, index=True, max_length=32)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    # JSON list of "pid:start time" of the FFmpeg processes the running attempt started, so a
    # restart can stop those a crashed process left behind (vidbox.jobs.leftovers).
    pids: str | None = Field(default=None)
    # When the current attempt was taken: fair queueing serves the user served longest ago.
    claimed_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    # Set while the job is waiting for disk space (its attempts are not counted meanwhile).
    waiting_since: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class ShareLink(SQLModel, table=True):
    __tablename__ = "share_links"
    __table_args__ = (sa.Index("ix_share_links_owner_created", "owner_id", "created_at"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    video_id: str = Field(foreign_key="videos.id", index=True, ondelete="CASCADE", max_length=32)
    owner_id: str = Field(foreign_key="users.id", ondelete="CASCADE", max_length=32)
    # SHA-256 of the URL token; the token itself is derived from the id and the box's key.
    token_hash: str = Field(unique=True, max_length=64)
    visibility: str = Field(max_length=16)  # "public" | "private"
    emails: str = Field(default="[]")  # JSON list of lower-cased addresses
    expires_in: str = Field(max_length=16)  # the preset chosen: "1h" ... "forever"
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    allow_download: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    last_viewed_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    view_count: int = Field(default=0)


class ShareGrant(SQLModel, table=True):
    """A one-time sign-in link mailed for a private share link; ``used_at`` makes it single use."""

    __tablename__ = "share_grants"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    link_id: str = Field(
        foreign_key="share_links.id", index=True, ondelete="CASCADE", max_length=32
    )
    email: str = Field(max_length=320)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class Notification(SQLModel, table=True):
    __tablename__ = "notifications"
    __table_args__ = (sa.Index("ix_notifications_user_created", "user_id", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: str = Field(foreign_key="users.id", ondelete="CASCADE", max_length=32)
    text: str = Field(max_length=500)
    url: str = Field(default="", max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    read_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
