"""``vidbox check``: the readiness checks, run from the shell without starting the server and
without changing anything on disk (S3 aside: a missing bucket is created, as on start)."""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path

from vidbox.config import Settings
from vidbox.db import configured_url, describe_url, postgres_schema_status, schema_status
from vidbox.health import CheckResult, FFmpegCheck, check_data_dir, run_checks
from vidbox.mail import Mailer, MailError, render_test_mail
from vidbox.mail.origin import SETUP_ORIGIN, resolve_origin, unset_base_url_warning
from vidbox.storage import load


async def _data_dir(settings: Settings) -> str:
    folder = settings.data_dir
    if folder.exists():
        return await check_data_dir(folder)
    parent = next((p for p in folder.parents if p.exists()), Path("/"))
    if not parent.is_dir():
        raise RuntimeError(f"{folder} cannot be created: {parent} is not a folder")
    if not os.access(parent, os.W_OK):
        raise RuntimeError(f"{folder} does not exist and {parent} is not writable")
    return f"{folder} will be created on first start"


async def _postgres(url: str) -> str:
    where = describe_url(url)
    try:
        current, head = await postgres_schema_status(url)
    except Exception as exc:
        raise RuntimeError(f"{where} cannot be read: {getattr(exc, 'orig', None) or exc}") from None
    if current == head:
        return f"{where} (schema {current}, up to date)"
    return f"{where} (schema {current}; will be upgraded to {head} on start)"


async def _database(settings: Settings) -> str:
    url = configured_url(settings)
    if url:
        return await _postgres(url)
    path = settings.database_path
    if not path.exists():
        return f"{path} will be created on first start"
    try:
        current, head = schema_status(path)
    except Exception as exc:
        raise RuntimeError(f"{path} cannot be read: {exc}") from None
    if current == head:
        return f"{path} (schema {current}, up to date)"
    return f"{path} (schema {current}; will be upgraded to {head} on start)"


async def _storage(settings: Settings) -> str:
    if settings.storage.backend == "local" and not settings.media_dir.exists():
        return f"{settings.media_dir} will be created on first start"
    storage = load(settings)
    try:
        await storage.check()
        return storage.describe()
    finally:
        await storage.close()


def _stored_origin(settings: Settings) -> str | None:
    """The origin kept at /setup, read without creating or migrating anything."""
    path = settings.database_path
    if settings.server.base_url or not path.exists():
        return None
    try:
        with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
            row = db.execute("SELECT value FROM box_meta WHERE key = ?", (SETUP_ORIGIN,)).fetchone()
    except sqlite3.Error:  # an older schema without box_meta, or a locked file
        return None
    return str(row[0]) if row and row[0] else None


def mail_origin_of(settings: Settings) -> str:
    return resolve_origin(settings, _stored_origin(settings))


async def _email(settings: Settings, test_address: str | None) -> str:
    mailer = Mailer.from_settings(settings)
    if not mailer.enabled:
        if test_address:
            raise RuntimeError("email is off: set email.host to send a test mail")
        return "off (no SMTP server configured; share links work, nobody is emailed)"
    origin = mail_origin_of(settings)
    try:
        if test_address:
            mail = render_test_mail(
                to=test_address, box_name=settings.server.name, url=origin + "/"
            )
            await mailer.send(mail)
            detail = f"{mailer.server}: test mail accepted for {test_address}"
        else:
            await mailer.check()
            detail = f"{mailer.server} ({settings.email.security}) accepts a session"
    except MailError as exc:
        raise RuntimeError(exc.message) from None
    if not settings.server.base_url:
        detail += "; warning: " + unset_base_url_warning(origin)
    return detail


async def diagnose(settings: Settings, *, test_address: str | None = None) -> list[CheckResult]:
    config = CheckResult("config", True, "; ".join(settings.sources))
    return [
        config,
        *await run_checks(
            {
                "data_dir": lambda: _data_dir(settings),
                "database": lambda: _database(settings),
                "ffmpeg": FFmpegCheck(),
                "storage": lambda: _storage(settings),
                "email": lambda: _email(settings, test_address),
            }
        ),
    ]
