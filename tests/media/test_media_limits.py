"""Media that costs far more than it weighs is refused at probe, over the real server; FFmpeg
runs with its memory capped."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.media.conftest import X264, run_ffmpeg_sync
from tests.support import (
    LiveServer,
    add_user,
    api_login,
    bearer,
    wait_for_status,
)
from vidbox.media import MediaError, run_ffmpeg
from vidbox.media.probe import declared_fps
from vidbox.media.runner import ProcessLimits, ffmpeg_limits, memory_limit


def make(path: Path, *args: str) -> Path:
    result = run_ffmpeg_sync(*args, *X264, str(path))
    assert result.returncode == 0, result.stderr
    return path


@pytest.fixture(scope="module")
def costly(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three clips of a few hundred KB that would each cost the box hours or gigabytes."""
    root = tmp_path_factory.mktemp("costly")
    lavfi = "testsrc2=size={size}:rate={rate}"
    return {
        # Two frames 50 000 s apart: 13:53:20 of video in 2 KB.
        "long": make(
            root / "long.mp4",
            *("-f", "lavfi", "-i", lavfi.format(size="64x64", rate=1), "-frames:v", "2"),
            *("-vf", "setpts=N*50000/TB", "-fps_mode", "passthrough"),
        ),
        # One frame just over 8K: 7744x4368 = 33.8 megapixels.
        "huge": make(
            root / "huge.mp4",
            *("-f", "lavfi", "-i", lavfi.format(size="7744x4368", rate=1), "-frames:v", "1"),
        ),
        "fast": make(
            root / "fast.mp4",
            *("-f", "lavfi", "-i", lavfi.format(size="64x64", rate=300), "-t", "1"),
        ),
    }


@pytest.mark.parametrize(
    ("name", "sentence"),
    [
        ("long", "This video is 13.9 hours long; this server accepts at most 12 hours."),
        (
            "huge",
            "This video's frames are 7744x4368 (33.8 megapixels); this server accepts at most "
            "33.2 megapixels per frame.",
        ),
        ("fast", "This video has 300 frames per second; this server accepts at most 240."),
    ],
)
def test_costly_media_is_refused_at_probe(
    live: LiveServer, costly: dict[str, Path], name: str, sentence: str
) -> None:
    add_user(live.settings, f"{name}@example.org")
    with live.client() as client:
        headers = bearer(api_login(client, f"{name}@example.org")["access"])
        response = client.post(
            "/api/videos",
            headers=headers,
            files={"file": (f"{name}.mp4", costly[name].read_bytes(), "video/mp4")},
        )
        assert response.status_code == 201, response.text
        video = wait_for_status(client, response.json()["id"], {"FAILED", "READY"}, headers=headers)
    assert (video["status"], video["error"]) == ("FAILED", sentence)


def test_ffmpeg_runs_with_its_memory_capped() -> None:
    limits_text: list[str] = []

    async def spawned(pid: int) -> None:
        limits_text.append(await asyncio.to_thread(Path(f"/proc/{pid}/limits").read_text))

    async def go() -> None:
        limits = ProcessLimits(memory_bytes=3 * 1024**3, on_spawn=spawned)
        with ffmpeg_limits(limits):
            await run_ffmpeg(
                ["-hide_banner", "-f", "lavfi", "-i", "testsrc2=duration=1", "-f", "null", "-"]
            )

    asyncio.run(go())
    (line,) = [row for row in limits_text[0].splitlines() if row.startswith("Max address space")]
    assert line.split()[3:5] == [str(3 * 1024**3)] * 2


def test_a_capped_ffmpeg_that_needs_more_fails_with_a_sentence() -> None:
    async def go() -> None:
        # 8K frames in a 200 MB address space: FFmpeg cannot even start its threads.
        with ffmpeg_limits(ProcessLimits(memory_bytes=200 * 1024**2)):
            await run_ffmpeg(
                [
                    *("-hide_banner", "-f", "lavfi", "-i", "testsrc2=size=7680x4320:rate=1"),
                    *("-frames:v", "2", "-c:v", "libx264", "-f", "null", "-"),
                ]
            )

    with pytest.raises(MediaError) as failed:
        asyncio.run(go())
    assert not failed.value.permanent
    assert "pthread_create() failed" in failed.value.reason  # FFmpeg's words, in a sentence


def test_the_default_memory_cap_grows_with_the_cpus() -> None:
    cpus = os.cpu_count() or 1
    assert memory_limit(0) == 4 * 1024**3 + cpus * 128 * 1024**2
    assert memory_limit(1024**3) == 1024**3


def stream_line(rates: str) -> str:
    return (
        "Input #0, matroska,webm, from 'file:x.webm':\n"
        "  Duration: 00:00:05.00, start: 0.000000, bitrate: 300 kb/s\n"
        f"  Stream #0:0(eng): Video: vp8, yuv420p(progressive), 640x480, SAR 1:1 DAR 4:3, {rates}\n"
    )


@pytest.mark.parametrize(
    ("rates", "fps"),
    [
        ("300 fps, 300 tbr, 19200 tbn (default)", 300.0),
        ("29.97 fps, 29.97 tbr, 90k tbn", 29.97),
        # Browser recordings (MediaRecorder WebM) declare no rate: not refused as 1000 fps.
        ("1k tbr, 1k tbn (default)", None),
        ("1k fps, 1k tbr, 1k tbn (default)", None),
    ],
)
def test_only_a_declared_frame_rate_counts(rates: str, fps: float | None) -> None:
    assert declared_fps(stream_line(rates)) == fps
