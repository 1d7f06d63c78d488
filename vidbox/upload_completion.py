"""The last byte of an upload is in: make it the video's original and queue its processing.

Where the job will run decides what must happen first. A process that runs jobs itself, on a
box whose other processes (SQLite) all live on this host, hands the job the spool file: the
job links it into its work folder and stores the original while FFmpeg already works, as
vidbox has always done. Otherwise (a web-only process, or any process on PostgreSQL, where
workers may run on other hosts with data folders of their own) the original goes to the
media store before the job is queued, so whichever worker claims the job finds its source
there, and the spool copy goes at once.

A tus completion runs under the upload's lease (vidbox.upload_lease). If the process dies
half-way (bytes all in, original not stored or job not queued), the upload stays unfinished
with every byte in the spool, and the next HEAD or PATCH, on any process, completes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from vidbox.errors import NotFound
from vidbox.jobs.outputs import store_original
from vidbox.logs import log_fields
from vidbox.models import Upload, Video, utcnow
from vidbox.services import Services
from vidbox.storage import ObjectNotFound
from vidbox.uploads import UploadError
from vidbox.videos import start_processing

log = logging.getLogger("vidbox.uploads")


def stores_before_queueing(services: Services) -> bool:
    """Whether a finished upload goes to the media store before its job is queued (see the
    module docstring)."""
    return services.settings.server.role != "all" or services.db.postgres


async def store_upload(services: Services, video: Video, source: Path) -> str:
    """The original of ``video`` from ``source``, in the media store; returns its key."""
    key = await store_original(services.storage, video, source)
    log.info("upload stored", extra=log_fields(video_id=video.id, key=key))
    return key


async def complete_tus(services: Services, upload: Upload, container: str | None) -> None:
    """Finish an upload whose every byte is in the spool (the caller holds its lease)."""
    key = None
    if stores_before_queueing(services):
        async with services.db.read() as session:
            video = await session.get(Video, upload.video_id)
        if video is None:
            raise NotFound("No such upload.")
        if container is not None:
            video.container = container  # names the original's key and type
        key = await store_upload(services, video, services.spool.data_path(upload.id))
    async with services.db.session() as session:
        video = await session.get(Video, upload.video_id)
        row = await session.get(Upload, upload.id)
        if video is None or row is None:
            raise NotFound("No such upload.")
        if row.completed_at is not None:
            return  # finished meanwhile (its lease had run out); queued once all the same
        if container is not None:
            video.container = container
        if key is not None:
            video.original_key = key
        row.completed_at = utcnow()
        session.add(row)
        await start_processing(session, video, None if key else upload.id)
    log.info("upload complete", extra=log_fields(upload_id=upload.id, video_id=video.id))
    if key is not None:
        # HEAD answers a completed upload from its row; no job reads this copy.
        with contextlib.suppress(UploadError):
            await asyncio.to_thread(services.spool.delete, upload.id)


async def forget_stored(services: Services, key: str | None) -> None:
    """Remove an original stored for a video that was then not created (quota, a crash)."""
    if key is None:
        return
    with contextlib.suppress(ObjectNotFound):
        await services.storage.delete(key)
