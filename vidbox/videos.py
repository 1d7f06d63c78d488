"""Videos: creating them from uploads, listing, renaming, deleting, and their JSON shape.

Storage keys are ours: ``videos/{owner_id}/{video_id}/original.{ext}``, ``.../thumbnail.jpg``
and ``.../hls/{rendition}/...``. The uploader's file name is metadata only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from vidbox.db import Database
from vidbox.errors import NotFound, PayloadTooLarge, ValidationFailed
from vidbox.jobs import MEDIA_LANE
from vidbox.jobs.queue import cancel_video_jobs, enqueue, stop_video_jobs
from vidbox.logs import log_fields
from vidbox.models import Rendition, Upload, User, Video, VideoStatus
from vidbox.services import Services
from vidbox.timefmt import iso_z
from vidbox.uploads import UploadError, clean_filename

log = logging.getLogger("vidbox.videos")

MAX_TITLE = 200
PROCESS_VIDEO = "process_video"


def video_prefix(video: Video) -> str:
    return f"videos/{video.owner_id}/{video.id}/"


def original_key(video: Video) -> str:
    return f"{video_prefix(video)}original.{video.container or 'bin'}"


def thumbnail_key(video: Video) -> str:
    return f"{video_prefix(video)}thumbnail.jpg"


def hls_key(video: Video, path: str) -> str:
    return f"{video_prefix(video)}hls/{path}"


def default_title(filename: str) -> str:
    stem = filename.rpartition(".")[0] or filename
    return " ".join(stem.replace("_", " ").split())[:MAX_TITLE] or "Untitled video"


def check_title(title: str) -> str:
    title = " ".join(title.split())
    if not title:
        raise ValidationFailed.field("title", "The title cannot be empty.")
    if len(title) > MAX_TITLE:
        raise ValidationFailed.field("title", f"Use at most {MAX_TITLE} characters.")
    return title


def video_json(video: Video, renditions: list[Rendition]) -> dict[str, Any]:
    base = f"/api/videos/{video.id}"
    ready = video.status == VideoStatus.READY
    return {
        "id": video.id,
        "title": video.title,
        "filename": video.filename,
        "size_bytes": video.size_bytes,
        "content_type": video.content_type,
        "status": video.status,
        "progress": video.progress,
        "error": video.error,
        # Optional additions to the DESIGN.md shape: what a READY video's
        # renditions lack. warnings: damage found while encoding; left_out: tracks only the
        # original download has.
        "warnings": list(video.warnings or []),
        "left_out": video.left_out,
        "duration_seconds": video.duration_seconds,
        "width": video.width,
        "height": video.height,
        "created_at": iso_z(video.created_at),
        "ready_at": iso_z(video.ready_at),
        "thumbnail_url": f"{base}/thumbnail.jpg" if video.thumbnail_key else None,
        "hls_url": f"{base}/hls/master.m3u8" if ready and renditions else None,
        "download_url": f"{base}/download" if video.original_key else None,
        "renditions": [
            {"name": r.name, "width": r.width, "height": r.height, "bitrate": r.bandwidth}
            for r in sorted(renditions, key=lambda r: r.height)
        ],
    }


async def renditions_of(session: AsyncSession, video_ids: list[str]) -> dict[str, list[Rendition]]:
    found: dict[str, list[Rendition]] = {vid: [] for vid in video_ids}
    if video_ids:
        rows = await session.exec(select(Rendition).where(col(Rendition.video_id).in_(video_ids)))
        for r in rows:
            found[r.video_id].append(r)
    return found


async def get_owned(session: AsyncSession, user: User, video_id: str) -> Video:
    """The user's video, or 404 — also for other people's videos, whose existence stays
    secret. Every route that touches a video goes through here."""
    video = await session.get(Video, video_id) if len(video_id) <= 32 else None
    if video is None or video.owner_id != user.id:
        raise NotFound("No such video.")
    return video


async def owned_for_media(services: Services, user: User, video_id: str) -> Video:
    """``get_owned`` for media requests, from a cache that lives a couple of seconds: players
    ask for a segment every few seconds, each one an ownership check otherwise."""

    async def load() -> Video | None:
        async with services.db.read() as session:
            return await session.get(Video, video_id)

    video: Video | None = None
    if len(video_id) <= 32:
        video = await services.db.video_cache.get_or_load(video_id, load)
    if video is None or video.owner_id != user.id:
        raise NotFound("No such video.")
    return video


async def list_videos(
    services: Services, user: User, *, page: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    async with services.db.read() as session:
        total = (
            await session.exec(
                select(func.count()).select_from(Video).where(Video.owner_id == user.id)
            )
        ).one()
        rows = list(
            (
                await session.exec(
                    select(Video)
                    .where(Video.owner_id == user.id)
                    .order_by(col(Video.created_at).desc(), col(Video.id).desc())
                    .offset((page - 1) * limit)
                    .limit(limit)
                )
            ).all()
        )
        renditions = await renditions_of(session, [v.id for v in rows])
    return [video_json(v, renditions[v.id]) for v in rows], total


async def videos_changed(
    db: Database,
    owner_id: str,
    *,
    video_ids: list[str] | None,
    since: datetime,
    watching: set[str],
) -> list[tuple[Video, dict[str, Any]]]:
    """For a live page (web/events.py): ``video_ids`` (a video's own page), or else the
    owner's videos still being worked on, changed since ``since``, or in ``watching``; each
    with its JSON."""
    async with db.read() as session:
        query = select(Video).where(Video.owner_id == owner_id)
        if video_ids is not None:
            query = query.where(col(Video.id).in_(video_ids))
        else:
            query = query.where(
                or_(
                    col(Video.status).in_([VideoStatus.UPLOADING, VideoStatus.PROCESSING]),
                    and_(col(Video.status) == VideoStatus.READY, col(Video.progress) < 100),
                    col(Video.updated_at) >= since,
                    col(Video.id).in_(watching),
                )
            )
        rows = list((await session.exec(query)).all())
        renditions = await renditions_of(session, [v.id for v in rows])
    return [(video, video_json(video, renditions[video.id])) for video in rows]


async def video_details(services: Services, user: User, video_id: str) -> dict[str, Any]:
    async with services.db.read() as session:
        video = await get_owned(session, user, video_id)
        renditions = await renditions_of(session, [video.id])
    return video_json(video, renditions[video.id])


async def rename(services: Services, user: User, video_id: str, title: str) -> dict[str, Any]:
    title = check_title(title)
    async with services.db.session() as session:
        video = await get_owned(session, user, video_id)
        video.title = title
        session.add(video)
        renditions = await renditions_of(session, [video.id])
    return video_json(video, renditions[video.id])


async def used_bytes(session: AsyncSession, user: User) -> int:
    total = await session.exec(
        select(func.coalesce(func.sum(Video.size_bytes), 0)).where(Video.owner_id == user.id)
    )
    return int(total.one())


async def check_quota(session: AsyncSession, services: Services, user: User, size: int) -> None:
    quota = services.settings.uploads.quota_bytes
    if quota and await used_bytes(session, user) + size > quota:
        raise PayloadTooLarge(
            f"This upload would go over your storage quota of {_human_bytes(quota)}. "
            "Delete some videos or ask an admin for more space."
        )


def check_size(services: Services, size: int) -> None:
    limit = services.settings.uploads.max_bytes
    if size > limit:
        raise PayloadTooLarge(f"The file is larger than the {_human_bytes(limit)} limit.")


def _human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} bytes"


def new_video(user: User, *, filename: str, title: str, size: int, content_type: str) -> Video:
    filename = clean_filename(filename or "video")
    return Video(
        owner_id=user.id,
        filename=filename,
        title=check_title(title) if title.strip() else default_title(filename),
        size_bytes=size,
        content_type=content_type[:100],
        status=VideoStatus.UPLOADING,
    )


async def start_processing(session: AsyncSession, video: Video, spool_id: str | None) -> None:
    """The last byte is in: hand the video to the queue (same transaction as the status).
    ``spool_id`` names the spool file the job reads; None when the original is in the media
    store already (the job then downloads it, on whichever host it runs)."""
    video.status, video.progress = VideoStatus.PROCESSING, 0
    session.add(video)
    payload = {"video_id": video.id} | ({"spool_id": spool_id} if spool_id else {})
    await enqueue(
        session,
        PROCESS_VIDEO,
        payload,
        lane=MEDIA_LANE,
        idempotency_key=f"{PROCESS_VIDEO}:{video.id}",
        video_id=video.id,
    )


async def delete_video(services: Services, user: User, video_id: str) -> None:
    """Remove a video with everything it has: jobs (a running FFmpeg is stopped), stored
    files, spool bytes, renditions, links (the last three by ON DELETE CASCADE)."""
    async with services.db.session() as session:
        video = await get_owned(session, user, video_id)
        uploads = (await session.exec(select(Upload).where(Upload.video_id == video.id))).all()
        spool_ids = [u.id for u in uploads]
        prefix = video_prefix(video)
        job_ids = await cancel_video_jobs(session, video.id)
        await session.delete(video)
    # Before the files go: a running FFmpeg must not write more of them.
    await stop_video_jobs(services.db, video_id, job_ids)
    for spool_id in spool_ids:
        # A request still writing this upload holds its lock; the cleanup job gets it later.
        with contextlib.suppress(UploadError):
            await asyncio.to_thread(services.spool.delete, spool_id)
    removed = await services.storage.delete_prefix(prefix)
    log.info("video deleted", extra=log_fields(video_id=video_id, objects=removed))
