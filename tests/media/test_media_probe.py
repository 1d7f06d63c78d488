"""parse_probe over FFmpeg outputs captured from real clips (see data/regenerate.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from vidbox.media import MediaError, parse_probe, probe
from vidbox.media.errors import NO_VIDEO_STREAM, NOT_A_VIDEO

MP4 = "mov,mp4,m4a,3gp,3g2,mj2"


def test_landscape_h264_aac(captured: Callable[[str], str]) -> None:
    result = parse_probe(captured("landscape_h264_aac"))
    assert (result.width, result.height) == (320, 240)
    assert (result.coded_width, result.coded_height) == (320, 240)
    assert result.duration_seconds == pytest.approx(2.0)
    assert result.video_codec == "h264"
    assert result.video_profile == "Constrained Baseline"
    assert result.pix_fmt == "yuv420p"
    assert result.fps == 25.0
    assert result.audio_codec == "aac"
    assert result.has_audio
    assert result.rotation == 0
    assert result.sample_aspect_ratio == "1:1"
    assert result.container == MP4
    assert result.bitrate is not None and 100_000 < result.bitrate < 5_000_000


def test_display_matrix_turns_the_picture_upright(captured: Callable[[str], str]) -> None:
    result = parse_probe(captured("portrait_display_matrix"))
    assert result.rotation == 90
    assert (result.coded_width, result.coded_height) == (320, 240)
    assert (result.width, result.height) == (240, 320)
    assert result.is_portrait
    assert result.short_side == 240


def test_vp9_webm_with_opus(captured: Callable[[str], str]) -> None:
    result = parse_probe(captured("vp9_opus_webm"))
    assert result.container == "matroska,webm"
    assert result.video_codec == "vp9"
    assert result.video_profile == "Profile 0"
    # webm prints "yuv420p(tv, progressive), 320x240, SAR 1:1": the comma inside the
    # parentheses must not split the fields.
    assert result.pix_fmt == "yuv420p"
    assert (result.width, result.height) == (320, 240)
    assert result.audio_codec == "opus"
    assert result.duration_seconds == pytest.approx(2.01)


def test_no_audio(captured: Callable[[str], str]) -> None:
    result = parse_probe(captured("no_audio"))
    assert result.audio_codec is None
    assert not result.has_audio
    assert result.fps == 30.0


def test_fractional_frame_rate_and_odd_width(captured: Callable[[str], str]) -> None:
    result = parse_probe(captured("fwvga_854x480"))
    assert (result.width, result.height) == (854, 480)
    assert result.fps == pytest.approx(29.97)


def test_non_square_pixels_widen_the_display_size(captured: Callable[[str], str]) -> None:
    result = parse_probe(captured("anamorphic_sar_4_3"))
    assert (result.coded_width, result.coded_height) == (480, 360)
    assert result.sample_aspect_ratio == "4:3"
    assert (result.width, result.height) == (640, 360)


def test_avi_with_mp3(captured: Callable[[str], str]) -> None:
    result = parse_probe(captured("avi_mp3"))
    assert result.container == "avi"
    assert result.audio_codec == "mp3"
    assert result.duration_seconds == pytest.approx(2.04)


def test_ten_bit_hevc(captured: Callable[[str], str]) -> None:
    result = parse_probe(captured("hevc_10bit"))
    assert result.video_codec == "hevc"
    assert result.video_profile == "Main 10"
    assert result.pix_fmt == "yuv420p10le"


def test_cover_art_is_not_the_video(captured: Callable[[str], str]) -> None:
    result = parse_probe(captured("cover_art_first"))
    assert result.video_codec == "h264"
    assert result.fps == 25.0


def test_cover_art_listed_first_is_skipped(captured: Callable[[str], str]) -> None:
    # Move the attached picture's line above the real video stream.
    lines = captured("cover_art_first").splitlines()
    cover = next(i for i, line in enumerate(lines) if "(attached pic)" in line)
    video = next(i for i, line in enumerate(lines) if "Video: h264" in line)
    lines.insert(video, lines.pop(cover))
    assert parse_probe("\n".join(lines)).video_codec == "h264"


@pytest.mark.parametrize(
    ("capture", "reason"),
    [
        ("truncated_moov_missing", NOT_A_VIDEO),
        ("text_named_mp4", NOT_A_VIDEO),
        ("audio_only", NO_VIDEO_STREAM),
    ],
)
def test_unusable_files_are_refused_for_good(
    captured: Callable[[str], str], capture: str, reason: str
) -> None:
    with pytest.raises(MediaError) as caught:
        parse_probe(captured(capture))
    assert caught.value.reason == reason
    assert caught.value.permanent


@pytest.mark.parametrize(
    ("side_data", "rotation"),
    [
        # Older FFmpeg spelled the side data in lower case; phones write -90.
        ("    Side data:\n      displaymatrix: rotation of -90.00 degrees", 90),
        ("    Side data:\n      Display Matrix: rotation of 180.00 degrees", 180),
        ("    Metadata:\n      rotate          : 270", 270),
    ],
)
def test_rotation_spellings(captured: Callable[[str], str], side_data: str, rotation: int) -> None:
    lines = captured("landscape_h264_aac").splitlines()
    video = next(i for i, line in enumerate(lines) if "Video: h264" in line)
    lines.insert(video + 1, side_data)
    assert parse_probe("\n".join(lines)).rotation == rotation


def test_unknown_duration_and_bitrate(captured: Callable[[str], str]) -> None:
    text = captured("landscape_h264_aac").replace(
        "Duration: 00:00:02.00, start: 0.000000, bitrate: 778 kb/s",
        "Duration: N/A, bitrate: N/A",
    )
    assert "Duration: N/A" in text
    result = parse_probe(text)
    assert result.duration_seconds is None
    assert result.bitrate is None


# -- the real FFmpeg ------------------------------------------------------------------------


def test_probe_runs_ffmpeg(portrait_clip: Path) -> None:
    result = asyncio.run(probe(portrait_clip))
    assert (result.width, result.height) == (240, 320)
    assert result.rotation == 90
    assert result.audio_codec == "aac"
    assert result.duration_seconds == pytest.approx(2.0, abs=0.1)


def test_probe_refuses_a_truncated_upload(truncated_clip: Path) -> None:
    with pytest.raises(MediaError) as caught:
        asyncio.run(probe(truncated_clip))
    assert caught.value.reason == NOT_A_VIDEO
    assert caught.value.permanent


def test_probe_refuses_text(text_clip: Path) -> None:
    with pytest.raises(MediaError) as caught:
        asyncio.run(probe(text_clip))
    assert caught.value.reason == NOT_A_VIDEO
    assert caught.value.permanent


def test_probe_refuses_audio_only(make_clip: Callable[..., Path]) -> None:
    song = make_clip("song.m4a", "-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac")
    with pytest.raises(MediaError) as caught:
        asyncio.run(probe(song))
    assert caught.value.reason == NO_VIDEO_STREAM
    assert caught.value.permanent


def test_interlaced_source_with_extra_tracks(captured: Callable[[str], str]) -> None:
    result = parse_probe(captured("interlaced_multitrack"))
    assert result.interlaced
    assert result.pix_fmt == "yuv420p"
    assert (result.audio_tracks, result.subtitle_tracks) == (3, 1)
    assert result.audio_stream == 1  # the track marked default, not the first
    assert result.audio_codec == "aac"
    assert result.video_bitrate == 886_000


def test_progressive_single_track_source(captured: Callable[[str], str]) -> None:
    result = parse_probe(captured("landscape_h264_aac"))
    assert not result.interlaced
    assert (result.audio_stream, result.audio_tracks, result.subtitle_tracks) == (0, 1, 0)
    assert result.video_bitrate is not None and result.video_bitrate < result.bitrate  # type: ignore[operator]
    assert parse_probe(captured("no_audio")).audio_tracks == 0
