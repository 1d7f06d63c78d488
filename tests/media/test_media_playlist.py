"""Media playlist parsing and the master playlist (pure); measuring is in test_media_steps."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from vidbox.media import (
    RenditionInfo,
    build_master_playlist,
    parse_media_playlist,
    segment_start_times,
    well_segmented,
)
from vidbox.media.playlist import fix_target_duration


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
    regular = parse_media_playlist("#EXTINF:6.0,\na\n#EXTINF:12.0,\nb\n")
    # A camera's 8.3 s keyframe interval against 4 s segments: more than twice the target.
    rare_keyframes = parse_media_playlist("#EXTINF:8.3,\na\n#EXTINF:8.3,\nb\n")
    assert well_segmented(regular, 6)
    assert not well_segmented(rare_keyframes, 4)
    assert well_segmented(rare_keyframes, 6)


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


def test_master_playlist_lists_720p_first_then_low_to_high() -> None:
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
        "#EXT-X-STREAM-INF:BANDWIDTH=3000000,AVERAGE-BANDWIDTH=2400000,RESOLUTION=1280x720,"
        'CODECS="avc1.42c01f,mp4a.40.2",FRAME-RATE=29.970\n'
        "720p/index.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=900000,AVERAGE-BANDWIDTH=720000,RESOLUTION=640x360,"
        'CODECS="avc1.64001e,mp4a.40.2",FRAME-RATE=29.970\n'
        "360p/index.m3u8\n"
    )


def variants(text: str) -> list[str]:
    return [line.split("/")[0] for line in text.splitlines() if not line.startswith("#")]


@pytest.mark.parametrize(
    ("ladder", "order"),
    [
        ([360, 480, 720, 1080], ["720p", "360p", "480p", "1080p"]),
        ([360, 480, 600], ["600p", "360p", "480p"]),  # the closest to 720p starts
        ([360, 480], ["480p", "360p"]),
        ([144, 240, 360, 480, 720, 1080, 1440, 2160], None),
        ([540, 900], ["540p", "900p"]),  # a tie goes to the smaller
    ],
)
def test_players_start_on_the_rung_closest_to_720p(
    ladder: list[int], order: list[str] | None
) -> None:
    text = build_master_playlist(
        [rendition(f"{h}p", h, 1000 * h, "avc1.64001f") for h in reversed(ladder)]
    )
    got = variants(text)
    assert got[0] == ("720p" if order is None else order[0])
    if order is not None:
        assert got == order
    assert sorted(got[1:], key=lambda n: int(n[:-1])) == got[1:]


def test_portrait_renditions_are_judged_by_their_short_side() -> None:
    tall = [
        dataclasses.replace(rendition(f"{h}p", h, 1000 * h, "avc1"), width=h, height=h * 16 // 9)
        for h in (360, 720, 1080)
    ]
    assert variants(build_master_playlist(tall)) == ["720p", "360p", "1080p"]


def test_target_duration_is_at_least_one_second() -> None:
    short = (
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:0\n#EXT-X-PLAYLIST-TYPE:VOD\n"
        '#EXT-X-MAP:URI="init.mp4"\n#EXTINF:0.480000,\nseg_00001.m4s\n#EXT-X-ENDLIST\n'
    )
    fixed = fix_target_duration(short)
    assert "#EXT-X-TARGETDURATION:1\n" in fixed
    assert fixed.replace("TARGETDURATION:1", "TARGETDURATION:0") == short
    # Rounded to the nearest integer (RFC 8216 4.3.3.1), half up; never lowered.
    assert "TARGETDURATION:3\n" in fix_target_duration(short.replace("0.480000", "2.5"))
    assert "TARGETDURATION:6\n" in fix_target_duration(
        short.replace("TARGETDURATION:0", "TARGETDURATION:6").replace("0.480000", "6.006")
    )


def test_master_playlist_is_a_function_of_the_list_alone() -> None:
    low = rendition("360p", 360, 900_000, "avc1.64001e")
    high = rendition("720p", 720, 3_000_000, "avc1.64001f")
    assert build_master_playlist([low, high]) == build_master_playlist([high, low])
    assert "720p/index.m3u8" not in build_master_playlist([low])
