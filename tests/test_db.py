from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

import vidbox.models
from tests.postgres import Databases, only_postgres, only_sqlite
from tests.support import start_server
from vidbox.config import Settings
from vidbox.db import (
    Database,
    async_url,
    cancel_outside_sessions,
    migrate_postgres,
    migrate_sync,
    postgres_schema_status,
    schema_status,
)


def test_migrations_build_exactly_the_models(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    migrate_sync(path)
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    engine.dispose()
    assert diff == [], "models and migrations disagree; add a migration"
    current, head = schema_status(path)
    assert current == head


def test_upgrade_from_the_first_migration_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    migrate_sync(path, "0001")
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO users (id, email, name, password_hash, is_admin, disabled, created_at)"
            " VALUES ('u1', 'ann@example.org', 'Ann', 'x', 1, 0, '2026-01-02 03:04:05')"
        )
    assert schema_status(path)[0] == "0001"

    async def upgrade_and_read() -> vidbox.models.User | None:
        db = Database(path)
        try:
            await db.migrate()
            async with db.read() as session:
                return await session.get(vidbox.models.User, "u1")
        finally:
            await db.close()

    user = asyncio.run(upgrade_and_read())
    assert user is not None
    assert user.email == "ann@example.org"
    assert user.created_at.isoformat() == "2026-01-02T03:04:05+00:00"
    current, head = schema_status(path)
    assert current == head != "0001"


def test_connections_use_wal_and_foreign_keys(tmp_path: Path) -> None:
    async def pragmas() -> tuple[str, int, int]:
        db = Database(tmp_path / "p.db")
        try:
            await db.migrate()
            async with db.read() as session:
                conn = await session.connection()
                mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
                fks = (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar()
                busy = (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar()
                return mode, fks, busy
        finally:
            await db.close()

    mode, fks, busy = asyncio.run(pragmas())
    assert mode == "wal"
    assert fks == 1
    assert busy >= 5000


@only_sqlite
def test_the_database_files_are_private(make_settings: Callable[..., Settings]) -> None:
    # Password hashes, sessions and share tokens live there: no other local user may read it.
    settings = make_settings()
    live = start_server(settings)
    try:
        with live.client() as client:
            client.post("/api/auth/login", json={"email": "a@example.org", "password": "x" * 12})
        path = settings.database_path
        files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
        assert all(f.exists() for f in files)
        assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {
            f.name: 0o600 for f in files
        }
    finally:
        live.stop()


@only_sqlite
def test_existing_database_files_are_made_private_on_start(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    settings.database_path.parent.mkdir(parents=True)
    migrate_sync(settings.database_path)
    settings.database_path.chmod(0o644)
    live = start_server(settings)
    try:
        assert stat.S_IMODE(settings.database_path.stat().st_mode) == 0o600
    finally:
        live.stop()


@only_postgres
def test_migrations_build_exactly_the_models_on_postgres(
    postgres_databases: Databases,
) -> None:
    url = postgres_databases.create(migrated=False)
    try:
        assert asyncio.run(postgres_schema_status(url))[0] is None
        asyncio.run(migrate_postgres(url, "0001"))
        assert asyncio.run(postgres_schema_status(url))[0] == "0001"
        asyncio.run(migrate_postgres(url))

        async def diff() -> list[object]:
            engine = sa.ext.asyncio.create_async_engine(async_url(url), poolclass=sa.NullPool)
            try:
                async with engine.connect() as conn:
                    return await conn.run_sync(
                        lambda c: compare_metadata(MigrationContext.configure(c), SQLModel.metadata)
                    )
            finally:
                await engine.dispose()

        assert asyncio.run(diff()) == [], "models and migrations disagree on PostgreSQL"
        current, head = asyncio.run(postgres_schema_status(url))
        assert current == head
    finally:
        postgres_databases.drop(url)


@only_postgres
def test_postgres_write_sessions_take_the_write_lock(settings: Settings) -> None:
    # Write sessions serialise as SQLite's BEGIN IMMEDIATE does (see vidbox.db).
    async def check() -> int:
        db = Database.from_settings(settings)
        try:
            await db.migrate()
            async with db.session() as session:
                conn = await session.connection()
                locks = (
                    await conn.exec_driver_sql(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                        " AND pid = pg_backend_pid()"
                    )
                ).scalar_one()
            await db.check_writable()
            return int(locks)
        finally:
            await db.close()

    assert asyncio.run(check()) == 1


def test_a_session_cancelled_at_any_point_returns_its_connection_quietly(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # A job stopped at shutdown was cancelled wherever it was: landing in a commit or in the
    # rollback that resets a connection on its way back to the pool made SQLAlchemy log a
    # traceback (plain task.cancel() here fails in about one run in three), and could leave
    # SQLite's write lock held for the busy timeout.
    async def work(db: Database) -> None:
        async with db.session() as session:
            await (await session.connection()).exec_driver_sql("SELECT 1")
        async with db.read() as session:
            await (await session.connection()).exec_driver_sql("SELECT 1")

    async def cancel_after(db: Database, seconds: float) -> None:
        task = asyncio.create_task(work(db))
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline and not task.done():  # noqa: ASYNC110
            await asyncio.sleep(0)  # finer than any timer: the whole block takes ~1 ms
        cancel_outside_sessions(task)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.cancelled() or step_done_before(task)

    def step_done_before(task: asyncio.Task[None]) -> bool:
        return task.done() and task.exception() is None

    async def sweep() -> None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database.from_settings(settings)
        await db.migrate()
        try:
            started = time.perf_counter()
            await work(db)
            whole = time.perf_counter() - started
            for step in range(300):  # cancellations spread over the whole block
                await cancel_after(db, whole * step / 250)
            async with db.read() as session:  # the pool still gives working connections
                conn = await session.connection()
                assert (await conn.exec_driver_sql("SELECT 1")).scalar() == 1
        finally:
            await db.close()

    with caplog.at_level(logging.ERROR, logger="sqlalchemy"):
        asyncio.run(sweep())
    assert [r.getMessage() for r in caplog.records if r.name.startswith("sqlalchemy")] == []
