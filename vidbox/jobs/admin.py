"""What an admin sees of the queue and may do to it."""

from __future__ import annotations

from typing import Any

from vidbox.errors import NotFound
from vidbox.jobs.queue import list_jobs, queue_stats, retry_job
from vidbox.models import Job, Video, VideoStatus
from vidbox.services import Services


async def queue_overview(services: Services) -> dict[str, Any]:
    """Failed and dead jobs (newest first) with their errors, and the queue's counts."""
    jobs: list[Job] = await list_jobs(services.db)
    stats = await queue_stats(services.db)
    return {"jobs": jobs, "stats": stats}


async def retry(services: Services, job_id: int) -> Job:
    """Run a failed or dead job again; its video shows PROCESSING again meanwhile."""
    job = await retry_job(services.db, job_id)
    if job is None:
        raise NotFound("No such job.")
    if job.video_id:
        async with services.db.session() as session:
            video = await session.get(Video, job.video_id)
            if video is not None and video.status == VideoStatus.FAILED:
                video.status, video.error, video.progress = VideoStatus.PROCESSING, None, 0
                session.add(video)
    if services.runner is not None:
        services.runner.wake()
    return job


async def storage_status(services: Services) -> tuple[bool, str]:
    try:
        await services.storage.check()
    except Exception as exc:  # shown to the admin as it is
        return False, str(exc)
    return True, services.storage.describe()
