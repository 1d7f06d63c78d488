"""The ``process_video`` job: from an uploaded file to a playable HLS ladder in storage.

Order matters to the person waiting: the poster first, then (for H.264 sources) the source
itself remuxed into HLS so the video plays within a second or two, then the original for
download, and only then the long encode of the smaller renditions. The master playlist is
never stored: ``master_playlist_for`` builds it from the rendition rows when it is served, so a
rendition appears in players as soon as its row exists.

Each attempt works in its own folder under ``<data dir>/tmp`` and overwrites the same storage
keys, so a retry after a crash never mixes outputs of two attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from vidbox.config.schema import ProcessingSettings
from vidbox.jobs import JobContext, JobHandler, PermanentJobError, WaitingForDisk
from vidbox.jobs.failures import (
    MAX_ERROR_CHARS,
    gave_up_sentence,
    is_disk_full,
    on_gave_up,
    record_failure,
    show_waiting_for_disk,
)
from vidbox.jobs.leftovers import ProcessRecorder, work_dir_name
from vidbox.jobs.outputs import (
    ProgressWriter,
    VideoGone,
    download,
    drop_other_renditions,
    fresh_dir,
    mark_ready,
    publish_rendition,
    remove_tree,
    rendition_files,
    store_original,
    update_video,
)
from vidbox.logs import log_fields
from vidbox.media import (
    EncodedLadder,
    MediaError,
    Probe,
    RenditionInfo,
    RenditionPlan,
    build_master_playlist,
    encode_ladder,
    left_out,
    make_thumbnail,
    parse_media_playlist,
    plan_ladder,
    probe,
    remux_top_rung,
    segment_start_times,
    well_segmented,
)
from vidbox.media.errors import DISK_FULL
from vidbox.media.ladder import MEDIA_PLAYLIST
from vidbox.media.probe import MediaLimits
from vidbox.media.runner import ProcessLimits, ffmpeg_limits, memory_limit
from vidbox.models import Rendition, Video, VideoStatus
from vidbox.storage import ObjectNotFound
from vidbox.uploads import UploadLocked
from vidbox.videos import PROCESS_VIDEO, hls_key, original_key, thumbnail_key, video_prefix

log = logging.getLogger("vidbox.jobs")

SOURCE_MISSING = "The uploaded file is missing on the server."
# Uploads are not synced as they arrive (see vidbox.uploads.spool): a power cut soon after an
# upload can leave its file shorter than what was received.
SOURCE_CUT_SHORT = (
    "The upload did not fully reach the disk before the server stopped; upload it again."
)
# Job progress (percent) at the end of each step; the ladder fills the gap from FFmpeg's own.
PROBED, THUMBNAIL_STORED, TOP_RUNG_READY, LADDER_ENCODED = 2, 5, 10, 95


async def process_video(ctx: JobContext) -> None:
    """Probe, thumbnail, early READY, original, ladder. See the module docstring."""
    services = ctx.services
    video_id = str(ctx.payload["video_id"])
    async with services.db.read() as session:
        video = await session.get(Video, video_id)
    if video is None:
        log.info("video gone before processing", extra=log_fields(video_id=video_id))
        return
    name = work_dir_name(video_id, ctx.job_id, ctx.attempt)
    work_dir = services.settings.data_dir / "tmp" / name
    pipeline = Pipeline(ctx, video, work_dir)
    recorder = ProcessRecorder(services.db, ctx.job_id)
    limits = ProcessLimits(
        memory_bytes=memory_limit(services.settings.processing.ffmpeg_memory_bytes),
        on_spawn=recorder.spawned,
        on_exit=recorder.exited,
    )
    try:
        with ffmpeg_limits(limits):
            await pipeline.run()
    except VideoGone:
        # Deleted mid-way: whatever was stored after the delete swept the prefix goes too.
        removed = await services.storage.delete_prefix(video_prefix(video))
        log.info(
            "video deleted while processing", extra=log_fields(video_id=video_id, objects=removed)
        )
    except Exception as exc:
        if is_disk_full(exc):
            # Not the video's fault, and no attempt is counted: wait until space is freed.
            with contextlib.suppress(VideoGone):
                await show_waiting_for_disk(services.db, video_id)
            raise WaitingForDisk(DISK_FULL) from exc
        if isinstance(exc, MediaError) and exc.permanent:
            await record_failure(services.db, video_id, exc.reason)
            raise PermanentJobError(exc.reason) from exc
        raise
    finally:
        await remove_tree(work_dir)


HANDLERS: dict[str, JobHandler] = {PROCESS_VIDEO: JobHandler(process_video, on_gave_up=on_gave_up)}
__all__ = ["MAX_ERROR_CHARS", "gave_up_sentence", "on_gave_up", "process_video", "record_failure"]


def master_playlist_for(renditions: list[Rendition]) -> str:
    """The HLS master playlist of a video's rendition rows; URIs are ``<name>/index.m3u8``."""
    infos = [
        RenditionInfo(
            name=row.name,
            width=row.width,
            height=row.height,
            bandwidth=row.bandwidth,
            average_bandwidth=row.average_bandwidth,
            codecs=row.codecs,
            frame_rate=row.frame_rate,
            duration_seconds=0.0,  # not part of a master playlist
        )
        for row in renditions
    ]
    return build_master_playlist(infos)


class Pipeline:
    """One attempt at processing one video."""

    def __init__(self, ctx: JobContext, video: Video, work_dir: Path) -> None:
        self.ctx = ctx
        self.services = ctx.services
        self.db = ctx.services.db
        self.storage = ctx.services.storage
        self.video = video
        self.work_dir = work_dir
        self.hls_dir = work_dir / "hls"
        self.options = ctx.services.settings.processing
        self.progress = ProgressWriter(self.db, video.id)
        self.started = time.monotonic()
        spool_id = ctx.payload.get("spool_id")
        self.spool_id = str(spool_id) if spool_id else None
        # Where the bytes came from decides what must still be stored and removed.
        self.source_is_stored = False
        self.spool_in_use = False
        self.playable_early = False

    async def run(self) -> None:
        await asyncio.to_thread(fresh_dir, self.work_dir)
        if self.video.status == VideoStatus.FAILED:  # an admin retried a failed job
            await update_video(self.db, self.video.id, status=VideoStatus.PROCESSING, error=None)
        with self.step("source"):
            source = await self.acquire_source()
        # The time limit counts from here (a retry may first download gigabytes), and grows
        # with the video's length once the probe knows it.
        self.ctx.set_time_limit(self.options.timeout_minutes * 60.0)
        with self.step("probe"):
            info = await probe(source, self.limits())
            self.ctx.set_time_limit(time_limit(self.options, info.duration_seconds))
            await self.save_probe(info)
        with self.step("thumbnail"):
            await self.store_thumbnail(source, info)
        with self.step("copy"):
            plans, keyframe_times = await self.publish_copied_rung(source, info)
        with self.step("original"):
            await self.store_original(source)
        with self.step("ladder"):
            encoded = [plan for plan in plans if not plan.copy]
            ladder = await self.encode(source, info, encoded, keyframe_times) if encoded else None
        with self.step("store"):
            await self.publish_encoded(ladder.dirs if ladder else [], info)
            await self.finish({plan.name for plan in plans})
        with self.step("ready"):
            if ladder and ladder.warnings:
                await update_video(self.db, self.video.id, warnings=ladder.warnings)
            await mark_ready(self.db, self.video.id, progress=100)
        if not self.playable_early:
            self.log_playable(max(plans, key=lambda plan: plan.height * plan.width).name)

    def limits(self) -> MediaLimits:
        return MediaLimits(
            max_pixels=self.options.max_pixels,
            max_duration_seconds=self.options.max_duration_hours * 3600.0,
            max_fps=float(self.options.max_fps),
        )

    def elapsed_ms(self) -> int:
        return round((time.monotonic() - self.started) * 1000)

    def log_playable(self, rendition: str) -> None:
        fields = log_fields(video_id=self.video.id, rendition=rendition, at_ms=self.elapsed_ms())
        log.info("video playable", extra=fields)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        begun = time.monotonic()
        yield
        ended = time.monotonic()
        log.info(
            "processing step done",
            extra=log_fields(
                video_id=self.video.id,
                job_id=self.ctx.job_id,
                attempt=self.ctx.attempt,
                step=name,
                ms=round((ended - begun) * 1000),
                at_ms=round((ended - self.started) * 1000),
            ),
        )

    # -- steps -------------------------------------------------------------------------------

    async def acquire_source(self) -> Path:
        """The uploaded bytes: the spool file, or (a retry after it was removed) the stored
        original, downloaded into the work folder."""
        target = self.work_dir / f"source.{self.video.container or 'bin'}"
        spool_path = self.spool_path()
        if spool_path is not None and await asyncio.to_thread(spool_path.is_file):
            if await asyncio.to_thread(_file_size, spool_path) != self.video.size_bytes:
                raise MediaError(SOURCE_CUT_SHORT, permanent=True)
            try:
                # A second name for the same bytes: the spool entry can go as soon as the
                # original is stored, while FFmpeg keeps reading this one.
                await asyncio.to_thread(os.link, spool_path, target)
            except OSError:
                self.spool_in_use = True  # another file system: remove the spool at the end
                return spool_path
            return target
        key = self.video.original_key or original_key(self.video)
        try:
            await download(self.storage, key, target)
        except ObjectNotFound:
            raise MediaError(SOURCE_MISSING, permanent=True) from None
        self.source_is_stored = True
        return target

    def spool_path(self) -> Path | None:
        if self.spool_id is None:
            return None
        try:
            return self.services.spool.data_path(self.spool_id)
        except ValueError:
            return None

    async def save_probe(self, info: Probe) -> None:
        await update_video(
            self.db,
            self.video.id,
            duration_seconds=info.duration_seconds,
            width=info.width,
            height=info.height,
            fps=round(info.fps, 3) if info.fps else None,
            video_codec=info.video_codec[:32],
            audio_codec=info.audio_codec[:32] if info.audio_codec else None,
            left_out=left_out(info),
            warnings=None,  # a retry finds the damage again
            progress=PROBED,
        )
        self.progress.written(PROBED)

    async def store_thumbnail(self, source: Path, info: Probe) -> None:
        path = self.work_dir / "thumbnail.jpg"
        await make_thumbnail(source, path, info)
        key = thumbnail_key(self.video)
        await self.storage.put_file(key, path, "image/jpeg")
        await update_video(self.db, self.video.id, thumbnail_key=key, progress=THUMBNAIL_STORED)
        self.progress.written(THUMBNAIL_STORED)

    async def publish_copied_rung(
        self, source: Path, info: Probe
    ) -> tuple[list[RenditionPlan], list[float] | None]:
        """For a browser-playable source: remux it as the top rendition and make the video
        READY. Returns the plans still to encode and where their keyframes must go."""
        rungs, segment_seconds = self.options.renditions, self.options.segment_seconds
        # plan_ladder decides whether the source may stand in for a rung at all.
        plans = plan_ladder(info, rungs, copy_top=True)
        top = next((plan for plan in plans if plan.copy), None)
        if top is None:
            return plans, None
        rendition_dir = await remux_top_rung(
            source,
            self.hls_dir,
            top,
            segment_seconds,
            duration=info.duration_seconds,
            on_progress=self.progress.scaled(THUMBNAIL_STORED, TOP_RUNG_READY),
        )
        text = await asyncio.to_thread((rendition_dir / MEDIA_PLAYLIST).read_text)
        playlist = parse_media_playlist(text)
        if not well_segmented(playlist, segment_seconds):
            log.info(
                "source keyframes too far apart to copy; encoding every rendition",
                extra=log_fields(video_id=self.video.id),
            )
            await asyncio.to_thread(shutil.rmtree, rendition_dir, True)
            return plan_ladder(info, rungs, copy_top=False), None
        await self.publish(rendition_dir, info, copied=True)
        await mark_ready(self.db, self.video.id, progress=TOP_RUNG_READY)
        self.progress.written(TOP_RUNG_READY)
        self.playable_early = True
        self.log_playable(top.name)
        return plans, segment_start_times(playlist)

    async def store_original(self, source: Path) -> None:
        """Keep the upload for download, then let go of the spool copy."""
        key = original_key(self.video)
        if not self.source_is_stored:
            # A retry need not upload gigabytes again when the same object is already there.
            maybe = self.video.original_key == key
            await store_original(self.storage, self.video, source, maybe_stored=maybe)
        progress = max(self.progress.percent, TOP_RUNG_READY)
        await update_video(self.db, self.video.id, original_key=key, progress=progress)
        self.progress.written(progress)
        if not self.spool_in_use:
            await self.release_spool()

    async def release_spool(self) -> None:
        if self.spool_id is None:
            return
        # A request still holding the upload's lock: the cleanup job removes it later.
        with contextlib.suppress(UploadLocked):
            await asyncio.to_thread(self.services.spool.delete, self.spool_id)

    async def encode(
        self,
        source: Path,
        info: Probe,
        plans: list[RenditionPlan],
        keyframe_times: list[float] | None,
    ) -> EncodedLadder:
        return await encode_ladder(
            source,
            self.hls_dir,
            plans,
            info,
            self.options.segment_seconds,
            self.options.preset,
            on_progress=self.progress.scaled(TOP_RUNG_READY, LADDER_ENCODED),
            keyframe_times=keyframe_times,
        )

    async def publish_encoded(self, dirs: list[Path], info: Probe) -> None:
        counts = [len(await asyncio.to_thread(rendition_files, d)) for d in dirs]
        total, done = sum(counts), 0

        async def stored() -> None:
            nonlocal done
            done += 1
            share = done / total if total else 1.0
            await self.progress.report(LADDER_ENCODED + (100 - LADDER_ENCODED) * share)

        for rendition_dir in dirs:
            await self.publish(rendition_dir, info, copied=False, on_stored=stored)

    async def publish(
        self,
        rendition_dir: Path,
        info: Probe,
        *,
        copied: bool,
        on_stored: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        frame_rate = round(info.fps, 3) or None
        await publish_rendition(
            self.db, self.storage, self.video, rendition_dir,
            frame_rate=frame_rate, copied=copied, on_stored=on_stored,
        )  # fmt: skip

    async def finish(self, rendition_names: set[str]) -> None:
        """Forget renditions of an earlier run with another ladder; drop the spool if FFmpeg
        was reading it directly."""
        for name in await drop_other_renditions(self.db, self.video.id, rendition_names):
            await self.storage.delete_prefix(hls_key(self.video, f"{name}/"))
        if self.spool_in_use:
            await self.release_spool()


def time_limit(options: ProcessingSettings, duration: float | None) -> float:
    """Seconds an attempt may take once the video's duration is known: max(timeout_minutes,
    timeout_factor x duration). Scaled, so a 10 s clip that hangs is stopped in minutes while
    a feature film gets the hours it needs."""
    floor = options.timeout_minutes * 60.0
    return max(floor, options.timeout_factor * (duration or 0.0))


def _file_size(path: Path) -> int:
    return path.stat().st_size
