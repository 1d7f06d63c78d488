"""Media playlist parsing and the master playlist (pure); measuring is in test_media_steps."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from vidbox.media import (
    RenditionInfo,
    build_master_playlist,
    parse_media_playlist,
    segment_start_times,
    well_segmented,
)


def test_parse_a_playlist_written_by_ffmpeg(captured: Callable[[str], str]) -> None:
    playlist = parse_media_playlist(captured("media_playlist_m3u8"))
    assert playlist.init_uri == "init.mp4"
    assert [s.uri for s in playlist.segments] == [
        "seg_00001.m4s",
        "seg_00002.m4s",
        "seg_00003.m4s",
    ]
    assert playlist.durations == [1.0, 1.0, 1.0]
    assert playlist.total_duration == pytest.approx(3.0)
    assert playlist.complete


def test_unfinished_playlist_is_not_complete() -> None:
    text = '#EXTM3U\n#EXT-X-MAP:URI="init.mp4"\n#EXTINF:6.006000,\nseg_00001.m4s\n'
    playlist = parse_media_playlist(text)
    assert not playlist.complete
    assert playlist.durations == [6.006]


def test_segment_start_times_are_the_boundaries_after_the_first() -> None:
    text = "#EXTM3U\n" + "".join(
        f"#EXTINF:{d},\nseg_{i:05d}.m4s\n" for i, d in enumerate([1.6, 0.8, 0.6], 1)
    )
    assert segment_start_times(parse_media_playlist(text)) == pytest.approx([1.6, 2.4])


def test_a_single_segment_has_no_boundaries() -> None:
    playlist = parse_media_playlist("#EXTM3U\n#EXTINF:3.0,\nseg_00001.m4s\n#EXT-X-ENDLIST\n")
    assert segment_start_times(playlist) == []


def test_well_segmented() -> None:
    regular = parse_media_playlist("#EXTINF:6.0,\na\n#EXTINF:7.5,\nb\n")
    rare_keyframes = parse_media_playlist("#EXTINF:6.0,\na\n#EXTINF:40.0,\nb\n")
    assert well_segmented(regular, 6)
    assert not well_segmented(rare_keyframes, 6)


def rendition(name: str, height: int, bandwidth: int, codecs: str) -> RenditionInfo:
    return RenditionInfo(
        name=name,
        width=height * 16 // 9,
        height=height,
        bandwidth=bandwidth,
        average_bandwidth=bandwidth * 4 // 5,
        codecs=codecs,
        frame_rate=29.97,
        duration_seconds=10.0,
    )


def test_master_playlist_lists_renditions_low_to_high() -> None:
    text = build_master_playlist(
        [
            rendition("720p", 720, 3_000_000, "avc1.42c01f,mp4a.40.2"),
            rendition("360p", 360, 900_000, "avc1.64001e,mp4a.40.2"),
        ]
    )
    assert text == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:7\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=900000,AVERAGE-BANDWIDTH=720000,RESOLUTION=640x360,"
        'CODECS="avc1.64001e,mp4a.40.2",FRAME-RATE=29.970\n'
        "360p/index.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=3000000,AVERAGE-BANDWIDTH=2400000,RESOLUTION=1280x720,"
        'CODECS="avc1.42c01f,mp4a.40.2",FRAME-RATE=29.970\n'
        "720p/index.m3u8\n"
    )


def test_master_playlist_is_a_function_of_the_list_alone() -> None:
    low = rendition("360p", 360, 900_000, "avc1.64001e")
    high = rendition("720p", 720, 3_000_000, "avc1.64001f")
    assert build_master_playlist([low, high]) == build_master_playlist([high, low])
    assert "720p/index.m3u8" not in build_master_playlist([low])
