"""Database access: async engines, sessions, SQLite pragmas and migrations on start.

Two engines share the SQLite file. Sessions from ``session()`` start with ``BEGIN IMMEDIATE``:
in WAL mode a deferred transaction that reads and later writes fails at once with SQLITE_BUSY
when another connection wrote in between (busy_timeout does not help), so anything that may
write takes the write lock up front. ``read()`` sessions run each statement on its own
(autocommit) for the hot read-only paths (pages, media checks): they never queue behind
writers and skip the transaction round trips. Code that needs several reads to agree uses
``session()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from vidbox.cache import TTLCache
from vidbox.diskspace import DiskFull, EmergencySpace, is_disk_full

MIGRATIONS = Path(__file__).with_name("migrations")
# How long another process may still accept a token this one revoked (see vidbox.cache).
AUTH_CACHE_SECONDS = 2.0
BUSY_TIMEOUT_MS = 10_000


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


def alembic_config(path: Path) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", f"sqlite:///{path}")
    return cfg


def make_private(path: Path) -> None:
    """Create the database file readable by this user alone (password hashes, sessions and
    share tokens live in it), and take the other users' access away from an existing one and
    its WAL and shared-memory files. SQLite gives those the main file's mode when it creates
    them, so they follow."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path.with_name(name), 0o600)


def migrate_sync(path: Path, revision: str = "head") -> None:
    """Bring the schema at ``path`` up to ``revision`` (creates the file when missing)."""
    make_private(path)
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            cfg = alembic_config(path)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    finally:
        engine.dispose()


def schema_status(path: Path) -> tuple[str | None, str]:
    """(current revision of the file, newest revision this vidbox knows)."""
    head = ScriptDirectory.from_config(alembic_config(path)).get_current_head() or ""
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
    return current, head


class Database:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._write = _make_engine(path, "BEGIN IMMEDIATE")
        # Reads run in autocommit: no BEGIN/ROLLBACK round trips on every page and segment.
        self._read = _make_engine(path, None)
        # session.info["database"]: lets an after-commit hook find who to tell (jobs/queue.py).
        self._write_sessions = async_sessionmaker(
            self._write, class_=AsyncSession, expire_on_commit=False, info={"database": self}
        )
        self._read_sessions = async_sessionmaker(
            self._read, class_=AsyncSession, expire_on_commit=False
        )
        self.emergency = EmergencySpace(path.parent / f"{path.name}.emergency-space")
        # Signed-in principals by token hash; every revocation through this handle clears it.
        self.auth_cache: TTLCache[Any] = TTLCache(ttl=AUTH_CACHE_SECONDS)
        # Video rows for media requests (a player fetches a segment every few seconds).
        self.video_cache: TTLCache[Any] = TTLCache(ttl=AUTH_CACHE_SECONDS)

    async def migrate(self) -> None:
        await asyncio.to_thread(migrate_sync, self.path)
        await asyncio.to_thread(self.emergency.ensure)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A write session: commits when the block ends without error, else rolls back. A
        full disk is a 507 for the client, and frees the emergency space for the next try."""
        try:
            async with self._write_sessions() as session, session.begin():
                yield session
        except sa.exc.OperationalError as exc:
            if not is_disk_full(exc):
                raise
            self.emergency.release()
            raise DiskFull() from exc

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._read_sessions() as session:
            yield session

    async def ping(self) -> None:
        async with self._read.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def check_writable(self) -> None:
        """A committed write, for readiness: reads (and a SELECT 1) keep working on a file
        that can no longer be written, while every sign-in and upload fails, and a
        transaction rolled back never reaches the file. The row rewritten is the schema's
        version, which exists in every migrated database and keeps its value."""
        async with self.session() as session:
            await session.execute(sa.text("UPDATE alembic_version SET version_num = version_num"))

    async def close(self) -> None:
        await self._write.dispose()
        await self._read.dispose()
