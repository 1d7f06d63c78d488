"""What one host holds: its work and temp folders (``<data dir>/tmp``) and its upload spool.

Every process sweeps these on its own host, at start (awaited, so a server answers only once
what a killed process left is gone) and every hour after, as ``HostSweeper``. They cannot be
part of the box-wide cleanup job (vidbox.jobs.cleanup): that job runs on whichever host claims
it, so the folders of every other host would never be swept. Processes sharing one data dir
take turns through a ``flock`` on ``<data dir>/sweep.lock`` (a sweep already under way is
not run twice at once).

Nothing is removed on age or on this host's view alone where another process could still be
using it; what goes is provably dead:

- work folders whose attempt the database does not show running (vidbox.jobs.leftovers);
- spool uploads with an info file but no Upload row, an hour after they were created;
- one-shot bodies (``.receiving``) of dead receivers (vidbox.uploads.abandoned: this host's
  known at once from their life locks, another host's after an hour without a change);
- stray part, verify and temp files an hour after their last write, unless a job that still
  needs them names them.

A spool shared by several hosts (one folder on a network file system) is swept by each of
them: every removal above holds for any host, the database being the one view of uploads and
jobs, and removing a file another sweep removed first is no error. No removal rests on a
file lock taken on another host: over NFS those hold only where the mount's lock manager
works.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import shutil
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlmodel import col, select

from vidbox.jobs.leftovers import TMP_DIR, is_work_dir, sweep_work_dirs
from vidbox.jobs.queue import LIVE_STATES
from vidbox.logs import log_fields
from vidbox.models import Job, JobState, Upload, Video, utcnow
from vidbox.uploads import UploadError, UploadSpool

if TYPE_CHECKING:
    from vidbox.services import Services

log = logging.getLogger("vidbox.jobs")

HOST_SWEEP_INTERVAL = timedelta(hours=1)
SWEEP_LOCK = "sweep.lock"
# Spool files and storage objects nobody owns are left this long after their last write: an
# upload being created or a video being stored right now owns its files a moment later.
ORPHAN_AGE = timedelta(hours=1)
# Other stray files in data_dir/tmp. Work folders of processing attempts are not aged: they
# go as soon as their attempt is not running (vidbox.jobs.leftovers), however long it runs.
TEMP_AGE = timedelta(days=1)
SQL_CHUNK = 500


@dataclass
class CleanupReport:
    expired_uploads: int = 0
    videos_removed: int = 0
    spool_leftovers: int = 0
    temp_entries: int = 0
    storage_objects: int = 0
    old_jobs: int = 0
    rate_limits: int = 0


Sweep = Callable[[], Awaitable[object]]


async def run_sweeps(sweeps: Iterable[Sweep]) -> None:
    """Run every sweep; one failing (the S3 server is down) does not stop the others, and the
    first error is raised at the end (a job is then retried)."""
    errors: list[Exception] = []
    for sweep in sweeps:
        try:
            await sweep()
        except Exception as exc:
            log.warning("a cleanup sweep failed", exc_info=True)
            errors.append(exc)
    if errors:
        raise errors[0]


def chunks(items: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), SQL_CHUNK):
        yield items[start : start + SQL_CHUNK]


def spool_of(services: Services) -> UploadSpool:
    return getattr(services, "spool", None) or UploadSpool(services.settings.spool_dir)


@contextlib.contextmanager
def _sweep_lock(data_dir: Path) -> Iterator[bool]:
    """True when this process may sweep ``data_dir`` now (no other process of it is)."""
    fd = os.open(data_dir / SWEEP_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # also drops the lock


async def sweep_host(
    services: Services, *, now: datetime | None = None, report: CleanupReport | None = None
) -> CleanupReport:
    """Sweep this host's temp folders and spool (see the module docstring); adds to ``report``.
    Returns at once when another process of the data dir is sweeping it."""
    now = now or utcnow()
    report = report or CleanupReport()
    spool = spool_of(services)
    with _sweep_lock(services.settings.data_dir) as ours:
        if ours:
            await run_sweeps(
                (
                    lambda: _abandoned_bodies(spool, report),
                    lambda: _spool_leftovers(services, spool, now, report),
                    lambda: _temp_leftovers(services, now, report),
                )
            )
    return report


class HostSweeper:
    """``sweep_host`` at start and then every ``interval``, for as long as the process runs."""

    def __init__(self, services: Services, interval: timedelta = HOST_SWEEP_INTERVAL) -> None:
        self.services = services
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.sweep()
        self._task = asyncio.create_task(self._every_interval(), name="host sweep")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def sweep(self) -> None:
        try:
            report = await sweep_host(self.services)
        except Exception:
            log.exception("sweeping this host's temp folders and spool failed")
            return
        if report != CleanupReport():
            log.info("host sweep finished", extra=log_fields(**_nonzero(report)))

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self.interval.total_seconds())
            await self.sweep()


def _nonzero(report: CleanupReport) -> dict[str, int]:
    return {name: value for name, value in asdict(report).items() if value}


# -- the spool ---------------------------------------------------------------------------------


async def _abandoned_bodies(spool: UploadSpool, report: CleanupReport) -> None:
    removed, freed = await asyncio.to_thread(spool.remove_abandoned)
    if removed:
        log.info(
            "removed what killed uploads left in the spool",
            extra=log_fields(files=removed, bytes=freed),
        )
    report.spool_leftovers += removed


async def _protected_spool_ids(services: Services) -> set[str]:
    """Spool files that jobs still need: one-shot uploads have no Upload row and no info file,
    only the ``spool_id`` in their process_video job. Jobs that ended failed or dead keep
    theirs while the video exists, so an admin can retry them."""
    protected: set[str] = set()
    waiting: dict[str, str] = {}  # spool id -> video id, for finished jobs
    async with services.db.read() as session:
        rows = await session.exec(
            select(Job.payload, Job.state, Job.video_id).where(
                col(Job.state) != JobState.SUCCEEDED, col(Job.payload).contains("spool_id")
            )
        )
        for payload, state, video_id in rows.all():
            try:
                spool_id = json.loads(payload).get("spool_id")
            except (ValueError, AttributeError):
                continue
            if not isinstance(spool_id, str):
                continue
            if state in LIVE_STATES or video_id is None:
                protected.add(spool_id)
            else:
                waiting[spool_id] = video_id
        videos = list(set(waiting.values()))
        existing: set[str] = set()
        for chunk in chunks(videos):
            found = await session.exec(select(Video.id).where(col(Video.id).in_(chunk)))
            existing.update(found.all())
    protected.update(sid for sid, vid in waiting.items() if vid in existing)
    return protected


async def _spool_leftovers(
    services: Services, spool: UploadSpool, now: datetime, report: CleanupReport
) -> None:
    """Files no upload owns: stray part/verify/temp files, and uploads with an info file but no
    Upload row (expired and dropped by the box's cleanup job, wherever it ran, or deleted while
    a request still held the lock)."""
    cutoff = now - ORPHAN_AGE
    protected = await _protected_spool_ids(services)
    ids = await asyncio.to_thread(spool.ids)
    known: set[str] = set()
    async with services.db.read() as session:
        for chunk in chunks(ids):
            found = await session.exec(select(Upload.id).where(col(Upload.id).in_(chunk)))
            known.update(found.all())
    unowned = [upload_id for upload_id in ids if upload_id not in known | protected]
    report.spool_leftovers += await asyncio.to_thread(_remove_unowned, spool, unowned, cutoff)
    orphans = await asyncio.to_thread(spool.orphans, older_than=cutoff)
    report.spool_leftovers += await asyncio.to_thread(
        _unlink_all, [path for path in orphans if path.stem not in protected]
    )


def _remove_unowned(spool: UploadSpool, upload_ids: list[str], cutoff: datetime) -> int:
    removed = 0
    for upload_id in upload_ids:
        try:
            created = spool.info(upload_id).get("created_at")
        except (UploadError, ValueError):
            continue  # vanished meanwhile, or unreadable: orphans() reports it if stray
        if isinstance(created, datetime) and created >= cutoff:
            continue  # being created right now: its row is not committed yet
        with contextlib.suppress(UploadError):
            removed += spool.delete(upload_id)
    return removed


def _unlink_all(paths: list[Path]) -> int:
    removed = 0
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
    return removed


# -- temp folders ------------------------------------------------------------------------------


def _newest_mtime(path: Path) -> float:
    """The latest modification below ``path``: a folder's own mtime does not change when a
    file inside it is rewritten, so a busy job folder could look old."""
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                with contextlib.suppress(FileNotFoundError):
                    newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
    return newest


def _sweep_temp(root: Path, cutoff: datetime) -> int:
    if not root.is_dir():
        return 0
    removed = 0
    for entry in root.iterdir():
        if is_work_dir(entry):
            continue  # sweep_work_dirs knows whether its attempt still runs
        try:
            if datetime.fromtimestamp(_newest_mtime(entry), UTC) >= cutoff:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed += 1
        except FileNotFoundError:
            continue
    return removed


async def _temp_leftovers(services: Services, now: datetime, report: CleanupReport) -> None:
    data_dir = services.settings.data_dir
    report.temp_entries += await sweep_work_dirs(services.db, data_dir)
    report.temp_entries += await asyncio.to_thread(_sweep_temp, data_dir / TMP_DIR, now - TEMP_AGE)
