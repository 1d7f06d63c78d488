"""The hourly cleanup job: expired uploads, stray spool and temp files, orphaned media objects,
old job and rate-limit rows.

Every sweep only removes what is both unowned and old, so work in flight is never touched: an
upload is removed only after its expiry, stray files and storage objects only an hour after
they were last written, work folders once their attempt is not running, other temp files a
day after.

The job is periodic and durable: the runner enqueues it on start under the idempotency key
"cleanup", and each run first schedules the next one an hour later, so exactly one is always
waiting, whatever happens to the current run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import delete
from sqlmodel import col, select

from vidbox.auth.ratelimit import RateLimiter
from vidbox.jobs import Handler, JobContext
from vidbox.jobs.leftovers import is_work_dir, sweep_work_dirs
from vidbox.jobs.queue import LIVE_STATES, enqueue, release_idempotency_key
from vidbox.logs import log_fields
from vidbox.models import Job, JobState, Upload, Video, VideoStatus, utcnow
from vidbox.storage import Storage
from vidbox.uploads import UploadError, UploadSpool

if TYPE_CHECKING:
    from vidbox.services import Services

log = logging.getLogger("vidbox.jobs")

CLEANUP_KIND = "cleanup"
CLEANUP_INTERVAL = timedelta(hours=1)
# Spool files and storage objects nobody owns are left this long after their last write: an
# upload being created or a video being stored right now owns its files a moment later.
ORPHAN_AGE = timedelta(hours=1)
# Other stray files in data_dir/tmp. Work folders of processing attempts are not aged: they
# go as soon as their attempt is not running (vidbox.jobs.leftovers), however long it runs.
TEMP_AGE = timedelta(days=1)
# Succeeded jobs are kept a while for the admin page, then dropped; failed and dead ones stay
# until an admin retries them or their video is deleted.
SUCCEEDED_JOB_AGE = timedelta(days=7)
# Rate-limit counters older than any limit's window (the longest is an hour) count nothing.
RATE_LIMIT_AGE = timedelta(days=1)
SQL_CHUNK = 500
VIDEO_PREFIX = "videos/"


@dataclass
class CleanupReport:
    expired_uploads: int = 0
    videos_removed: int = 0
    spool_leftovers: int = 0
    temp_entries: int = 0
    storage_objects: int = 0
    old_jobs: int = 0
    rate_limits: int = 0


async def cleanup(ctx: JobContext) -> None:
    # Scheduling comes first so that a sweep that keeps failing never ends the schedule.
    await schedule_next_cleanup(ctx.services, ctx.job_id)
    report = await run_cleanup(ctx.services)
    log.info("cleanup finished", extra=log_fields(**asdict(report)))


async def schedule_next_cleanup(
    services: Services, job_id: int | None, *, now: datetime | None = None
) -> Job:
    """Hand the "cleanup" key from the running job to its successor, due in an hour."""
    run_at = (now or utcnow()) + CLEANUP_INTERVAL
    async with services.db.session() as session:
        if job_id is not None:
            await release_idempotency_key(session, job_id)
        return await enqueue(session, CLEANUP_KIND, {}, idempotency_key=CLEANUP_KIND, run_at=run_at)


async def run_cleanup(services: Services, *, now: datetime | None = None) -> CleanupReport:
    """Run every sweep; one failing (the S3 server is down) does not stop the others, and the
    first error is raised at the end so the job is retried."""
    now = now or utcnow()
    report = CleanupReport()
    spool = getattr(services, "spool", None) or UploadSpool(services.settings.spool_dir)
    errors: list[Exception] = []
    sweeps: tuple[Callable[[], Awaitable[object]], ...] = (
        lambda: _expired_uploads(services, spool, now, report),
        lambda: _spool_leftovers(services, spool, now, report),
        lambda: _temp_leftovers(services, now, report),
        lambda: _storage_orphans(services, services.storage, now, report),
        lambda: _old_jobs(services, now, report),
        lambda: _old_rate_limits(services, now, report),
    )
    for sweep in sweeps:
        try:
            await sweep()
        except Exception as exc:
            log.warning("a cleanup sweep failed", exc_info=True)
            errors.append(exc)
    if errors:
        raise errors[0]
    return report


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), SQL_CHUNK):
        yield items[start : start + SQL_CHUNK]


# -- uploads and the spool ---------------------------------------------------------------------


async def _expired_uploads(
    services: Services, spool: UploadSpool, now: datetime, report: CleanupReport
) -> None:
    """Unfinished uploads past their expiry: the row, its still-UPLOADING video, the bytes.
    The rows go first, in one write transaction that also re-checks the upload is unfinished,
    so an upload completing at this moment either wins or is gone, never half of each."""
    async with services.db.session() as session:
        expired = (
            await session.exec(
                select(Upload).where(
                    col(Upload.completed_at).is_(None), col(Upload.expires_at) < now
                )
            )
        ).all()
        upload_ids = [upload.id for upload in expired]
        video_ids = [upload.video_id for upload in expired]
        for chunk in _chunks(video_ids):
            result = await session.exec(
                delete(Video).where(
                    col(Video.id).in_(chunk), col(Video.status) == VideoStatus.UPLOADING
                )
            )
            report.videos_removed += int(result.rowcount)
        for chunk in _chunks(upload_ids):
            # Rows whose video was just deleted are already gone (ON DELETE CASCADE).
            await session.exec(delete(Upload).where(col(Upload.id).in_(chunk)))
    report.expired_uploads += len(upload_ids)
    for upload_id in upload_ids:
        # A request still appending holds the upload's lock; the leftover sweep gets it later.
        with contextlib.suppress(UploadError):
            await asyncio.to_thread(spool.delete, upload_id)


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
        for chunk in _chunks(videos):
            found = await session.exec(select(Video.id).where(col(Video.id).in_(chunk)))
            existing.update(found.all())
    protected.update(sid for sid, vid in waiting.items() if vid in existing)
    return protected


async def _spool_leftovers(
    services: Services, spool: UploadSpool, now: datetime, report: CleanupReport
) -> None:
    """Files no upload owns: stray part/verify/temp files, and uploads with an info file but no
    Upload row (their video was deleted while a request still held the lock)."""
    cutoff = now - ORPHAN_AGE
    protected = await _protected_spool_ids(services)
    ids = await asyncio.to_thread(spool.ids)
    known: set[str] = set()
    async with services.db.read() as session:
        for chunk in _chunks(ids):
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
    report.temp_entries += await asyncio.to_thread(_sweep_temp, data_dir / "tmp", now - TEMP_AGE)


# -- storage -----------------------------------------------------------------------------------


async def _storage_orphans(
    services: Services, storage: Storage, now: datetime, report: CleanupReport
) -> None:
    """Objects under ``videos/{user_id}/{video_id}/`` whose video no longer exists (a delete
    that failed half-way, a job that stored files after its video was deleted)."""
    cutoff = now - ORPHAN_AGE
    by_video: dict[str, list[str]] = {}
    for info in await storage.list_prefix(VIDEO_PREFIX):
        parts = info.key.split("/")
        if len(parts) >= 4 and info.modified < cutoff:
            by_video.setdefault(parts[2], []).append(info.key)
    existing: set[str] = set()
    async with services.db.read() as session:
        for chunk in _chunks(list(by_video)):
            found = await session.exec(select(Video.id).where(col(Video.id).in_(chunk)))
            existing.update(found.all())
    for video_id, keys in by_video.items():
        if video_id in existing:
            continue
        for key in keys:
            await storage.delete(key)
            report.storage_objects += 1


# -- the job table itself ------------------------------------------------------------------------


async def _old_jobs(services: Services, now: datetime, report: CleanupReport) -> None:
    async with services.db.session() as session:
        result = await session.exec(
            delete(Job).where(
                col(Job.state) == JobState.SUCCEEDED,
                col(Job.finished_at) < now - SUCCEEDED_JOB_AGE,
            )
        )
        report.old_jobs += int(result.rowcount)


async def _old_rate_limits(services: Services, now: datetime, report: CleanupReport) -> None:
    report.rate_limits += await RateLimiter(services.db).forget_before(now - RATE_LIMIT_AGE)


HANDLERS: dict[str, Handler] = {CLEANUP_KIND: cleanup}
