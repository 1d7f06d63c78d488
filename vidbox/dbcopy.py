"""Copying a SQLite box's metadata into PostgreSQL (``vidbox db copy``).

- The source is read inside one SQLite read transaction: in WAL mode that is a snapshot, so the
  copy is the box as it was at one moment even if something writes meanwhile. Writes after that
  moment are not in the copy, which is why the CLI refuses while a server of the box runs.
- Tables go parents first (the foreign-key order of the models), in batches of their own
  transaction each, by primary key. A batch is an upsert: a row missing from the target is
  inserted, a row there with other values is updated, an equal row is left alone. So a copy
  cut off anywhere (Ctrl-C, kill -9, a lost connection) is finished by running it again, and a
  second run after the old box changed brings the changed rows over.
- Rows deleted from the source after an earlier run stay in the target; the first run into an
  empty database, with the server stopped, is the exact copy.
- The target must be empty or an earlier copy of this box: accounts the source lacks mean it
  holds another box, and merging two boxes is not something a copy can do right.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlmodel import SQLModel

import vidbox.models  # noqa: F401 (registers every table in SQLModel.metadata)
from vidbox.db import BUSY_TIMEOUT_MS, async_url, describe_url, head_revision, migrate_postgres

BATCH_ROWS = 1000
# asyncpg sends at most 32767 parameters with one statement; a batch stays under that.
MAX_PARAMETERS = 32_000
RUN_DIR = "run"  # where each running job runner of a data dir holds its lock (jobs/leftovers)

ProgressCallback = Callable[[int], None]


class CopyRefused(Exception):
    """Why the copy cannot start, as one sentence for the user."""


@dataclass
class TableReport:
    name: str
    rows: int = 0  # in the source snapshot
    inserted: int = 0
    updated: int = 0  # in the target already, with other values

    @property
    def unchanged(self) -> int:
        return self.rows - self.inserted - self.updated


@dataclass
class CopyReport:
    tables: list[TableReport] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)

    @property
    def inserted(self) -> int:
        return sum(t.inserted for t in self.tables)

    @property
    def updated(self) -> int:
        return sum(t.updated for t in self.tables)

    @property
    def unchanged(self) -> int:
        return sum(t.unchanged for t in self.tables)


def tables() -> list[sa.Table]:
    """Every table of the models, each after the tables its foreign keys point at."""
    return list(SQLModel.metadata.sorted_tables)


def live_runners(data_dir: Path) -> int:
    """How many job runners of ``data_dir`` are alive: each holds an exclusive flock on its
    file in run/ while its process lives, so a file that cannot be share-locked is held."""
    run_dir = data_dir / RUN_DIR
    alive = 0
    for path in sorted(run_dir.glob("*.lock")) if run_dir.is_dir() else []:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue  # removed by its runner on the way out
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            alive += 1
        finally:
            os.close(fd)  # also drops our lock, if we got it
    return alive


def _snapshot_engine(path: Path) -> AsyncEngine:
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}", poolclass=sa.NullPool)

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite never begins a transaction for a SELECT; the "begin" hook below does, and
        # the first read in it fixes the snapshot every later read sees.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.close()

    sa.event.listen(engine.sync_engine, "connect", on_connect)
    sa.event.listen(engine.sync_engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))
    return engine


def _target_engine(url: str) -> AsyncEngine:
    return create_async_engine(
        async_url(url),
        poolclass=sa.NullPool,
        connect_args={"server_settings": {"timezone": "UTC"}},
    )


def _revision(conn: sa.Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def _primary_key(table: sa.Table) -> sa.Column[Any]:
    columns = list(table.primary_key.columns)
    if len(columns) != 1:  # every vidbox table has one; keyset paging below relies on it
        raise CopyRefused(f"table {table.name} has no single-column primary key")
    return columns[0]


def _comparable(column: Any) -> Any:
    # PostgreSQL's json type has no equality operator; its text does (one serializer wrote
    # both sides).
    return sa.cast(column, sa.Text) if isinstance(column.type, sa.JSON) else column


def _without_nul(value: Any) -> Any:
    # PostgreSQL text cannot hold NUL (SQLite can); the app itself writes U+FFFD instead.
    if isinstance(value, str) and "\x00" in value:
        return value.replace("\x00", "\ufffd")
    return value


def _upsert(table: sa.Table) -> Any:
    """One statement for every batch of ``table`` (compiled once; the rows go as parameters,
    which SQLAlchemy sends as multi-row VALUES pages)."""
    key = _primary_key(table)
    insert = postgresql.insert(table)
    others = [c for c in table.columns if c is not key]
    # xmax is 0 on a row this statement inserted, the locking transaction's id on one it
    # updated; equal rows are not touched, so not returned.
    inserted = sa.literal_column("(xmax = 0)", sa.Boolean)
    if not others:
        return insert.on_conflict_do_nothing(index_elements=[key]).returning(inserted)
    excluded = insert.excluded
    return insert.on_conflict_do_update(
        index_elements=[key],
        set_={c.name: excluded[c.name] for c in others},
        where=sa.tuple_(*(_comparable(c) for c in others)).is_distinct_from(
            sa.tuple_(*(_comparable(excluded[c.name]) for c in others))
        ),
    ).returning(inserted)


async def _check_source(source: AsyncConnection, path: Path) -> None:
    current = await source.run_sync(_revision)
    head = head_revision()
    if current is None:
        raise CopyRefused(f"{path} holds no vidbox database")
    if current != head:
        raise CopyRefused(
            f"{path} is at schema {current}, this vidbox copies schema {head}: "
            "run `vidbox db migrate` on the SQLite box first"
        )


async def _check_same_box(source: AsyncConnection, target: AsyncConnection, where: str) -> None:
    users = SQLModel.metadata.tables["users"]
    ours = set((await source.execute(sa.select(users.c.id))).scalars())
    theirs = set((await target.execute(sa.select(users.c.id))).scalars())
    foreign = theirs - ours
    if foreign:
        raise CopyRefused(
            f"{where} already holds another box ({len(foreign)} account(s) this box does not "
            "have); copy into an empty database"
        )


async def _copy_table(
    source: AsyncConnection,
    target: AsyncConnection,
    table: sa.Table,
    report: TableReport,
    batch_rows: int,
    on_progress: ProgressCallback | None,
) -> None:
    key = _primary_key(table)
    size = max(1, min(batch_rows, MAX_PARAMETERS // len(table.columns)))
    upsert = _upsert(table)
    last: Any = None
    while True:
        query = sa.select(table).order_by(key).limit(size)
        if last is not None:
            query = query.where(key > last)
        rows = [
            {k: _without_nul(v) for k, v in row.items()}
            for row in (await source.execute(query)).mappings()
        ]
        if not rows:
            return
        async with target.begin():  # one batch, one commit: a kill loses at most a batch
            results = (await target.execute(upsert, rows)).scalars().all()
        report.inserted += sum(1 for inserted in results if inserted)
        report.updated += sum(1 for inserted in results if not inserted)
        last = rows[-1][key.name]
        if on_progress is not None:
            on_progress(len(rows))


async def _reset_sequences(target: AsyncConnection, copied: list[sa.Table]) -> None:
    """Integer keys the target generates continue after the copied ones (the copy wrote ids
    itself, so the sequences never moved)."""
    for table in copied:
        key = _primary_key(table)
        if not (isinstance(key.type, sa.Integer) and key.autoincrement in (True, "auto")):
            continue
        name = table.name  # from the models, not from input
        await target.execute(
            sa.text(
                f"SELECT setval(pg_get_serial_sequence('{name}', '{key.name}'), "  # noqa: S608
                f'COALESCE(MAX("{key.name}"), 0) + 1, false) FROM "{name}"'
            )
        )


async def _copy_tables(
    source: AsyncConnection,
    target: AsyncConnection,
    report: CopyReport,
    batch_rows: int,
    on_start: ProgressCallback | None,
    on_progress: ProgressCallback | None,
) -> None:
    todo = tables()
    for table in todo:
        count = (await source.execute(sa.select(sa.func.count()).select_from(table))).one()
        report.tables.append(TableReport(table.name, rows=int(count[0])))
    if on_start is not None:
        on_start(report.rows)
    for table, table_report in zip(todo, report.tables, strict=True):
        await _copy_table(source, target, table, table_report, batch_rows, on_progress)
    async with target.begin():
        await _reset_sequences(target, todo)


async def copy_database(
    source_path: Path,
    target_url: str,
    *,
    batch_rows: int = BATCH_ROWS,
    on_start: ProgressCallback | None = None,
    on_progress: ProgressCallback | None = None,
) -> CopyReport:
    """Copy every table of the SQLite database at ``source_path`` into the PostgreSQL
    database at ``target_url``, migrating the target to the schema's head first.

    ``on_start(total rows)`` is called once the source is counted, ``on_progress(rows)``
    after each batch. Raises CopyRefused before writing anything when the copy must not
    happen; driver errors (sqlalchemy.exc) pass through, and what was copied stays copied.
    """
    if not await asyncio.to_thread(source_path.is_file):
        raise CopyRefused(f"there is no SQLite database at {source_path}")
    where = describe_url(target_url)
    source_engine = _snapshot_engine(source_path)
    target_engine = _target_engine(target_url)
    report = CopyReport()
    try:
        async with source_engine.connect() as source, source.begin():
            await _check_source(source, source_path)
            await migrate_postgres(target_url)
            async with target_engine.connect() as target:
                await _check_same_box(source, target, where)
                await target.commit()
                await _copy_tables(source, target, report, batch_rows, on_start, on_progress)
    finally:
        await source_engine.dispose()
        await target_engine.dispose()
    return report
