"""The process_video job on real generated clips, the real FFmpeg, SQLite and storage.

The handler is driven directly with a JobContext, as the runner would call it. Where a test
needs to see inside the run (status while the ladder encodes, cancelling mid-ladder), it wraps
the real ``encode_ladder`` and observes through the database row; nothing is replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select

import vidbox.jobs.process_video as pipeline_module
from tests.postgres import only_local_storage
from vidbox.config import Settings
from vidbox.jobs import JobContext, PermanentJobError
from vidbox.jobs.outputs import ProgressWriter
from vidbox.jobs.process_video import (
    HANDLERS,
    SOURCE_CUT_SHORT,
    master_playlist_for,
    on_gave_up,
    process_video,
)
from vidbox.media import ffmpeg_exe
from vidbox.models import Rendition, User, Video, VideoStatus, new_id
from vidbox.services import Services, open_services
from vidbox.storage import StorageError
from vidbox.videos import hls_key, original_key, thumbnail_key, video_prefix

SMALL_LADDER = {
    "VIDBOX_PROCESSING__RENDITIONS": "144p,240p",
    "VIDBOX_PROCESSING__SEGMENT_SECONDS": "1",
    "VIDBOX_PROCESSING__PRESET": "ultrafast",
}
X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
AAC = ["-c:a", "aac", "-shortest"]


# -- clips -------------------------------------------------------------------------------


def ffmpeg_sync(*args: str) -> subprocess.CompletedProcess[str]:
    """FFmpeg for setting up and checking, outside the code under test."""
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", *args]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)


def lavfi(size: str, seconds: int, *, audio: bool = True, rate: int = 25) -> list[str]:
    args = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
    return args


CLIP_RECIPES: dict[str, list[str]] = {
    # 3 s, a keyframe every second, within 240p's bitrate: copied at 240p, 144p encoded.
    "landscape.mp4": [*lavfi("320x240", 3), *X264, "-g", "25", "-b:v", "400k", *AAC],
    "silent.mp4": [*lavfi("320x240", 2, audio=False), *X264, "-g", "25", "-b:v", "400k"],
    # Within 480p's copy budget (1.5x 1.4 Mbit/s) for the default ladder.
    "fwvga.mp4": [*lavfi("854x480", 2), *X264, "-g", "25", "-b:v", "1M", *AAC],
    # Pixels 4:3 wider than tall: shown as 427x240, so it is encoded with square pixels.
    "anamorphic.mp4": [*lavfi("320x240", 2), "-vf", "setsar=4/3", *X264, "-g", "25", *AAC],
    "vp9.webm": [
        *lavfi("320x240", 2),
        *["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-c:a", "libopus"],
    ],
    # One keyframe in 12 s: copying it would give one 12 s segment.
    "sparse.mp4": [*lavfi("320x240", 12, audio=False), *X264, "-g", "1000"],
}


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pipeline-clips")
    made: dict[str, Path] = {}
    for name, recipe in CLIP_RECIPES.items():
        made[name] = folder / name
        result = ffmpeg_sync(*recipe, str(made[name]))
        assert result.returncode == 0, result.stderr
    # A phone video: the landscape stream with a display matrix, shown as 240x320.
    made["portrait.mp4"] = folder / "portrait.mp4"
    result = ffmpeg_sync(
        "-display_rotation", "-90", "-i", str(made["landscape.mp4"]), "-c", "copy",
        str(made["portrait.mp4"]),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = made["landscape.mp4"].read_bytes()
    made["truncated.mp4"] = folder / "truncated.mp4"  # the index at the end never arrived
    made["truncated.mp4"].write_bytes(data[: len(data) // 2])
    made["garbage.mp4"] = folder / "garbage.mp4"
    made["garbage.mp4"].write_bytes(b"shopping list: milk, eggs\n" * 200)
    return made


# -- a box with one uploaded video ---------------------------------------------------------


@dataclass
class Upload:
    services: Services
    video_id: str
    spool_id: str
    ctx: JobContext
    seen: list[dict[str, Any]] = field(default_factory=list)

    def context(self, attempt: int) -> JobContext:
        return JobContext(1, "process_video", self.ctx.payload, attempt, self.services)

    async def video(self) -> Video:
        async with self.services.db.read() as session:
            video = await session.get(Video, self.video_id)
        assert video is not None
        return video

    async def renditions(self) -> list[Rendition]:
        async with self.services.db.read() as session:
            rows = await session.exec(select(Rendition).where(Rendition.video_id == self.video_id))
            return sorted(rows.all(), key=lambda r: r.height)

    async def stored(self) -> dict[str, bytes]:
        video = await self.video()
        objects = await self.services.storage.list_prefix(video_prefix(video))
        return {info.key: await read_object(self.services, info.key) for info in objects}


async def read_object(services: Services, key: str) -> bytes:
    return b"".join([chunk async for chunk in services.storage.open_range(key)])


async def upload(services: Services, clip: Path, content_type: str = "video/mp4") -> Upload:
    """What ingest leaves behind: a PROCESSING video and its bytes in the spool."""
    size = (await asyncio.to_thread(clip.stat)).st_size
    async with services.db.session() as session:
        user = User(email=f"{new_id()}@example.org", password_hash="!")
        session.add(user)
        await session.flush()
        video = Video(
            owner_id=user.id,
            filename=clip.name,
            title=clip.stem,
            size_bytes=size,
            content_type=content_type,
            container=clip.suffix.lstrip("."),
            status=VideoStatus.PROCESSING,
        )
        session.add(video)
    spool_id = new_id()
    shutil.copyfile(clip, services.spool.data_path(spool_id))
    payload = {"video_id": video.id, "spool_id": spool_id}
    ctx = JobContext(1, "process_video", payload, 1, services)
    return Upload(services, video.id, spool_id, ctx)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


def work_dirs(settings: Settings) -> list[Path]:
    tmp = settings.data_dir / "tmp"
    return list(tmp.iterdir()) if tmp.exists() else []


def observe_ladder(
    monkeypatch: pytest.MonkeyPatch, on_progress: Callable[[float], Awaitable[None]]
) -> None:
    """Run the real encode_ladder, calling ``on_progress`` at its start (-1) and with each of
    FFmpeg's progress reports, before the job's own callback."""
    real = pipeline_module.encode_ladder

    async def observed(*args: Any, on_progress: Any = None, **kwargs: Any) -> list[Path]:
        await hook(-1.0)

        async def both(percent: float) -> None:
            await hook(percent)
            if on_progress is not None:
                await on_progress(percent)

        return await real(*args, on_progress=both, **kwargs)

    hook = on_progress
    monkeypatch.setattr(pipeline_module, "encode_ladder", observed)


def jpeg_size(data: bytes) -> tuple[int, int]:
    assert data[:2] == b"\xff\xd8", "not a JPEG"
    at = 2
    while at < len(data):
        marker, length = data[at + 1], int.from_bytes(data[at + 2 : at + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            return int.from_bytes(data[at + 7 : at + 9], "big"), int.from_bytes(
                data[at + 5 : at + 7], "big"
            )
        at += 2 + length
    raise AssertionError("no start-of-frame marker")


def decoded_seconds(path: Path) -> float:
    result = ffmpeg_sync("-i", str(path), "-map", "0:v:0", "-f", "null", "-")
    assert result.returncode == 0, result.stderr
    hours, minutes, seconds = re.findall(r"time=(\d+):(\d\d):(\d\d\.\d+)", result.stderr)[-1]
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


async def export_hls(item: Upload, folder: Path) -> Path:
    """The stored HLS objects in their layout, plus the master playlist the route would serve."""
    video = await item.video()
    prefix = hls_key(video, "")
    for key, data in (await item.stored()).items():
        if key.startswith(prefix):
            target = folder / key.removeprefix(prefix)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    master = folder / "master.m3u8"
    master.write_text(master_playlist_for(await item.renditions()))
    return master


def ffmpeg_children() -> list[int]:
    """Live FFmpeg processes started by this test process."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == os.getpid() and "ffmpeg" in (entry / "cmdline").read_text():
                found.append(int(entry.name))
    return found


# -- the whole job -----------------------------------------------------------------------


def test_h264_upload_is_playable_early_and_fully_processed(
    make_settings: Callable[..., Settings],
    clips: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    settings = make_settings(SMALL_LADDER)
    caplog.set_level(logging.INFO, logger="vidbox.jobs")

    async def scenario() -> None:
        async with open_services(settings) as services:
            item = await upload(services, clips["landscape.mp4"])

            async def watch(percent: float) -> None:
                video = await item.video()
                item.seen.append({"percent": percent, "status": video.status, "at": video})

            observe_ladder(monkeypatch, watch)
            await process_video(item.ctx)

            video = await item.video()
            assert video.status == VideoStatus.READY
            assert video.progress == 100
            assert video.error is None
            assert video.duration_seconds == pytest.approx(3.0, abs=0.1)
            assert (video.width, video.height) == (320, 240)
            assert video.fps == pytest.approx(25.0)
            assert (video.video_codec, video.audio_codec) == ("h264", "aac")

            # Playable before the ladder began, and still while FFmpeg encoded it.
            assert item.seen[0]["percent"] == -1.0
            assert {seen["status"] for seen in item.seen} == {VideoStatus.READY}
            assert item.seen[0]["at"].thumbnail_key == thumbnail_key(video)
            assert item.seen[0]["at"].original_key == original_key(video)
            progress = [seen["at"].progress for seen in item.seen]
            assert progress == sorted(progress)
            assert all(10 <= value <= 95 for value in progress)

            rows = await item.renditions()
            assert [(r.name, r.width, r.height, r.copied) for r in rows] == [
                ("144p", 192, 144, False),
                ("240p", 320, 240, True),
            ]
            assert video.ready_at is not None
            assert video.ready_at <= max(r.created_at for r in rows)
            assert all(r.codecs.startswith("avc1.") and "mp4a.40.2" in r.codecs for r in rows)
            assert all(r.bandwidth >= r.average_bandwidth > 0 for r in rows)

            stored = await item.stored()
            assert jpeg_size(stored[thumbnail_key(video)]) == (1280, 720)
            assert stored[original_key(video)] == clips["landscape.mp4"].read_bytes()
            assert not any(key.endswith("master.m3u8") for key in stored)

            master = await export_hls(item, tmp_path / "hls")
            for row in rows:
                assert decoded_seconds(master.parent / row.name / "index.m3u8") == pytest.approx(
                    3.0, abs=0.15
                )
            assert decoded_seconds(master) == pytest.approx(3.0, abs=0.15)

            assert not services.spool.data_path(item.spool_id).exists()
            assert work_dirs(settings) == []

    run(scenario)
    steps = [r.fields["step"] for r in caplog.records if "step" in getattr(r, "fields", {})]
    assert [s for s in steps if s != "source"] == [
        "probe", "thumbnail", "copy", "original", "ladder", "store", "ready",
    ]  # fmt: skip


def test_retry_after_success_is_idempotent(
    make_settings: Callable[..., Settings], clips: dict[str, Path]
) -> None:
    settings = make_settings(SMALL_LADDER)

    async def scenario() -> None:
        async with open_services(settings) as services:
            item = await upload(services, clips["landscape.mp4"])
            await process_video(item.ctx)
            first_rows = await item.renditions()
            first_keys = set(await item.stored())
            first_ready = (await item.video()).ready_at

            # The spool is gone now: the retry works from the stored original.
            assert not services.spool.data_path(item.spool_id).exists()
            await process_video(item.context(attempt=2))
            rows = await item.renditions()
            assert [(r.id, r.name, r.copied) for r in rows] == [
                (r.id, r.name, r.copied) for r in first_rows
            ]
            assert set(await item.stored()) == first_keys
            video = await item.video()
            assert (video.status, video.progress, video.ready_at) == (
                VideoStatus.READY,
                100,
                first_ready,
            )
            assert work_dirs(settings) == []

    run(scenario)


@pytest.mark.parametrize(
    ("clip", "codecs", "audio", "ladder"),
    [
        pytest.param(
            "portrait.mp4", ("h264", "aac"), True,
            [("144p", 144, 192, False), ("240p", 240, 320, False)], id="portrait",
        ),
        pytest.param(
            "vp9.webm", ("vp9", "opus"), True,
            [("144p", 192, 144, False), ("240p", 320, 240, False)], id="vp9-webm",
        ),
        pytest.param(
            "silent.mp4", ("h264", None), False,
            [("144p", 192, 144, False), ("240p", 320, 240, True)], id="no-audio",
        ),
        pytest.param(
            "fwvga.mp4", ("h264", "aac"), True,
            # Above the top rung: encoded down to it, never copied (issue 15, item 4).
            [("144p", 256, 144, False), ("240p", 428, 240, False)],
            id="854x480",
        ),
        pytest.param(
            "anamorphic.mp4", ("h264", "aac"), True,
            [("144p", 256, 144, False), ("240p", 428, 240, False)], id="non-square-pixels",
        ),
    ],
)  # fmt: skip
def test_sources_of_every_kind(
    make_settings: Callable[..., Settings],
    clips: dict[str, Path],
    tmp_path: Path,
    clip: str,
    codecs: tuple[str, str | None],
    audio: bool,
    ladder: list[tuple[str, int, int, bool]],
) -> None:
    settings = make_settings(SMALL_LADDER)

    async def scenario() -> None:
        async with open_services(settings) as services:
            item = await upload(services, clips[clip])
            await process_video(item.ctx)
            video = await item.video()
            assert video.status == VideoStatus.READY
            assert (video.video_codec, video.audio_codec) == codecs
            rows = await item.renditions()
            assert [(r.name, r.width, r.height, r.copied) for r in rows] == ladder
            # Never above the source as shown.
            assert all(min(r.width, r.height) <= min(video.width, video.height) for r in rows)  # type: ignore[type-var]
            assert all(("mp4a.40.2" in r.codecs) == audio for r in rows)
            stored = await item.stored()
            assert jpeg_size(stored[thumbnail_key(video)]) == (1280, 720)
            master = await export_hls(item, tmp_path / "hls")
            assert decoded_seconds(master) == pytest.approx(video.duration_seconds, abs=0.15)

    run(scenario)


def test_sparse_keyframes_are_encoded_instead_of_copied(
    make_settings: Callable[..., Settings], clips: dict[str, Path]
) -> None:
    settings = make_settings({**SMALL_LADDER, "VIDBOX_PROCESSING__SEGMENT_SECONDS": "2"})

    async def scenario() -> None:
        async with open_services(settings) as services:
            item = await upload(services, clips["sparse.mp4"])
            await process_video(item.ctx)
            rows = await item.renditions()
            assert [(r.name, r.copied) for r in rows] == [("144p", False), ("240p", False)]
            stored = await item.stored()
            video = await item.video()
            playlist = stored[hls_key(video, "240p/index.m3u8")].decode()
            durations = [float(d) for d in re.findall(r"#EXTINF:([\d.]+)", playlist)]
            assert len(durations) >= 5
            assert max(durations) <= 2.5

    run(scenario)


@pytest.mark.parametrize("clip", ["garbage.mp4", "truncated.mp4"])
def test_unreadable_upload_fails_permanently_with_a_sentence(
    make_settings: Callable[..., Settings], clips: dict[str, Path], clip: str
) -> None:
    settings = make_settings(SMALL_LADDER)

    async def scenario() -> None:
        async with open_services(settings) as services:
            item = await upload(services, clips[clip])
            with pytest.raises(PermanentJobError) as failure:
                await process_video(item.ctx)
            sentence = str(failure.value)
            assert sentence == "This file is not a video FFmpeg can read."
            video = await item.video()
            assert (video.status, video.error) == (VideoStatus.FAILED, sentence)

            # What the runner does next: the hook keeps the job's own sentence.
            await on_gave_up(item.ctx, sentence)
            video = await item.video()
            assert (video.status, video.error) == (VideoStatus.FAILED, sentence)
            assert await item.stored() == {}
            assert work_dirs(settings) == []

    run(scenario)


def test_an_upload_cut_short_by_a_power_cut_fails_with_a_sentence(
    make_settings: Callable[..., Settings], clips: dict[str, Path]
) -> None:
    # Uploads are not synced as they arrive: after a power cut the spool file can be shorter
    # than the size the upload finished with. Processing must say so, not encode half a video.
    settings = make_settings(SMALL_LADDER)

    async def scenario() -> None:
        async with open_services(settings) as services:
            item = await upload(services, clips["landscape.mp4"])
            spool = services.spool.data_path(item.spool_id)
            os.truncate(spool, spool.stat().st_size // 2)
            with pytest.raises(PermanentJobError) as failure:
                await process_video(item.ctx)
            assert str(failure.value) == SOURCE_CUT_SHORT
            video = await item.video()
            assert (video.status, video.error) == (VideoStatus.FAILED, SOURCE_CUT_SHORT)
            assert await item.stored() == {}

    run(scenario)


@only_local_storage  # breaks the media folder to make every write fail
def test_transient_failures_are_retried_then_reported(
    make_settings: Callable[..., Settings], clips: dict[str, Path]
) -> None:
    settings = make_settings(SMALL_LADDER)

    async def scenario() -> None:
        async with open_services(settings) as services:
            item = await upload(services, clips["landscape.mp4"])
            # The media folder turns into a file: every write to storage fails.
            shutil.rmtree(settings.media_dir)
            settings.media_dir.write_text("not a folder")
            with pytest.raises(StorageError):
                await process_video(item.ctx)
            video = await item.video()
            assert video.status == VideoStatus.PROCESSING
            assert video.thumbnail_key is None
            assert services.spool.data_path(item.spool_id).exists()  # kept for the retry
            assert work_dirs(settings) == []

            assert HANDLERS["process_video"].on_gave_up is on_gave_up
            await on_gave_up(item.ctx, "The disk is full.\n[out#0/hls] Error muxing a packet")
            video = await item.video()
            assert video.status == VideoStatus.FAILED
            assert video.error == "Processing kept failing: The disk is full."

    run(scenario)


def test_cancelling_mid_ladder_stops_ffmpeg_and_cleans_up(
    make_settings: Callable[..., Settings],
    clips: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The slowest preset keeps FFmpeg busy for seconds: it is surely running when cancelled.
    env = {**SMALL_LADDER, "VIDBOX_PROCESSING__SEGMENT_SECONDS": "2"}
    settings = make_settings({**env, "VIDBOX_PROCESSING__PRESET": "veryslow"})
    running: list[int] = []

    async def scenario() -> None:
        async with open_services(settings) as services:
            item = await upload(services, clips["sparse.mp4"])

            async def cancel_when_encoding(percent: float) -> None:
                if 0 <= percent < 100 and not running:
                    running.extend(ffmpeg_children())
                    inner.cancel()

            observe_ladder(monkeypatch, cancel_when_encoding)
            inner = asyncio.ensure_future(process_video(item.ctx))
            with pytest.raises(asyncio.CancelledError):
                await inner
            assert running, "FFmpeg was not running when the job was cancelled"
            assert ffmpeg_children() == []
            assert work_dirs(settings) == []

    run(scenario)


def test_video_deleted_before_or_during_processing(
    make_settings: Callable[..., Settings],
    clips: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = make_settings(SMALL_LADDER)

    async def scenario() -> None:
        async with open_services(settings) as services:
            item = await upload(services, clips["landscape.mp4"])
            video = await item.video()

            async def delete_video(percent: float) -> None:
                if percent < 0:
                    async with services.db.session() as session:
                        row = await session.get(Video, item.video_id)
                        await session.delete(row)

            observe_ladder(monkeypatch, delete_video)
            await process_video(item.ctx)  # returns: nothing left to do
            assert await services.storage.list_prefix(video_prefix(video)) == []
            assert work_dirs(settings) == []

            # A job whose video is already gone does nothing.
            await process_video(item.context(attempt=2))
            assert work_dirs(settings) == []

    run(scenario)


def test_stores_into_s3_with_content_types(
    make_settings: Callable[..., Settings], clips: dict[str, Path], moto_endpoint: str
) -> None:
    settings = make_settings(
        {
            **SMALL_LADDER,
            "VIDBOX_STORAGE__BACKEND": "s3",
            "VIDBOX_STORAGE__ENDPOINT": moto_endpoint,
            "VIDBOX_STORAGE__BUCKET": f"pipeline-{new_id()[:12]}",
            "VIDBOX_STORAGE__ACCESS_KEY": "pipeline-test",
            "VIDBOX_STORAGE__SECRET_KEY": "pipeline-test-secret",
            "VIDBOX_STORAGE__SECURE": "false",
        }
    )

    async def scenario() -> None:
        async with open_services(settings) as services:
            item = await upload(services, clips["landscape.mp4"])
            await process_video(item.ctx)
            video = await item.video()
            expected = {
                thumbnail_key(video): "image/jpeg",
                original_key(video): "video/mp4",
                hls_key(video, "240p/index.m3u8"): "application/vnd.apple.mpegurl",
                hls_key(video, "240p/init.mp4"): "video/mp4",
                hls_key(video, "144p/seg_00001.m4s"): "video/mp4",
            }
            async with httpx.AsyncClient() as client:
                for key, content_type in expected.items():
                    url = await services.storage.presigned_get(key, expires_seconds=60)
                    assert url is not None
                    response = await client.get(url)
                    assert response.status_code == 200
                    assert response.headers["content-type"] == content_type, key

    run(scenario)


# -- pure parts and helpers --------------------------------------------------------------


def test_master_playlist_starts_near_720p_then_lists_by_bandwidth() -> None:
    rows = [
        Rendition(
            video_id="v", name="240p", width=320, height=240, bandwidth=900_000,
            average_bandwidth=700_000, codecs="avc1.64000d,mp4a.40.2", frame_rate=25.0,
            copied=True,
        ),
        Rendition(
            video_id="v", name="144p", width=192, height=144, bandwidth=300_000,
            average_bandwidth=250_000, codecs="avc1.64000c,mp4a.40.2", frame_rate=25.0,
        ),
    ]  # fmt: skip
    text = master_playlist_for(rows)
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U"
    assert [line for line in lines if not line.startswith("#")] == [
        "240p/index.m3u8",
        "144p/index.m3u8",
    ]
    assert "BANDWIDTH=900000,AVERAGE-BANDWIDTH=700000,RESOLUTION=320x240" in text
    assert list(HANDLERS) == ["process_video"]
    assert HANDLERS["process_video"].run is process_video


def test_progress_writes_are_throttled_and_only_forward(
    make_settings: Callable[..., Settings], clips: dict[str, Path]
) -> None:
    settings = make_settings()
    now = [100.0]

    async def scenario() -> None:
        async with open_services(settings) as services:
            item = await upload(services, clips["silent.mp4"])
            writer = ProgressWriter(services.db, item.video_id, clock=lambda: now[0])

            async def progress() -> int:
                return (await item.video()).progress

            await writer.report(12.7)
            assert await progress() == 12
            now[0] += 0.1
            await writer.report(40)  # too soon after the last write
            assert await progress() == 12
            now[0] += 1
            await writer.report(12.9)  # the same whole percent
            await writer.report(3)  # backwards
            assert await progress() == 12
            await writer.report(41.5)
            assert await progress() == 41
            scaled = writer.scaled(50, 100)
            now[0] += 1
            await scaled(50)
            assert await progress() == 75

    run(scenario)


# -- bench/processing.py stays runnable -----------------------------------------------------


def load_bench() -> Any:
    path = Path(__file__).resolve().parents[2] / "bench" / "processing.py"
    spec = importlib.util.spec_from_file_location("bench_processing", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_processing_bench_measures_and_reports_on_tiny_clips(
    clips: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = load_bench()
    sources = [
        bench.Source("H.264/AAC mp4", clips["fwvga.mp4"], "mp4", "video/mp4"),
        bench.Source("VP9/Opus webm", clips["vp9.webm"], "webm", "video/webm"),
    ]

    async def measure_all() -> list[Any]:
        return [await bench.measure(source, tmp_path) for source in sources]

    results = asyncio.run(measure_all())
    for result in results:
        assert result.vidbox > 0 and result.single > 0 and result.four_runs > 0
        assert 0 < result.thumbnail <= result.ready <= result.vidbox
    h264, vp9 = results
    assert h264.ready < h264.vidbox  # copied rung: playable before the ladder ran
    assert vp9.ready >= vp9.ladder  # nothing to copy: playable once the ladder is done
    bench.report(results, 2, ["360p", "480p"], 1)
    printed = capsys.readouterr().out
    assert "4runs/vidbox" in printed
    assert re.search(
        r"H\.264/AAC mp4: READY < 1\.0 s after the last byte\s+[\d.]+ s\s+(met|MISSED)", printed
    )
    assert re.search(r"VP9/Opus webm: vidbox / single <= 1\.05x\s+[\d.]+x\s+(met|MISSED)", printed)
    assert re.search(r"^H\.264/AAC mp4\s+yes\s", printed, re.M)  # copied
    assert re.search(r"^VP9/Opus webm\s+no\s", printed, re.M)
