"""The suite on PostgreSQL and on S3: with VIDBOX_TEST_POSTGRES set (``./scripts/test
--postgres`` sets it), every test's box gets a database of its own, copied from a template
migrated once per run (CREATE DATABASE ... TEMPLATE copies files, faster than migrating each
time); with VIDBOX_TEST_STORAGE=s3 (``--s3``) a bucket of its own on one moto S3 server
started for the run, unless the test chose its storage itself."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from vidbox.config import Settings, load_settings
from vidbox.db import async_url, migrate_postgres

SERVER = os.environ.get("VIDBOX_TEST_POSTGRES", "")
ON_S3 = os.environ.get("VIDBOX_TEST_STORAGE", "local") == "s3"

only_sqlite = pytest.mark.skipif(
    bool(SERVER), reason="checks the SQLite file itself; PostgreSQL keeps no file here"
)
only_postgres = pytest.mark.skipif(not SERVER, reason="needs VIDBOX_TEST_POSTGRES")
only_local_storage = pytest.mark.skipif(
    ON_S3, reason="looks at media files on the local disk; the suite runs on S3"
)


def _dsn(url: str) -> str:
    """asyncpg's own spelling of a SQLAlchemy URL."""
    return async_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def url_of(name: str) -> str:
    return async_url(SERVER).set(database=name).render_as_string(hide_password=False)


async def _admin(*statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_dsn(SERVER))
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


class Databases:
    """Fresh databases for tests, from one migrated template."""

    def __init__(self) -> None:
        self.template = f"vidbox_template_{uuid.uuid4().hex[:8]}"
        self._made = False

    def _ensure_template(self) -> None:
        if self._made:
            return
        asyncio.run(_admin(f"CREATE DATABASE {self.template}"))
        asyncio.run(migrate_postgres(url_of(self.template)))
        self._made = True

    def create(self, *, migrated: bool = True) -> str:
        """The URL of a new database: at the schema's head, or empty."""
        name = f"vidbox_test_{uuid.uuid4().hex[:12]}"
        if migrated:
            self._ensure_template()
            asyncio.run(_admin(f"CREATE DATABASE {name} TEMPLATE {self.template}"))
        else:
            asyncio.run(_admin(f"CREATE DATABASE {name}"))
        return url_of(name)

    def drop(self, url: str) -> None:
        name = sa.make_url(url).database
        asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))

    def close(self) -> None:
        if self._made:
            asyncio.run(_admin(f"DROP DATABASE IF EXISTS {self.template} WITH (FORCE)"))


DATABASES = Databases() if SERVER else None
# Every process of a PostgreSQL box must sign with one configured key (server.secret_key).
TEST_SECRET_KEY = "vidbox-test-secret-key-0123456789abcdef"
# Boxes made outside the make_settings fixture (module fixtures, helpers): a database per data
# directory, dropped when the run ends.
_by_data_dir: dict[Path, str] = {}


def database_env(data_dir: Path) -> dict[str, str]:
    """The environment that points a box at ``data_dir`` to its own database: nothing on
    SQLite, VIDBOX_DATABASE__URL on PostgreSQL (for `vidbox` subprocesses too)."""
    if DATABASES is None:
        return {}
    key = Path(data_dir).resolve()
    if key not in _by_data_dir:
        _by_data_dir[key] = DATABASES.create()
    return {"VIDBOX_DATABASE__URL": _by_data_dir[key], "VIDBOX_SERVER__SECRET_KEY": TEST_SECRET_KEY}


_buckets: dict[Path, str] = {}
_moto: list[Any] = []  # the run's moto server, started by the first box that needs it


def moto_server() -> str:
    """host:port of the run's S3 server on loopback (moto speaks S3, checks no signatures)."""
    if not _moto:
        from moto.server import ThreadedMotoServer

        from tests.support import free_port

        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        _moto.append((server, f"127.0.0.1:{port}"))
    return str(_moto[0][1])


def storage_env(data_dir: Path, given: Mapping[str, str]) -> dict[str, str]:
    """On S3 runs, the settings that give the box at ``data_dir`` a bucket of its own, unless
    ``given`` (what the test set) already picks a storage."""
    if not ON_S3 or any(name.startswith("VIDBOX_STORAGE__") for name in given):
        return {}
    from tests.support import s3_environ

    key = Path(data_dir).resolve()
    if key not in _buckets:
        _buckets[key] = f"vidbox-suite-{uuid.uuid4().hex[:12]}"
    return s3_environ(moto_server(), _buckets[key])


def box_env(data_dir: Path, given: Mapping[str, str]) -> dict[str, str]:
    """What a box at ``data_dir`` gets from the run: its database and its storage."""
    return {**database_env(data_dir), **storage_env(data_dir, given)}


def settings_for(
    *, data_dir: Path | str | None = None, environ: Mapping[str, str], **kwargs: Any
) -> Settings:
    """load_settings for a test box: on PostgreSQL with the data directory's database."""
    env = dict(environ)
    folder = data_dir or env.get("VIDBOX_DATA_DIR")
    if folder is not None and "VIDBOX_DATABASE__URL" not in env:
        env = {**box_env(Path(folder), env), **env}  # what the test gave wins
    return load_settings(data_dir=data_dir, environ=env, **kwargs)


def same_box_env(first: Settings) -> dict[str, str]:
    """Settings for another process of ``first``'s box, in a data folder of its own: the same
    database, media store and upload spool (whatever the suite runs on), as every process of
    one box must have."""
    env = {"VIDBOX_UPLOADS__SPOOL_DIR": str(first.spool_dir)}
    if first.database.url:
        env |= {
            "VIDBOX_DATABASE__URL": first.database.url,
            "VIDBOX_SERVER__SECRET_KEY": first.server.secret_key,
        }
    else:
        env["VIDBOX_DATABASE__PATH"] = str(first.database_path)
    if first.storage.backend == "s3":
        from tests.support import s3_environ

        return env | s3_environ(first.storage.endpoint, first.storage.bucket)
    return env | {"VIDBOX_STORAGE__PATH": str(first.media_dir)}


def drop_for(data_dir: Path) -> None:
    """Drop the database of ``data_dir`` now (the make_settings fixture, after each test)."""
    url = _by_data_dir.pop(Path(data_dir).resolve(), None)
    if url is not None and DATABASES is not None:
        DATABASES.drop(url)


def drop_all() -> None:
    for server, _endpoint in _moto:
        server.stop()
    if DATABASES is None:
        return
    for url in _by_data_dir.values():
        DATABASES.drop(url)
    DATABASES.close()


def postgres_sql(url: str, query: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """One statement written for sqlite3 (``?`` placeholders), run on PostgreSQL."""
    import asyncpg

    counter = iter(range(1, len(params) + 1))
    query = re.sub(r"\?", lambda _: f"${next(counter)}", query)

    async def go() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(_dsn(url))
        try:
            return [tuple(row) for row in await conn.fetch(query, *params)]
        finally:
            await conn.close()

    return asyncio.run(go())


def postgres_dump(url: str) -> str:
    """Every row of every table as text, for tests that look for secrets stored in plain."""
    import asyncpg

    async def go() -> str:
        conn = await asyncpg.connect(_dsn(url))
        try:
            tables = await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
            rows = []
            for (table,) in tables:
                query = f'SELECT t::text FROM "{table}" t'  # noqa: S608 (names from pg_tables)
                rows += [str(r[0]) for r in await conn.fetch(query)]
            return "\n".join(rows)
        finally:
            await conn.close()

    return asyncio.run(go())


def run_sql(settings: Settings, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """One statement on the box's database, from outside, as an admin with sqlite3 or psql
    would (``?`` placeholders)."""
    if settings.database.url:
        return postgres_sql(settings.database.url, query, params)
    import sqlite3

    with contextlib.closing(sqlite3.connect(settings.database_path, timeout=10)) as db, db:
        return db.execute(query, params).fetchall()


def db_time(moment: datetime) -> str | datetime:
    """A UTC moment as a parameter for a UTCDateTime column: naive UTC (text for sqlite3)."""
    naive = moment.astimezone(UTC).replace(tzinfo=None)
    return naive if SERVER else naive.strftime("%Y-%m-%d %H:%M:%S.%f")


def database_dump(settings: Settings) -> str:
    """Everything the box's database holds, as text."""
    if settings.database.url:
        return postgres_dump(settings.database.url)
    import sqlite3

    path = settings.database_path
    # WAL mode: recent pages live in the -wal file until a checkpoint.
    files = [path, path.with_name(path.name + "-wal")]
    raw = b"".join(f.read_bytes() for f in files if f.exists()).decode("latin-1")
    with contextlib.closing(sqlite3.connect(path)) as db:
        return raw + "\n".join(db.iterdump())
