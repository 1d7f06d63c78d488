"""The job's processing steps, in the job's order, on real clips with the real FFmpeg."""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from vidbox.media import (
    MediaError,
    Probe,
    RenditionInfo,
    RenditionPlan,
    build_master_playlist,
    can_copy,
    encode_ladder,
    ffmpeg_exe,
    make_thumbnail,
    measure_rendition,
    parse_media_playlist,
    parse_probe,
    plan_ladder,
    probe,
    remux_top_rung,
    segment_start_times,
)

SEGMENT_SECONDS = 1
PRESET = "ultrafast"


def jpeg_size(path: Path) -> tuple[int, int]:
    """Width and height from the JPEG's start-of-frame header."""
    data = path.read_bytes()
    assert data[:2] == b"\xff\xd8", "not a JPEG"
    at = 2
    while at < len(data):
        marker, length = data[at + 1], int.from_bytes(data[at + 2 : at + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            height = int.from_bytes(data[at + 5 : at + 7], "big")
            width = int.from_bytes(data[at + 7 : at + 9], "big")
            return width, height
        at += 2 + length
    raise AssertionError("no start-of-frame marker")


def gray_pixels(path: Path) -> bytes:
    command = [ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "gray"]
    return subprocess.run([*command, "-"], capture_output=True, check=True).stdout


FFmpegSync = Callable[..., subprocess.CompletedProcess[str]]


def decode(ffmpeg_sync: FFmpegSync, path: Path) -> tuple[float, str]:
    """Seconds FFmpeg decodes from ``path`` (a master playlist too), and its stderr."""
    result = ffmpeg_sync("-i", str(path), "-f", "null", "-")
    assert result.returncode == 0, result.stderr
    clock = re.findall(r"time=(\d+):(\d\d):(\d\d\.\d+)", result.stderr)[-1]
    return int(clock[0]) * 3600 + int(clock[1]) * 60 + float(clock[2]), result.stderr


@dataclass
class Processed:
    probe: Probe
    plans: list[RenditionPlan]
    out_dir: Path
    thumbnail: Path
    renditions: list[RenditionInfo]
    master: Path
    progress: list[float]


def process(src: Path, out_dir: Path, rungs: list[str]) -> Processed:
    """What the job does, step by step."""
    source = asyncio.run(probe(src))
    thumbnail = out_dir / "thumbnail.jpg"
    asyncio.run(make_thumbnail(src, thumbnail, source))
    plans = plan_ladder(source, rungs, copy_top=can_copy(source))
    keyframe_times = None
    for plan in plans:
        if plan.copy:
            copied = asyncio.run(remux_top_rung(src, out_dir, plan, SEGMENT_SECONDS))
            playlist = parse_media_playlist((copied / "index.m3u8").read_text())
            keyframe_times = segment_start_times(playlist)
    progress: list[float] = []
    if any(not plan.copy for plan in plans):
        asyncio.run(
            encode_ladder(
                src,
                out_dir,
                plans,
                source,
                SEGMENT_SECONDS,
                PRESET,
                progress.append,
                keyframe_times,
            )
        )
    renditions = [measure_rendition(out_dir / plan.name, frame_rate=source.fps) for plan in plans]
    master = out_dir / "master.m3u8"
    master.write_text(build_master_playlist(renditions))
    return Processed(source, plans, out_dir, thumbnail, renditions, master, progress)


@pytest.fixture(scope="module")
def wide(wide_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Processed:
    return process(wide_clip, tmp_path_factory.mktemp("wide"), ["144p", "240p", "360p", "720p"])


def test_probe_of_the_wide_clip(wide: Processed) -> None:
    assert (wide.probe.width, wide.probe.height) == (640, 360)
    assert wide.probe.duration_seconds == pytest.approx(3.0, abs=0.05)
    assert wide.probe.video_codec == "h264"
    assert wide.probe.audio_codec == "aac"
    assert can_copy(wide.probe)


def test_thumbnail_is_a_720p_jpeg(wide: Processed) -> None:
    assert jpeg_size(wide.thumbnail) == (1280, 720)


def test_ladder_copies_the_source_and_never_upscales(wide: Processed) -> None:
    folders = sorted(p.name for p in wide.out_dir.iterdir() if p.is_dir())
    assert folders == ["144p", "240p", "360p"]
    by_name = {r.name: r for r in wide.renditions}
    assert (by_name["144p"].width, by_name["144p"].height) == (256, 144)
    assert (by_name["240p"].width, by_name["240p"].height) == (426, 240)
    assert (by_name["360p"].width, by_name["360p"].height) == (640, 360)
    # CODECS carries the real H.264 level, which grows with the picture size.
    levels = [int(by_name[name].codecs[9:11], 16) for name in ("144p", "240p", "360p")]
    assert levels == sorted(levels) and levels[0] < levels[-1]
    for rendition in wide.renditions:
        assert re.fullmatch(r"avc1\.[0-9a-f]{6},mp4a\.40\.2", rendition.codecs)
        folder = wide.out_dir / rendition.name
        assert (folder / "init.mp4").is_file()
        assert (folder / "seg_00001.m4s").is_file()


def test_encoded_rungs_are_cut_where_the_copied_rung_is(wide: Processed) -> None:
    durations = {
        plan.name: parse_media_playlist((wide.out_dir / plan.name / "index.m3u8").read_text())
        for plan in wide.plans
    }
    copied = durations["360p"].durations
    assert len(copied) >= 2  # the source's keyframes every 0.8 s give several segments
    for name in ("144p", "240p"):
        assert durations[name].durations == pytest.approx(copied, abs=0.01)


def test_bandwidths_are_measured_and_ordered(wide: Processed) -> None:
    for rendition in wide.renditions:
        assert 0 < rendition.average_bandwidth <= rendition.bandwidth
        sizes = sum(p.stat().st_size for p in (wide.out_dir / rendition.name).glob("*.m4s"))
        expected = sizes * 8 / rendition.duration_seconds
        assert rendition.average_bandwidth == pytest.approx(expected, rel=0.01)
    peaks = [r.bandwidth for r in sorted(wide.renditions, key=lambda r: r.height)]
    assert peaks == sorted(peaks)


def test_master_playlist_plays_back_to_the_full_duration(
    wide: Processed, ffmpeg_sync: FFmpegSync
) -> None:
    text = wide.master.read_text()
    # The rung closest to 720p first: players without a bandwidth guess start there.
    assert re.findall(r"^\d+p/index\.m3u8$", text, re.M) == [
        "360p/index.m3u8",
        "144p/index.m3u8",
        "240p/index.m3u8",
    ]
    assert "RESOLUTION=640x360" in text
    assert "FRAME-RATE=25.000" in text
    seconds, stderr = decode(ffmpeg_sync, wide.master)
    assert seconds == pytest.approx(3.0, abs=0.15)
    assert "Audio: aac" in stderr


def test_progress_increases_to_100(wide: Processed) -> None:
    assert wide.progress
    assert wide.progress == sorted(wide.progress)
    assert wide.progress[-1] == 100.0


def test_source_without_audio(silent_clip: Path, tmp_path: Path, ffmpeg_sync: FFmpegSync) -> None:
    result = process(silent_clip, tmp_path, ["144p", "240p"])
    assert not result.probe.has_audio
    assert [r.codecs.count("mp4a") for r in result.renditions] == [0, 0]
    seconds, stderr = decode(ffmpeg_sync, result.master)
    assert seconds == pytest.approx(2.0, abs=0.15)
    assert "Audio:" not in stderr


def test_portrait_source_gives_portrait_renditions(
    portrait_clip: Path, tmp_path: Path, ffmpeg_sync: FFmpegSync
) -> None:
    result = process(portrait_clip, tmp_path, ["144p", "240p"])
    assert not any(plan.copy for plan in result.plans)  # rotated: encoded, not copied
    for plan in result.plans:
        playlist = tmp_path / plan.name / "index.m3u8"
        rendition = parse_probe(ffmpeg_sync("-i", str(playlist), "-f", "null", "-").stderr)
        assert rendition.rotation == 0  # the pixels themselves are upright now
        assert (rendition.width, rendition.height) == (plan.width, plan.height)
        assert rendition.height > rendition.width
    assert [(r.width, r.height) for r in result.renditions] == [(144, 192), (240, 320)]


def test_portrait_thumbnail_is_pillarboxed(portrait_clip: Path, tmp_path: Path) -> None:
    source = asyncio.run(probe(portrait_clip))
    thumbnail = tmp_path / "thumb.jpg"
    asyncio.run(make_thumbnail(portrait_clip, thumbnail, source))
    assert jpeg_size(thumbnail) == (1280, 720)
    pixels = gray_pixels(thumbnail)
    row = pixels[360 * 1280 : 361 * 1280]
    assert max(row[:300]) < 30 and max(row[-300:]) < 30  # black bars left and right
    assert max(row[500:780]) > 100  # the picture in the middle


def test_vp9_opus_is_encoded_to_h264_aac(
    webm_clip: Path, tmp_path: Path, ffmpeg_sync: FFmpegSync
) -> None:
    result = process(webm_clip, tmp_path, ["240p"])
    assert [(p.name, p.copy, p.audio) for p in result.plans] == [("240p", False, "aac")]
    assert re.fullmatch(r"avc1\.[0-9a-f]{6},mp4a\.40\.2", result.renditions[0].codecs)
    seconds, _ = decode(ffmpeg_sync, result.master)
    assert seconds == pytest.approx(2.0, abs=0.15)


def test_damaged_upload_fails_for_good_with_a_sentence(damaged_clip: Path, tmp_path: Path) -> None:
    source = asyncio.run(probe(damaged_clip))  # the index is intact, the first frame decodes
    plans = plan_ladder(source, ["144p"], copy_top=False)
    with pytest.raises(MediaError) as caught:
        asyncio.run(encode_ladder(damaged_clip, tmp_path, plans, source, 1, PRESET))
    assert re.fullmatch(r"The video stream is corrupt after 0:0[0-2]\.", caught.value.reason)
    assert caught.value.permanent


def test_playlists_and_concat_lists_are_refused(
    wide: Processed, wide_clip: Path, tmp_path: Path, ffmpeg_sync: FFmpegSync
) -> None:
    # Both make FFmpeg read other files on the server (another user's upload next to this
    # one, say) into the published video. Plain FFmpeg plays them; the probe must not.
    copied = wide.out_dir / "360p"
    playlist = (copied / "index.m3u8").read_text()
    playlist = playlist.replace('URI="init.mp4"', f'URI="{copied}/init.mp4"')
    playlist = playlist.replace("seg_", f"{copied}/seg_")
    hls = tmp_path / "holiday.m3u8"
    hls.write_text(playlist)
    (tmp_path / "someone_elses.mp4").write_bytes(wide_clip.read_bytes())
    concat = tmp_path / "party.mp4"
    concat.write_text("ffconcat version 1.0\nfile someone_elses.mp4\n")
    for upload in (hls, concat):
        assert ffmpeg_sync("-i", str(upload), "-f", "null", "-").returncode == 0
        with pytest.raises(MediaError) as caught:
            asyncio.run(probe(upload))
        assert caught.value.reason == "This file is not a video FFmpeg can read."
        assert caught.value.permanent
