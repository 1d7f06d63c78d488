"""What an admin sees of the queue and may do to it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from vidbox.db import Database
from vidbox.errors import NotFound
from vidbox.jobs.queue import ALL_STATES, LANES, wake_after_commit
from vidbox.models import Job, JobState, Video, VideoStatus, utcnow
from vidbox.services import Services


async def list_jobs(
    db: Database,
    states: Sequence[str] = (JobState.FAILED, JobState.DEAD),
    limit: int = 50,
) -> list[Job]:
    """Jobs in ``states``, most recently changed first."""
    async with db.read() as session:
        rows = await session.exec(
            select(Job)
            .where(col(Job.state).in_(list(states)))
            .order_by(col(Job.updated_at).desc(), col(Job.id).desc())
            .limit(limit)
        )
        return list(rows.all())


async def retry_job(db: Database, job_id: int) -> Job | None:
    """Run a job again from scratch, now: back to queued with its attempts reset. None when
    there is no such job; a running job is returned unchanged (it is already being run)."""
    async with db.session() as session:
        return await _requeue_finished(session, job_id)


async def _requeue_finished(session: AsyncSession, job_id: int) -> Job | None:
    now = utcnow()
    job = await session.get(Job, job_id)
    if job is None or job.state == JobState.RUNNING:
        return job
    job.state = JobState.QUEUED
    job.attempts = 0
    job.run_at = now
    job.lease_until = None
    job.worker = None
    job.finished_at = None
    job.updated_at = now
    session.add(job)
    wake_after_commit(session, job.lane)
    return job


async def queue_stats(db: Database, *, now: datetime | None = None) -> dict[str, Any]:
    """For the admin page and health checks::

    {"states": {"queued": 3, "running": 1, "succeeded": 9, "failed": 0, "dead": 1},
     "lanes": {"media": {"queued": 2, ...}, "small": {...}},
     "runnable": 2,                  # queued with run_at <= now
     "oldest_runnable_seconds": 84.2 # how long the longest-waiting runnable job has
                                     # waited since its run_at; None when none is waiting
     "expired_leases": 0}            # running jobs whose worker stopped renewing
    """
    now = now or utcnow()
    lanes: dict[str, dict[str, int]] = {lane: dict.fromkeys(ALL_STATES, 0) for lane in LANES}
    states = dict.fromkeys(ALL_STATES, 0)
    async with db.read() as session:
        counts = await session.exec(
            select(Job.lane, Job.state, func.count()).group_by(col(Job.lane), col(Job.state))
        )
        for lane, state, count in counts.all():
            lanes.setdefault(lane, dict.fromkeys(ALL_STATES, 0))[state] = count
            states[state] = states.get(state, 0) + count
        runnable = col(Job.state) == JobState.QUEUED, col(Job.run_at) <= now
        waiting, oldest = (
            await session.exec(select(func.count(), func.min(Job.run_at)).where(*runnable))
        ).one()
        expired = (
            await session.exec(
                select(func.count()).where(
                    col(Job.state) == JobState.RUNNING,
                    or_(col(Job.lease_until).is_(None), col(Job.lease_until) < now),
                )
            )
        ).one()
    return {
        "states": states,
        "lanes": lanes,
        "runnable": int(waiting),
        "oldest_runnable_seconds": (now - oldest).total_seconds() if oldest else None,
        "expired_leases": int(expired),
    }


async def queue_overview(services: Services) -> dict[str, Any]:
    """Failed and dead jobs (newest first) with their errors, and the queue's counts."""
    jobs: list[Job] = await list_jobs(services.db)
    stats = await queue_stats(services.db)
    return {"jobs": jobs, "stats": stats}


async def retry(services: Services, job_id: int) -> Job:
    """Run a failed or dead job again; its video shows PROCESSING again meanwhile (one unit
    of work, so the page never shows a queued job beside a FAILED video)."""
    async with services.db.session() as session:
        job = await _requeue_finished(session, job_id)
        if job is None:
            raise NotFound("No such job.")
        if job.video_id:
            video = await session.get(Video, job.video_id)
            if video is not None and video.status == VideoStatus.FAILED:
                video.status, video.error, video.progress = VideoStatus.PROCESSING, None, 0
                session.add(video)
    return job


async def storage_status(services: Services) -> tuple[bool, str]:
    try:
        await services.storage.check()
    except Exception as exc:  # shown to the admin as it is
        return False, str(exc)
    return True, services.storage.describe()
