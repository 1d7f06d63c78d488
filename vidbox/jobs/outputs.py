"""What the process_video job writes: Video row updates, progress, rendition files and rows,
and the small file chores around them (work folders, downloads).

Every database write is its own short transaction, so a long transcode never holds SQLite's
write lock, and pages polling the row see each step as soon as it happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
import shutil
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from vidbox.db import Database
from vidbox.media import RenditionInfo, measure_rendition
from vidbox.models import Rendition, Video, VideoStatus, utcnow
from vidbox.notify import VIDEOS, announce
from vidbox.storage import ObjectNotFound, Storage
from vidbox.videos import hls_key, original_key

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
CONTENT_TYPES = {".m3u8": PLAYLIST_TYPE, ".mp4": "video/mp4", ".m4s": "video/mp4"}
# Enough parallel puts to hide S3 round trips without flooding a small box.
STORE_CONCURRENCY = 4
# Pages poll the row; more writes than this would only compete with uploads for the lock.
PROGRESS_MIN_INTERVAL = 0.5


class VideoGone(Exception):
    """The video row was deleted while the job ran."""


_PROGRESS_ONLY = frozenset({"progress"})


async def update_video(db: Database, video_id: str, **fields: Any) -> Video:
    """Set ``fields`` on the video in one transaction; raises VideoGone when it is deleted."""
    async with db.session() as session:
        video = await session.get(Video, video_id)
        if video is None:
            raise VideoGone(video_id)
        for name, value in fields.items():
            setattr(video, name, value)
        session.add(video)
        if fields.keys() - _PROGRESS_ONLY:
            # Media requests read the row from a short cache (videos.owned_for_media): what
            # they check changed, so every process drops it. Progress ticks do not.
            announce(session, VIDEOS, video_id)
    return video


async def mark_ready(db: Database, video_id: str, *, progress: int) -> Video:
    """Playable from now on. A retry keeps the moment the video first became playable."""
    async with db.session() as session:
        video = await session.get(Video, video_id)
        if video is None:
            raise VideoGone(video_id)
        video.status, video.error, video.progress = VideoStatus.READY, None, progress
        video.ready_at = video.ready_at or utcnow()
        session.add(video)
        announce(session, VIDEOS, video_id)
    return video


class ProgressWriter:
    """Writes the job's percent to the video row: only forward, only when the integer percent
    changes, and at most once per ``min_interval`` seconds. Step updates that write the row
    anyway report their percent through ``written`` so they count against the limit."""

    def __init__(
        self,
        db: Database,
        video_id: str,
        *,
        min_interval: float = PROGRESS_MIN_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.video_id = video_id
        self.min_interval = min_interval
        self.clock = clock
        self.percent = 0
        self._last_write: float | None = None

    def written(self, percent: int) -> None:
        self.percent = max(self.percent, percent)
        self._last_write = self.clock()

    async def report(self, percent: float) -> None:
        value = max(0, min(100, int(percent)))
        if value <= self.percent:
            return
        now = self.clock()
        if self._last_write is not None and now - self._last_write < self.min_interval:
            return
        # Claimed before the write: concurrent reporters (parallel uploads) then see it and
        # never write an older percent after a newer one.
        self.written(value)
        await update_video(self.db, self.video_id, progress=value)

    def scaled(self, start: float, end: float) -> Callable[[float], Any]:
        """A progress callback mapping a step's own 0-100 onto ``start..end`` of the job."""

        async def callback(step_percent: float) -> None:
            await self.report(start + (end - start) * step_percent / 100)

        return callback


def rendition_files(directory: Path) -> list[Path]:
    """The files of an HLS rendition folder, media first and the playlist last: a reader that
    finds the playlist then finds every segment it names."""
    files = [p for p in directory.iterdir() if p.is_file() and p.suffix in CONTENT_TYPES]
    return sorted(files, key=lambda p: (p.suffix == ".m3u8", p.name))


async def store_files(
    storage: Storage,
    uploads: Sequence[tuple[str, Path]],
    *,
    on_stored: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Put (key, path) pairs, a few at a time; playlists only once every other file is in."""
    gate = asyncio.Semaphore(STORE_CONCURRENCY)

    async def put(key: str, path: Path) -> None:
        async with gate:
            await storage.put_file(key, path, CONTENT_TYPES.get(path.suffix))
        if on_stored is not None:
            await on_stored()

    media = [(key, path) for key, path in uploads if path.suffix != ".m3u8"]
    playlists = [(key, path) for key, path in uploads if path.suffix == ".m3u8"]
    for batch in (media, playlists):
        async with asyncio.TaskGroup() as group:
            for key, path in batch:
                group.create_task(put(key, path))


async def publish_rendition(
    db: Database,
    storage: Storage,
    video: Video,
    rendition_dir: Path,
    *,
    frame_rate: float | None,
    copied: bool,
    on_stored: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Store one rendition folder under the video's hls/ keys, then add its row: the row is
    what makes it appear in the master playlist."""
    measured = await asyncio.to_thread(measure_rendition, rendition_dir, frame_rate=frame_rate)
    files = await asyncio.to_thread(rendition_files, rendition_dir)
    name = rendition_dir.name
    uploads = [(hls_key(video, f"{name}/{path.name}"), path) for path in files]
    await store_files(storage, uploads, on_stored=on_stored)
    await remove_leftover_objects(storage, hls_key(video, f"{name}/"), {key for key, _ in uploads})
    await save_rendition(db, video.id, measured, copied=copied)


async def is_stored(storage: Storage, key: str, path: Path) -> bool:
    """Whether ``key`` holds an object of ``path``'s size."""
    try:
        stored = await storage.stat(key)
    except ObjectNotFound:
        return False
    return stored.size == (await asyncio.to_thread(path.stat)).st_size


async def remove_leftover_objects(storage: Storage, prefix: str, keep: set[str]) -> None:
    """Delete objects under ``prefix`` that are not in ``keep``: segments of an earlier attempt
    with another segment length would otherwise linger."""
    for info in await storage.list_prefix(prefix):
        if info.key not in keep:
            await storage.delete(info.key)


async def save_rendition(db: Database, video_id: str, info: RenditionInfo, *, copied: bool) -> None:
    """Insert the rendition row, or replace the one a previous attempt made."""
    async with db.session() as session:
        if await session.get(Video, video_id) is None:
            raise VideoGone(video_id)
        found = await session.exec(
            select(Rendition).where(Rendition.video_id == video_id, Rendition.name == info.name)
        )
        row = found.first() or Rendition(
            video_id=video_id, name=info.name, width=0, height=0, bandwidth=0, average_bandwidth=0
        )
        row.width, row.height = info.width, info.height
        row.bandwidth, row.average_bandwidth = info.bandwidth, info.average_bandwidth
        row.codecs, row.frame_rate, row.copied = info.codecs, info.frame_rate, copied
        session.add(row)


async def drop_other_renditions(db: Database, video_id: str, keep: set[str]) -> list[str]:
    """Delete rendition rows whose name is not in ``keep`` (an earlier run with another ladder);
    returns their names so their files can go too."""
    async with db.session() as session:
        rows = await session.exec(
            select(Rendition).where(
                Rendition.video_id == video_id, col(Rendition.name).not_in(keep)
            )
        )
        names = []
        for row in rows.all():
            names.append(row.name)
            await session.delete(row)
    return names


async def store_original(
    storage: Storage, video: Video, source: Path, *, maybe_stored: bool = True
) -> str:
    """Put an upload in the media store as ``video``'s original (its download, and the
    source a worker on any host can fetch); returns the key. With ``maybe_stored`` an object
    of the source's size already there is kept: a retry, or a completion finished twice,
    need not send gigabytes again. Used by the upload path (before the job is queued, when
    the worker may be elsewhere) and by the job (when the upload path did not)."""
    key = original_key(video)
    if not (maybe_stored and await is_stored(storage, key, source)):
        await storage.put_file(key, source, original_content_type(video))
    return key


def original_content_type(video: Video) -> str:
    if video.content_type and video.content_type != "application/octet-stream":
        return video.content_type
    guessed, _ = mimetypes.guess_type(f"video.{video.container or 'bin'}")
    return guessed or "application/octet-stream"


async def remove_tree(path: Path) -> None:
    """Remove a work folder, also when the job is being cancelled while it does."""
    try:
        await asyncio.to_thread(shutil.rmtree, path, True)
    except asyncio.CancelledError:
        shutil.rmtree(path, ignore_errors=True)
        raise


async def download(storage: Storage, key: str, target: Path) -> None:
    """Copy a stored object to a local file, chunk by chunk."""
    handle = await asyncio.to_thread(target.open, "wb")
    try:
        async with contextlib.aclosing(storage.open_range(key)) as chunks:
            async for chunk in chunks:
                await asyncio.to_thread(handle.write, chunk)
    finally:
        await asyncio.to_thread(handle.close)


def fresh_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
