"""Database access: async engines, sessions, SQLite pragmas and migrations on start.

SQLite (``database.path``) is the default; ``database.url`` points vidbox at PostgreSQL.

Two engines share the database. Sessions from ``session()`` take the database's one write
lock up front. On SQLite that is ``BEGIN IMMEDIATE``: in WAL mode a deferred transaction that
reads and later writes fails at once with SQLITE_BUSY when another connection wrote in
between (busy_timeout does not help). On PostgreSQL it is a transaction-scoped advisory lock,
so write sessions are serialised exactly as on SQLite (across processes too) and code written
as read-check-write stays correct under PostgreSQL's READ COMMITTED. ``read()`` sessions run
each statement on its own (autocommit) for the hot read-only paths (pages, media checks):
they never queue behind writers and skip the transaction round trips. Code that needs several
reads to agree uses ``session()``. The job queue's claims and outcomes use ``queue_session()``,
which on PostgreSQL skips the lock (vidbox.jobs.queue says why that is safe).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from vidbox.cache import TTLCache
from vidbox.diskspace import DiskFull, EmergencySpace, is_disk_full
from vidbox.notify import AUTH, BUS_KEY, VIDEO_DELETED, VIDEOS, Bus

if TYPE_CHECKING:
    from vidbox.config import Settings

MIGRATIONS = Path(__file__).with_name("migrations")
# How long another process may still accept a token this one revoked (see vidbox.cache).
AUTH_CACHE_SECONDS = 2.0
BUSY_TIMEOUT_MS = 10_000
# Advisory lock keys (any 64-bit numbers no other program on the server is likely to pick):
# one for write sessions, one for migrating.
WRITE_LOCK = 0x76696462_6F780001
MIGRATE_LOCK = 0x76696462_6F780002
POSTGRES_SCHEMES = ("postgresql+asyncpg://", "postgresql://", "postgres://")


def is_postgres(url: str) -> bool:
    return url.startswith(POSTGRES_SCHEMES)


def async_url(url: str) -> sa.URL:
    """The URL SQLAlchemy's asyncpg dialect takes, from any of the spellings we accept."""
    parsed = sa.make_url(url)
    return parsed.set(drivername="postgresql+asyncpg")


def configured_url(settings: Settings) -> str:
    """``database.url`` with ``database.password`` put in when the URL has none ("" for
    SQLite)."""
    url = settings.database.url
    if not url or not settings.database.password:
        return url
    parsed = sa.make_url(url)
    if parsed.password:
        return url
    return parsed.set(password=settings.database.password).render_as_string(hide_password=False)


def describe_url(url: str) -> str:
    """The URL for logs and ``vidbox check``: without its password."""
    return async_url(url).set(drivername="postgresql").render_as_string(hide_password=True)


def _set_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" hook issue BEGIN itself (pysqlite's implicit BEGIN is deferred).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _make_engine(path: Path, begin: str | None) -> AsyncEngine:
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    sa.event.listen(engine.sync_engine, "connect", _set_pragmas)
    if begin is not None:
        sa.event.listen(engine.sync_engine, "begin", lambda conn: conn.exec_driver_sql(begin))
    return engine


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, (list, tuple)):
        return type(value)(_without_nul(v) for v in value)
    if isinstance(value, dict):
        return {k: _without_nul(v) for k, v in value.items()}
    return value


def _replace_nul(
    _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool
) -> tuple[str, Any]:
    """PostgreSQL text cannot hold NUL, and refuses any parameter with one (a 500 for
    /api/tokens/x%00, which SQLite answers 404). No stored value has one, so a lookup with
    U+FFFD in its place finds the same nothing; text written gets U+FFFD, as a decoder would
    show it."""
    return statement, _without_nul(parameters)


def _make_postgres_engine(url: str, *, writes: bool, locked: bool = True) -> AsyncEngine:
    """``writes``: transactions (READ COMMITTED), else autocommit reads. ``locked``: writes
    take the box's write lock first (see the module docstring)."""
    engine = create_async_engine(
        async_url(url),
        # Locked writes queue on one lock, so a few connections serve them; reads run in
        # parallel (pages, media checks, SSE re-checks).
        pool_size=4 if writes else 8,
        max_overflow=4 if writes else 8,
        # A restarted or failed-over server leaves dead connections in the pool.
        pool_pre_ping=True,
        pool_recycle=1800,
        isolation_level="READ COMMITTED" if writes else "AUTOCOMMIT",
        connect_args={
            # Like SQLite's busy_timeout: a write waiting this long for the lock gives up.
            "server_settings": {"lock_timeout": str(BUSY_TIMEOUT_MS), "timezone": "UTC"},
        },
    )
    sa.event.listen(engine.sync_engine, "before_cursor_execute", _replace_nul, retval=True)
    if writes and locked:
        sa.event.listen(
            engine.sync_engine,
            "begin",
            lambda conn: conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITE_LOCK})"),
        )
    return engine


def make_private(path: Path) -> None:
    """Create the database file readable by this user alone (password hashes, sessions and
    share tokens live in it), and take the other users' access away from an existing one and
    its WAL and shared-memory files. SQLite gives those the main file's mode when it creates
    them, so they follow."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path.with_name(name), 0o600)


def _upgrade(conn: sa.Connection, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, revision)


def migrate_lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".migrate-lock")


@contextlib.contextmanager
def _migrate_lock(path: Path) -> Iterator[None]:
    """Processes migrating one SQLite file take turns, as on PostgreSQL (MIGRATE_LOCK): two
    that both found the schema empty would both create the tables, and the second fail. The
    kernel drops the ``flock`` when its holder dies, however it dies, so a killed migration
    never blocks the next start. The file is left in place: removing it would let a process
    lock a new file while another still holds the old one."""
    fd = os.open(migrate_lock_path(path), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # also drops the lock


def migrate_sync(path: Path, revision: str = "head") -> str | None:
    """Bring the schema at ``path`` up to ``revision`` (creates the file when missing);
    returns the revision found under the lock: of processes started at once, one upgrades,
    the others find the schema current."""
    make_private(path)
    with _migrate_lock(path):
        engine = sa.create_engine(f"sqlite:///{path}")
        try:
            with engine.begin() as conn:
                return _upgrade_from(conn, revision)
        finally:
            engine.dispose()


def _upgrade_from(conn: sa.Connection, revision: str) -> str | None:
    before = _current_revision(conn)
    _upgrade(conn, revision)
    return before


async def migrate_postgres(url: str, revision: str = "head") -> str | None:
    """Bring the schema at ``url`` up to ``revision``; returns the revision found. Processes
    starting at once queue on an advisory lock: the first migrates, the others then find the
    schema current."""
    engine = create_async_engine(async_url(url), poolclass=sa.NullPool)
    try:
        async with engine.connect() as conn:
            # A session-level lock: it outlives the commit below, and the server drops it
            # with the connection if this process dies mid-way.
            await conn.execute(sa.text(f"SELECT pg_advisory_lock({MIGRATE_LOCK})"))
            await conn.commit()
            try:
                async with conn.begin():  # PostgreSQL migrates in one transaction
                    return await conn.run_sync(_upgrade_from, revision)
            finally:
                await conn.execute(sa.text(f"SELECT pg_advisory_unlock({MIGRATE_LOCK})"))
                await conn.commit()
    finally:
        await engine.dispose()


def _current_revision(conn: sa.Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head() or ""


def schema_status(path: Path) -> tuple[str | None, str]:
    """(current revision of the file, newest revision this vidbox knows)."""
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            current = _current_revision(conn)
    finally:
        engine.dispose()
    return current, head_revision()


async def postgres_schema_status(url: str) -> tuple[str | None, str]:
    """(current revision of the database at ``url``, newest revision this vidbox knows)."""
    engine = create_async_engine(async_url(url), poolclass=sa.NullPool)
    try:
        async with engine.connect() as conn:
            current = await conn.run_sync(_current_revision)
    finally:
        await engine.dispose()
    return current, head_revision()


# Tasks inside a database session, how deep, and those whose cancellation waits for the
# outermost one to end (see ``cancel_outside_sessions``).
_session_depth: weakref.WeakKeyDictionary[asyncio.Task[Any], int] = weakref.WeakKeyDictionary()
_cancel_on_exit: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()


def cancel_outside_sessions(task: asyncio.Task[Any]) -> None:
    """Cancel ``task``, but not in the middle of a database session: then at the session's end.

    The drivers run each statement on a thread of their own, which a cancellation does not
    stop. One landing in a session's commit, or in the rollback that resets its connection on
    the way back to the pool, left the connection half-done: SQLAlchemy logged a traceback and
    dropped it, and on SQLite a write transaction could stay open, holding the file's write
    lock for the busy timeout (tests/test_db.py sweeps cancellations over a session to show
    it). Sessions are short; the job runner stops its handlers with this."""
    if _session_depth.get(task, 0):
        _cancel_on_exit.add(task)
    else:
        task.cancel()


@asynccontextmanager
async def _whole(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session that ``cancel_outside_sessions`` does not cut short."""
    task = asyncio.current_task()
    depth = _session_depth.get(task, 0) if task is not None else 0
    if task is not None:
        _session_depth[task] = depth + 1
    try:
        async with sessions() as session:
            yield session
    finally:
        if task is not None:
            if depth:
                _session_depth[task] = depth
            else:
                del _session_depth[task]
                if task in _cancel_on_exit:
                    _cancel_on_exit.discard(task)
                    task.cancel()


class Database:
    def __init__(self, path: Path, url: str = "") -> None:
        """SQLite at ``path``, or PostgreSQL at ``url`` when one is given (``path`` then only
        places the emergency space file)."""
        self.path = path
        self.url = url
        self.postgres = is_postgres(url)
        if self.postgres:
            self._write = _make_postgres_engine(url, writes=True)
            # The job queue's own statements are each safe without the write lock (claims
            # lock their row with SKIP LOCKED, outcomes are conditional updates), and
            # heartbeats and claims should not wait behind a page's writes.
            self._queue = _make_postgres_engine(url, writes=True, locked=False)
            self._read = _make_postgres_engine(url, writes=False)
            dsn = async_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        else:
            self._write = _make_engine(path, "BEGIN IMMEDIATE")
            self._queue = self._write  # SQLite has one writer at a time whatever we do
            # Reads run in autocommit: no BEGIN/ROLLBACK round trips on every page and segment.
            self._read = _make_engine(path, None)
            dsn = ""
        # What committed changes announce (vidbox.notify), here and in other processes.
        self.bus = Bus(dsn)
        info = {"database": self, BUS_KEY: self.bus}
        self._write_sessions = async_sessionmaker(
            self._write, class_=AsyncSession, expire_on_commit=False, info=info
        )
        self._queue_sessions = async_sessionmaker(
            self._queue, class_=AsyncSession, expire_on_commit=False, info=info
        )
        self._read_sessions = async_sessionmaker(
            self._read, class_=AsyncSession, expire_on_commit=False
        )
        self.emergency = EmergencySpace(path.parent / f"{path.name}.emergency-space")
        # Signed-in principals by token hash; whatever revokes or changes a sign-in announces
        # notify.AUTH, which clears it here and in every other process.
        self.auth_cache: TTLCache[Any] = TTLCache(ttl=AUTH_CACHE_SECONDS)
        # Video rows for media requests (a player fetches a segment every few seconds).
        self.video_cache: TTLCache[Any] = TTLCache(ttl=AUTH_CACHE_SECONDS)
        self.bus.subscribe(AUTH, self._auth_changed)
        self.bus.subscribe(VIDEOS, self._videos_changed)
        self.bus.subscribe(VIDEO_DELETED, self._videos_changed)

    def _auth_changed(self, _details: frozenset[str] | None) -> None:
        self.auth_cache.clear()

    def _videos_changed(self, _details: frozenset[str] | None) -> None:
        self.video_cache.clear()

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(settings.database_path, configured_url(settings))

    def describe(self) -> str:
        """Where the data is, for logs and checks (never with a password)."""
        return describe_url(self.url) if self.postgres else str(self.path)

    async def migrate(self) -> None:
        if self.postgres:
            await migrate_postgres(self.url)
        else:
            await asyncio.to_thread(migrate_sync, self.path)
        await asyncio.to_thread(self.emergency.ensure)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A write session: commits when the block ends without error, else rolls back. A
        full disk is a 507 for the client, and frees the emergency space for the next try."""
        async with self._transaction(self._write_sessions) as session:
            yield session

    @asynccontextmanager
    async def _transaction(
        self, sessions: async_sessionmaker[AsyncSession]
    ) -> AsyncIterator[AsyncSession]:
        try:
            async with _whole(sessions) as session, session.begin():
                yield session
        except sa.exc.DBAPIError as exc:
            if not is_disk_full(exc):
                raise
            self.emergency.release()
            raise DiskFull() from exc

    @asynccontextmanager
    async def queue_session(self) -> AsyncIterator[AsyncSession]:
        """A write session without the write lock on PostgreSQL, for the job queue's claims
        and outcomes and the upload leases (vidbox.upload_lease) only: each of their
        statements is a conditional update, correct on its own under READ COMMITTED (see
        vidbox.jobs.queue). On SQLite the same as ``session()``."""
        async with self._transaction(self._queue_sessions) as session:
            yield session

    async def listen(self) -> None:
        """Hear what other processes announce (PostgreSQL); the server's and the worker's
        lifespans call it. ``close`` stops it."""
        await self.bus.start()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with _whole(self._read_sessions) as session:
            yield session

    async def check_writable(self) -> None:
        """A committed write, for readiness: reads (and a SELECT 1) keep working on a file
        that can no longer be written, while every sign-in and upload fails, and a
        transaction rolled back never reaches the file. The row rewritten is the schema's
        version, which exists in every migrated database and keeps its value."""
        async with self.session() as session:
            await session.execute(sa.text("UPDATE alembic_version SET version_num = version_num"))

    async def close(self) -> None:
        await self.bus.close()
        await self._write.dispose()
        if self._queue is not self._write:
            await self._queue.dispose()
        await self._read.dispose()
