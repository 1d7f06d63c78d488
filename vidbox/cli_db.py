"""``vidbox db migrate``: bring the database schema up to date without starting the server.
``vidbox db copy``: move a SQLite box's metadata into PostgreSQL (vidbox.dbcopy).

``vidbox serve`` migrates on start as well; deployments that start several processes at once
run this first (or rely on the lock: one process migrates while the others wait, then find the
schema current; an advisory lock on PostgreSQL, a ``flock`` on ``vidbox.db.migrate-lock`` next
to a SQLite file)."""

from __future__ import annotations

import asyncio
from typing import Any

import click
import sqlalchemy as sa
from alembic.util import CommandError

from vidbox.cli_options import box_options, box_settings
from vidbox.config import Settings
from vidbox.datadir import prepare_data_dir
from vidbox.db import (
    async_url,
    configured_url,
    describe_url,
    is_postgres,
    migrate_postgres,
    migrate_sync,
    postgres_schema_status,
    schema_status,
)
from vidbox.dbcopy import CopyRefused, CopyReport, copy_database, live_runners


async def _migrate(settings: Settings) -> tuple[str, str | None, str | None]:
    """(where, revision before, revision after)."""
    url = configured_url(settings)
    if url:
        # The revision found under the lock: of processes started at once, one upgrades.
        before = await migrate_postgres(url)
        after, _ = await postgres_schema_status(url)
        return describe_url(url), before, after
    path = settings.database_path
    # Likewise on SQLite, under a lock file next to the database.
    before = await asyncio.to_thread(migrate_sync, path)
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


def _target_url(settings: Settings, target: str) -> str:
    """``--to`` checked, with database.password put in when the URL has none."""
    # Never quote the value in an error: it may hold a password.
    if not is_postgres(target):
        raise click.ClickException(
            "--to must be a PostgreSQL URL, e.g. postgresql+asyncpg://vidbox@db.example.org:5432/"
            "vidbox"
        )
    try:
        parsed = async_url(target)
    except sa.exc.ArgumentError:
        raise click.ClickException("--to is not a valid PostgreSQL URL") from None
    if not parsed.database:
        raise click.ClickException("--to must name the database, e.g. .../vidbox")
    if not parsed.password and settings.database.password:
        parsed = parsed.set(password=settings.database.password)
    return parsed.render_as_string(hide_password=False)


async def _copy(settings: Settings, url: str) -> CopyReport:
    bar: Any = None
    where = describe_url(url)

    def start(total: int) -> None:
        nonlocal bar
        label = f"Copying {total} rows from {settings.database_path} to {where}"
        bar = click.progressbar(length=total, label=label, show_pos=True)
        bar.__enter__()

    try:
        return await copy_database(
            settings.database_path,
            url,
            on_start=start,
            on_progress=lambda rows: bar.update(rows),
        )
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)


def _next_steps(settings: Settings, url: str) -> list[str]:
    plain = async_url(url).set(password=None).render_as_string()
    steps = [
        f'Now stop using the SQLite box: set database.url = "{plain}" '
        f"(or VIDBOX_DATABASE__URL={plain}) and the password, if any, in database.password "
        "(or VIDBOX_DATABASE__PASSWORD_FILE).",
    ]
    if settings.server.secret_key:
        steps.append("Keep server.secret_key as it is: share links and sign-ins stay valid.")
    elif settings.secret_key_path.exists():
        # The file's key, so share links and sessions made by the SQLite box keep working.
        steps.append(
            "A PostgreSQL box needs server.secret_key; to keep share links and sign-ins valid, "
            f"use this box's key: VIDBOX_SERVER__SECRET_KEY_FILE={settings.secret_key_path} "
            "(every process of the box needs it)."
        )
    else:
        steps.append(
            "A PostgreSQL box needs server.secret_key, at least 32 characters, the same in "
            "every process (e.g. from: openssl rand -base64 48)."
        )
    steps.append(
        "Media stays where storage.* says; every process of the box must reach it "
        "(`vidbox storage migrate --to s3` moves it). Then start vidbox again."
    )
    return steps


@db.command("copy")
@click.option(
    "--to",
    "target",
    required=True,
    metavar="URL",
    help="The PostgreSQL database, e.g. postgresql+asyncpg://vidbox@db.example.org:5432/vidbox "
    "(password in the URL or in database.password).",
)
@box_options
def copy_command(target: str) -> None:
    """Copy this SQLite box's metadata (accounts, videos, share links, jobs...) into
    PostgreSQL, creating its schema. Safe to run again after an interruption: rows already
    there are skipped. The SQLite file is only read. Stop vidbox first."""
    settings = box_settings()
    if configured_url(settings):
        raise click.ClickException(
            f"this box already uses PostgreSQL ({describe_url(configured_url(settings))}); "
            "db copy copies a SQLite box"
        )
    url = _target_url(settings, target)
    running = live_runners(settings.data_dir)
    if running:
        # Its writes after the snapshot would be lost to the new box.
        raise click.ClickException(
            f"vidbox is running on {settings.data_dir} ({running} process(es)); stop it first, "
            "so that nothing written during the copy is left behind"
        )
    try:
        report = asyncio.run(_copy(settings, url))
    except CopyRefused as exc:
        raise click.ClickException(str(exc)) from None
    except (sa.exc.SQLAlchemyError, OSError, CommandError) as exc:
        detail = getattr(exc, "orig", None) or exc
        raise click.ClickException(f"cannot copy the database: {detail}") from None
    except KeyboardInterrupt:
        raise click.ClickException(
            "interrupted; run the same command again to copy the rest"
        ) from None
    click.echo(
        f"{report.rows} rows: {report.inserted} copied, {report.updated} updated, "
        f"{report.unchanged} already there."
    )
    for line in _next_steps(settings, url):
        click.echo(line)
