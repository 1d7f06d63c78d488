"""Who may write an upload: one request at a time, whichever process of the box it
reaches, also when web processes on several hosts share one spool folder.

On PostgreSQL, where processes may run on several hosts, a lease on the upload's database
row decides. The spool's ``flock`` serialises writers on one host, but over NFS it reaches
other clients only when the mount's lock manager works (``nolock`` or ``local_lock=`` make it
host-local, silently), and a crashed client's lock lingers until the server notices; every
process already shares the database, and a conditional UPDATE is atomic there.

A lease names its holder ``host:pid:process/request`` and runs out ``LEASE_SECONDS`` after its
last renewal; a holder renews it every ``RENEW_SECONDS`` while its request runs and clears it
when done. A process that dies leaves its lease behind. Another host waits for it to run out;
on the holder's own host a restarted server need not wait: the holder's life lock
(``vidbox.uploads.liveness``) tells that it is dead, and its lease is taken over at once.
Clocks of the hosts should agree to a few seconds (NTP): the lease is compared across them;
and hosts sharing a spool need distinct host names, which tell this host's processes apart.

On SQLite every process of the box runs on one host (SQLite's own locking does not reach
across NFS clients either), so an ``flock`` on ``<spool>/.locks/<upload id>``, taken
afresh by each request, is enough, costs no database write per PATCH, and is dropped by the
kernel the moment its process dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy import or_, update
from sqlmodel import col

from vidbox.db import Database, cancel_outside_sessions
from vidbox.models import Upload, utcnow
from vidbox.uploads import UploadLocked, UploadSpool
from vidbox.uploads.liveness import ProcessMark

log = logging.getLogger("vidbox.uploads")

LEASE_SECONDS = 20.0
RENEW_SECONDS = LEASE_SECONDS / 4


async def _take(db: Database, upload_id: str, holder: str, *, dead: str | None = None) -> bool:
    now = utcnow()
    free = or_(col(Upload.writer).is_(None), col(Upload.writer_until) < now)
    claim = col(Upload.writer) == dead if dead is not None else free
    async with db.queue_session() as session:
        result = await session.exec(
            update(Upload)
            .where(col(Upload.id) == upload_id, claim)
            .values(writer=holder, writer_until=now + timedelta(seconds=LEASE_SECONDS))
        )
        return bool(result.rowcount)


async def _current_writer(db: Database, upload_id: str) -> str | None:
    async with db.read() as session:
        row = await session.get(Upload, upload_id)
        return row.writer if row is not None else None


async def take(db: Database, mark: ProcessMark, upload_id: str, holder: str) -> bool:
    """Take the lease if it is free, ran out, or belongs to a dead process of this host."""
    if await _take(db, upload_id, holder):
        return True
    writer = await _current_writer(db, upload_id)
    if writer is not None and await asyncio.to_thread(mark.is_dead, writer):
        return await _take(db, upload_id, holder, dead=writer)
    return False


async def renew(db: Database, upload_id: str, holder: str) -> bool:
    """Extend the lease; False when it was lost (taken over, or the upload is gone)."""
    until = utcnow() + timedelta(seconds=LEASE_SECONDS)
    async with db.queue_session() as session:
        result = await session.exec(
            update(Upload)
            .where(col(Upload.id) == upload_id, col(Upload.writer) == holder)
            .values(writer_until=until)
        )
        return bool(result.rowcount)


async def release(db: Database, upload_id: str, holder: str) -> None:
    async with db.queue_session() as session:
        await session.exec(
            update(Upload)
            .where(col(Upload.id) == upload_id, col(Upload.writer) == holder)
            .values(writer=None, writer_until=None)
        )


@contextlib.asynccontextmanager
async def writing(
    db: Database, mark: ProcessMark, spool: UploadSpool, upload_id: str, *, wait: float = 0.0
) -> AsyncIterator[None]:
    """Be the upload's one writer for the block. UploadLocked when another request is
    (after waiting up to ``wait`` seconds for it to finish, or its lease to run out)."""
    if db.postgres:
        async with _leased(db, mark, upload_id, wait):
            yield
    else:
        async with _file_locked(spool.writer_lock_path(upload_id), wait):
            yield


async def _retrying(attempt: Callable[[], Awaitable[bool]], wait: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    pause = 0.05
    while not await attempt():
        if loop.time() + pause > deadline:
            raise UploadLocked()
        await asyncio.sleep(pause)
        pause = min(pause * 2, 1.0)


def _try_flock(path: Path) -> int | None:
    path.parent.mkdir(exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextlib.asynccontextmanager
async def _file_locked(path: Path, wait: float) -> AsyncIterator[None]:
    fd: int | None = None

    async def attempt() -> bool:
        nonlocal fd
        fd = _try_flock(path)  # a few microseconds: not worth a thread hop
        return fd is not None

    await _retrying(attempt, wait)
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)  # also drops the lock


@contextlib.asynccontextmanager
async def _leased(
    db: Database, mark: ProcessMark, upload_id: str, wait: float
) -> AsyncIterator[str]:
    """Hold the upload's lease for the block; yields the holder name. A lease lost while the
    block runs (this process stalled past it and another took over) cancels the block,
    which then raises UploadLocked."""
    holder = f"{mark.name}/{uuid.uuid4().hex[:8]}"
    await _retrying(lambda: take(db, mark, upload_id, holder), wait)
    task = asyncio.current_task()
    lost = False

    async def keep() -> None:
        nonlocal lost
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            try:
                kept = await renew(db, upload_id, holder)
            except Exception:  # the database is away for a moment: try again next time
                log.warning("could not renew an upload's lease", exc_info=True)
                continue
            if not kept:
                lost = True
                if task is not None:
                    # Not in the middle of a database session (see vidbox.db).
                    cancel_outside_sessions(task)
                return

    renewer = asyncio.create_task(keep())
    try:
        yield holder
    except asyncio.CancelledError:
        if lost and task is not None and task.uncancel() == 0:
            raise UploadLocked() from None
        raise
    finally:
        renewer.cancel()
        # Also when the request is being cancelled: a lease left behind would hold the upload
        # until it runs out. Failing that, it runs out.
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.shield(release(db, upload_id, holder))
