"""``vidbox db migrate``: bring the database schema up to date without starting the server.

``vidbox serve`` migrates on start as well; deployments that start several processes at once
run this first (or rely on the lock: on PostgreSQL an advisory lock lets one process migrate
while the others wait, then find the schema current)."""

from __future__ import annotations

import asyncio

import click
import sqlalchemy as sa

from vidbox.cli_options import box_options, box_settings
from vidbox.config import Settings
from vidbox.datadir import prepare_data_dir
from vidbox.db import (
    configured_url,
    describe_url,
    migrate_postgres,
    migrate_sync,
    postgres_schema_status,
    schema_status,
)


async def _migrate(settings: Settings) -> tuple[str, str | None, str | None]:
    """(where, revision before, revision after)."""
    url = configured_url(settings)
    if url:
        # The revision found under the lock: of processes started at once, one upgrades.
        before = await migrate_postgres(url)
        after, _ = await postgres_schema_status(url)
        return describe_url(url), before, after
    path = settings.database_path
    before = (await asyncio.to_thread(schema_status, path))[0] if path.exists() else None
    await asyncio.to_thread(migrate_sync, path)
    after, _ = await asyncio.to_thread(schema_status, path)
    return str(path), before, after


@click.group()
@box_options
def db() -> None:
    """The metadata database."""


@db.command()
@box_options
def migrate() -> None:
    """Upgrade the database schema to this version of vidbox (creating it when empty).
    Safe to run while other vidbox processes start or run."""
    settings = box_settings()
    try:
        prepare_data_dir(settings)
    except OSError as exc:
        raise click.ClickException(f"cannot use {settings.data_dir}: {exc}") from None
    try:
        where, before, after = asyncio.run(_migrate(settings))
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        # The driver's message, without SQLAlchemy's help link.
        detail = getattr(exc, "orig", None) or exc
        raise click.ClickException(f"cannot migrate the database: {detail}") from None
    if before == after:
        click.echo(f"{where}: schema {after}, already up to date.")
    else:
        click.echo(f"{where}: schema upgraded from {before or 'empty'} to {after}.")
