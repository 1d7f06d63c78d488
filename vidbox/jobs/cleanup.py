"""The box's cleanup job: expired uploads, orphaned media objects, old job and rate-limit rows.

These live in the database and the media store, which every host shares: one run box-wide
is enough, and two hosts must not run it at once. So it is one queued job: the runner
enqueues it on start under the idempotency key "cleanup", and each run first schedules the
next one an hour later, so exactly one is always waiting, whatever happens to the current run,
and the queue's claim lets exactly one process run it. What each host holds on its own disk
(work folders, the spool) is swept by every process on its own host (vidbox.jobs.hostsweep).

Every sweep only removes what is both unowned and old, so work in flight is never touched: an
upload is removed only after its expiry, storage objects only an hour after they were last
written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete
from sqlmodel import col, select

from vidbox.auth.ratelimit import RateLimiter
from vidbox.jobs import Handler, JobContext
from vidbox.jobs.hostsweep import (
    ORPHAN_AGE,
    TEMP_AGE,
    CleanupReport,
    chunks,
    run_sweeps,
    spool_of,
    sweep_host,
)
from vidbox.jobs.queue import enqueue, release_idempotency_key
from vidbox.logs import log_fields
from vidbox.models import Job, JobState, Upload, Video, VideoStatus, utcnow
from vidbox.storage import Storage
from vidbox.uploads import UploadError, UploadSpool

if TYPE_CHECKING:
    from vidbox.services import Services

log = logging.getLogger("vidbox.jobs")

__all__ = ["ORPHAN_AGE", "TEMP_AGE", "CleanupReport", "run_box_cleanup", "run_cleanup"]

CLEANUP_KIND = "cleanup"
CLEANUP_INTERVAL = timedelta(hours=1)
# Succeeded jobs are kept a while for the admin page, then dropped; failed and dead ones stay
# until an admin retries them or their video is deleted.
SUCCEEDED_JOB_AGE = timedelta(days=7)
# Rate-limit counters older than any limit's window (the longest is an hour) count nothing.
RATE_LIMIT_AGE = timedelta(days=1)
VIDEO_PREFIX = "videos/"


async def cleanup(ctx: JobContext) -> None:
    # Scheduling comes first so that a sweep that keeps failing never ends the schedule.
    await schedule_next_cleanup(ctx.services, ctx.job_id)
    report = await run_box_cleanup(ctx.services)
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


async def run_box_cleanup(
    services: Services, *, now: datetime | None = None, report: CleanupReport | None = None
) -> CleanupReport:
    """The box-wide sweeps (the job's): the database and the media store."""
    now = now or utcnow()
    report = report or CleanupReport()
    spool = spool_of(services)
    await run_sweeps(
        (
            lambda: _expired_uploads(services, spool, now, report),
            lambda: _storage_orphans(services, services.storage, now, report),
            lambda: _old_jobs(services, now, report),
            lambda: _old_rate_limits(services, now, report),
        )
    )
    return report


async def run_cleanup(services: Services, *, now: datetime | None = None) -> CleanupReport:
    """Everything at once, box-wide and this host's (for tools and tests): the first error is
    raised at the end, after every sweep had its turn."""
    now = now or utcnow()
    report = CleanupReport()
    errors: list[Exception] = []
    for part in (run_box_cleanup, sweep_host):
        try:
            await part(services, now=now, report=report)
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]
    return report


# -- uploads ---------------------------------------------------------------------------------


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
        for chunk in chunks(video_ids):
            result = await session.exec(
                delete(Video).where(
                    col(Video.id).in_(chunk), col(Video.status) == VideoStatus.UPLOADING
                )
            )
            report.videos_removed += int(result.rowcount)
        for chunk in chunks(upload_ids):
            # Rows whose video was just deleted are already gone (ON DELETE CASCADE).
            await session.exec(delete(Upload).where(col(Upload.id).in_(chunk)))
    report.expired_uploads += len(upload_ids)
    for upload_id in upload_ids:
        # A request still appending holds the upload's lock, and an upload spooled on another
        # host is not here: that host's sweep removes them once their row is gone.
        with contextlib.suppress(UploadError):
            await asyncio.to_thread(spool.delete, upload_id)


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
        for chunk in chunks(list(by_video)):
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
