"""The long-lived parts of a running box, opened and closed together.

The app's lifespan and the CLI (``vidbox check``, ``vidbox user ...``) both use
``open_services``, so a command-line tool sees exactly what the server sees.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial

from vidbox.config import Settings
from vidbox.datadir import load_secret_key, prepare_data_dir
from vidbox.db import Database
from vidbox.health import FFmpegCheck, check_data_dir, check_database
from vidbox.mail import Mailer
from vidbox.storage import Storage, load
from vidbox.threads import ThreadPools
from vidbox.uploads import UploadSpool
from vidbox.uploads.liveness import ProcessMark


async def check_storage(storage: Storage) -> str:
    await storage.check()
    return storage.describe()


@dataclass
class Services:
    settings: Settings
    db: Database
    secret_key: bytes
    storage: Storage
    # One spool per process: it holds the per-upload locks.
    spool: UploadSpool
    mailer: Mailer
    # This process as upload leases name it; its life lock tells this host's other
    # processes (sharing the spool) whether it still lives.
    mark: ProcessMark
    ffmpeg_check: FFmpegCheck = field(default_factory=FFmpegCheck)
    # The disk and storage threads (vidbox.threads), closed with the services.
    threads: ThreadPools = field(default_factory=ThreadPools)

    def readiness_checks(self) -> dict[str, Callable[[], Awaitable[str]]]:
        return {
            "database": partial(check_database, self.db),
            "data_dir": partial(check_data_dir, self.settings.data_dir),
            "ffmpeg": self.ffmpeg_check,
            "storage": partial(check_storage, self.storage),
        }


@asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    prepare_data_dir(settings)
    # A configured key is shared by every process of the box; the file is one process's own.
    secret_key = (
        settings.server.secret_key.encode()
        if settings.server.secret_key
        else load_secret_key(settings.secret_key_path)
    )
    db = Database.from_settings(settings)
    threads = ThreadPools()
    storage = load(settings, threads)
    mark = ProcessMark(settings.spool_dir)
    try:
        await db.migrate()
        spool = UploadSpool(settings.spool_dir, threads.disk, owner=mark)
        mark.hold()
        yield Services(
            settings=settings,
            db=db,
            secret_key=secret_key,
            storage=storage,
            spool=spool,
            mailer=Mailer.from_settings(settings),
            mark=mark,
            threads=threads,
        )
    finally:
        mark.release()
        await storage.close()
        await db.close()
        threads.close()
