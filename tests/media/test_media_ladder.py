"""Ladder planning and FFmpeg argument building: pure functions, no FFmpeg run."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from vidbox.media import (
    MediaError,
    Probe,
    RenditionPlan,
    can_copy,
    keyframe_args,
    ladder_args,
    left_out,
    plan_ladder,
    remux_args,
    thumbnail_args,
)
from vidbox.media.names import RENDITION_NAME, is_rendition_name, rendition_name

RUNGS = ["360p", "480p", "720p", "1080p"]


def make_probe(width: int = 1920, height: int = 1080, **changes: object) -> Probe:
    base = Probe(
        duration_seconds=60.0,
        width=width,
        height=height,
        coded_width=width,
        coded_height=height,
        rotation=0,
        fps=30.0,
        video_codec="h264",
        video_profile="High",
        pix_fmt="yuv420p",
        audio_codec="aac",
        bitrate=2_000_000,  # light enough to copy at 600p and above
        sample_aspect_ratio="1:1",
        has_audio=True,
        container="mov,mp4,m4a,3gp,3g2,mj2",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def sizes(plans: list[RenditionPlan]) -> list[tuple[str, int, int, bool]]:
    return [(p.name, p.width, p.height, p.copy) for p in plans]


def test_full_hd_source_gets_every_rung_encoded() -> None:
    plans = plan_ladder(make_probe(), RUNGS, copy_top=False)
    assert sizes(plans) == [
        ("360p", 640, 360, False),
        ("480p", 854, 480, False),
        ("720p", 1280, 720, False),
        ("1080p", 1920, 1080, False),
    ]
    rates = [p.video_bitrate for p in plans]
    assert rates == sorted(rates) and len(set(rates)) == 4
    for plan in plans:
        assert plan.maxrate > plan.video_bitrate
        assert plan.bufsize >= plan.maxrate


def test_never_upscales() -> None:
    plans = plan_ladder(make_probe(1280, 720, video_codec="vp9"), RUNGS, copy_top=True)
    assert [p.name for p in plans] == ["360p", "480p", "720p"]
    assert max(p.height for p in plans) == 720


def test_copy_top_keeps_the_source_and_encodes_strictly_below() -> None:
    plans = plan_ladder(make_probe(1280, 720), RUNGS, copy_top=True)
    assert sizes(plans) == [
        ("360p", 640, 360, False),
        ("480p", 854, 480, False),
        ("720p", 1280, 720, True),
    ]


def test_copy_top_between_rungs_is_named_by_its_short_side() -> None:
    plans = plan_ladder(make_probe(1000, 600), RUNGS, copy_top=True)
    assert sizes(plans) == [
        ("360p", 600, 360, False),
        ("480p", 800, 480, False),
        ("600p", 1000, 600, True),
    ]


def test_copy_top_is_ignored_when_the_source_cannot_be_copied() -> None:
    plans = plan_ladder(make_probe(1280, 720, pix_fmt="yuv420p10le"), RUNGS, copy_top=True)
    assert not any(p.copy for p in plans)
    assert plans[-1].name == "720p"


def test_portrait_is_judged_by_its_short_side() -> None:
    plans = plan_ladder(make_probe(1080, 1920), RUNGS, copy_top=False)
    assert sizes(plans) == [
        ("360p", 360, 640, False),
        ("480p", 480, 854, False),
        ("720p", 720, 1280, False),
        ("1080p", 1080, 1920, False),
    ]


def test_odd_display_sizes_give_even_outputs_with_the_aspect_kept() -> None:
    plans = plan_ladder(make_probe(1279, 717, video_codec="hevc"), RUNGS, copy_top=False)
    for plan in plans:
        assert plan.width % 2 == 0 and plan.height % 2 == 0
        assert plan.width / plan.height == pytest.approx(1279 / 717, rel=0.01)
    assert plans[-1].name == "480p"


def test_tiny_source_gets_one_rendition_at_its_own_size() -> None:
    plans = plan_ladder(make_probe(321, 241, video_codec="mpeg4"), RUNGS, copy_top=False)
    assert sizes(plans) == [("240p", 320, 240, False)]


def test_tiny_copyable_source_is_only_copied() -> None:
    plans = plan_ladder(make_probe(320, 240, bitrate=500_000), RUNGS, copy_top=True)
    assert sizes(plans) == [("240p", 320, 240, True)]


def test_rungs_are_sorted_and_deduplicated() -> None:
    plans = plan_ladder(make_probe(), ["720p", "360p", "720p"], copy_top=False)
    assert [p.name for p in plans] == ["360p", "720p"]


def test_audio_is_copied_when_aac_encoded_otherwise_absent_when_silent() -> None:
    assert plan_ladder(make_probe(), RUNGS, copy_top=False)[0].audio == "copy"
    opus = make_probe(audio_codec="opus")
    assert plan_ladder(opus, RUNGS, copy_top=False)[0].audio == "aac"
    silent = make_probe(audio_codec=None, has_audio=False)
    assert plan_ladder(silent, RUNGS, copy_top=False)[0].audio is None


@pytest.mark.parametrize(
    ("changes", "copyable"),
    [
        ({}, True),
        ({"video_codec": "hevc"}, False),
        ({"video_codec": "vp9", "pix_fmt": "yuv420p"}, False),
        ({"pix_fmt": "yuv420p10le"}, False),
        ({"pix_fmt": "yuv422p"}, False),
        ({"rotation": 90}, False),
        ({"sample_aspect_ratio": "4:3"}, False),
        ({"video_profile": "High 4:4:4 Predictive"}, False),
        ({"video_profile": "Constrained Baseline"}, True),
        ({"audio_codec": "mp3"}, True),
        ({"audio_codec": None, "has_audio": False}, True),
    ],
)
def test_can_copy(changes: dict[str, object], copyable: bool) -> None:
    assert can_copy(make_probe(**changes)) is copyable


# -- arguments -------------------------------------------------------------------------------


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_thumbnail_seeks_before_input_and_pads_to_720p() -> None:
    args = thumbnail_args(Path("in.mp4"), Path("out.jpg"), make_probe(1080, 1920))
    assert args.index("-ss") < args.index("-i")
    assert option(args, "-ss") == "0"
    graph = option(args, "-vf")
    assert graph.startswith("scale=406:720,")
    assert "pad=1280:720:(ow-iw)/2:(oh-ih)/2:color=black" in graph
    assert option(args, "-frames:v") == "1"
    assert args[-1] == "out.jpg"


def test_thumbnail_of_a_wide_source_is_letterboxed() -> None:
    args = thumbnail_args(Path("in.mp4"), Path("out.jpg"), make_probe(2560, 1080))
    assert option(args, "-vf").startswith("scale=1280:540,")


def test_remux_copies_video_and_aac_into_fmp4_hls() -> None:
    probe = make_probe(1280, 720)
    top = plan_ladder(probe, RUNGS, copy_top=True)[-1]
    args = remux_args(Path("in.mp4"), Path("out"), top, 6)
    assert option(args, "-c:v") == "copy"
    assert option(args, "-c:a") == "copy"
    assert option(args, "-hls_segment_type") == "fmp4"
    assert option(args, "-hls_playlist_type") == "vod"
    assert option(args, "-hls_time") == "6"
    assert option(args, "-hls_fmp4_init_filename") == "init.mp4"
    assert option(args, "-hls_segment_filename") == str(Path("out/720p/seg_%05d.m4s"))
    assert args[-1] == str(Path("out/720p/index.m3u8"))


def test_remux_encodes_other_audio_and_skips_missing_audio() -> None:
    mp3 = plan_ladder(make_probe(1280, 720, audio_codec="mp3"), RUNGS, copy_top=True)[-1]
    args = remux_args(Path("in.avi"), Path("out"), mp3, 6)
    assert option(args, "-c:v") == "copy"
    assert option(args, "-c:a") == "aac"
    silent = make_probe(1280, 720, audio_codec=None, has_audio=False)
    args = remux_args(Path("in.mp4"), Path("out"), plan_ladder(silent, RUNGS, copy_top=True)[-1], 6)
    assert "-c:a" not in args
    assert "0:a:0" not in args


def test_ladder_is_one_command_with_a_split_and_one_hls_output_per_rung() -> None:
    probe = make_probe(1280, 720, audio_codec="opus")
    plans = plan_ladder(probe, RUNGS, copy_top=True)
    args = ladder_args(
        Path("in.mp4"), Path("out"), plans, segment_seconds=4, preset="veryfast", probe=probe
    )
    graph = option(args, "-filter_complex")
    assert graph.startswith("[0:V:0]split=2[split0][split1];")
    assert "scale=640:360,setsar=1[out0]" in graph
    assert "scale=854:480,setsar=1[out1]" in graph
    assert args.count("-f") == 2
    assert args.count("libx264") == 2
    assert [a for a in args if a.endswith("index.m3u8")] == [
        str(Path("out/360p/index.m3u8")),
        str(Path("out/480p/index.m3u8")),
    ]
    assert args.count("-sc_threshold") == 2
    assert option(args, "-g") == "120"
    assert option(args, "-force_key_frames") == "expr:gte(t,n_forced*4)"
    assert option(args, "-c:a") == "aac"
    assert option(args, "-progress") == "pipe:1"
    assert "-nostats" in args
    # One input only: the source is decoded once.
    assert args.count("-i") == 1


def test_ladder_refuses_a_plan_list_with_nothing_to_encode() -> None:
    probe = make_probe(320, 240, bitrate=500_000)
    with pytest.raises(ValueError, match="no rendition"):
        ladder_args(
            Path("in.mp4"),
            Path("out"),
            plan_ladder(probe, RUNGS, copy_top=True),
            segment_seconds=6,
            preset="veryfast",
            probe=probe,
        )


def test_keyframes_follow_the_copied_segments() -> None:
    args = keyframe_args(25.0, 2, [1.6, 3.2, 4.8], duration=6.0)
    # Half a frame (0.02 s) early, so the frame at exactly 1.6 s is the keyframe.
    assert option(args, "-force_key_frames") == "1.580,3.180,4.780"
    # No periodic keyframe may fall inside the longest gap (1.6 s + a second of margin).
    assert int(option(args, "-g")) >= 65


def test_a_single_copied_segment_means_a_single_keyframe() -> None:
    args = keyframe_args(25.0, 6, [], duration=4.0)
    assert "-force_key_frames" not in args
    assert int(option(args, "-g")) > 4 * 25


def test_keyframe_list_too_long_for_one_argument_falls_back_to_a_period() -> None:
    times = [i * 0.5 for i in range(1, 20_000)]
    args = keyframe_args(30.0, 1, times, duration=10_000.0)
    assert option(args, "-force_key_frames") == "expr:gte(t,n_forced*1)"
    assert option(args, "-g") == "30"


# -- what may be copied, and names (issue 15, items 4 and 11) -----------------------------


def test_rendition_names_have_one_definition() -> None:
    assert [rendition_name(n) for n in (16, 90, 720, 4320)] == ["16p", "90p", "720p", "4320p"]
    assert all(is_rendition_name(n) for n in ("16p", "96p", "1080p", "4320p"))
    assert not any(is_rendition_name(n) for n in ("0p", "090p", "16000p", "p", "720", "x"))
    with pytest.raises(ValueError, match="16000 pixels"):
        rendition_name(16000)


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (15, 480), (640, 8)])
def test_sources_under_16_pixels_a_side_fail_with_a_reason(size: tuple[int, int]) -> None:
    with pytest.raises(MediaError, match="too small to play") as caught:
        plan_ladder(make_probe(*size, pix_fmt="yuv444p"), RUNGS, copy_top=True)
    assert caught.value.permanent


@pytest.mark.parametrize(
    ("size", "name"), [((96, 96), "96p"), ((160, 90), "90p"), ((17, 17), "16p")]
)
def test_sources_below_every_rung_get_a_name_the_routes_accept(
    size: tuple[int, int], name: str
) -> None:
    for copy_top in (False, True):
        plans = plan_ladder(make_probe(*size, bitrate=50_000), RUNGS, copy_top=copy_top)
        assert [p.name for p in plans] == [name]
        assert RENDITION_NAME.match(plans[0].name)


@pytest.mark.parametrize("size", [(7680, 4320), (16000, 16000), (2560, 1440)])
def test_nothing_above_the_top_rung_is_copied_or_encoded(size: tuple[int, int]) -> None:
    # An 8K clip at 243 Mbit/s, Constrained Baseline: it used to be copied as the 4320p rung.
    probe = make_probe(*size, video_profile="Constrained Baseline", bitrate=243_000_000)
    plans = plan_ladder(probe, RUNGS, copy_top=True)
    assert [p.name for p in plans] == RUNGS
    assert not any(p.copy for p in plans)
    assert max(min(p.width, p.height) for p in plans) == 1080


@pytest.mark.parametrize(
    ("video_bitrate", "copied"),
    [(7_500_000, True), (6_000_000, True), (7_600_000, False), (16_000_000, False)],
)
def test_the_source_is_copied_only_within_one_and_a_half_times_the_rungs_bitrate(
    video_bitrate: int, copied: bool
) -> None:
    # 1080p30 gets 5 Mbit/s: a 6 Mbit/s export is copied, a 16 Mbit/s phone file is encoded.
    probe = make_probe(1920, 1080, video_bitrate=video_bitrate, bitrate=video_bitrate + 128_000)
    plans = plan_ladder(probe, RUNGS, copy_top=True)
    assert [p.name for p in plans] == RUNGS
    assert plans[-1].copy is copied
    assert not any(p.copy for p in plans[:-1])


# -- tracks and fields (issue 15, item 12) ------------------------------------------------


def test_interlaced_sources_are_deinterlaced_before_the_split_and_never_copied() -> None:
    probe = make_probe(1920, 1080, interlaced=True)
    assert not can_copy(probe)
    plans = plan_ladder(probe, RUNGS, copy_top=True)
    assert all(p.deinterlace and not p.copy for p in plans)
    args = ladder_args(
        Path("in.mts"), Path("out"), plans, segment_seconds=6, preset="veryfast", probe=probe
    )
    graph = option(args, "-filter_complex")
    assert graph.startswith("[0:V:0]bwdif=mode=send_frame:parity=auto:deint=all,split=4")
    thumbnail = option(thumbnail_args(Path("in.mts"), Path("t.jpg"), probe), "-vf")
    assert thumbnail.startswith("bwdif=")
    progressive = make_probe(1920, 1080, video_codec="hevc")
    graph = option(
        ladder_args(
            Path("in.mp4"), Path("out"), plan_ladder(progressive, RUNGS, copy_top=False),
            segment_seconds=6, preset="veryfast", probe=progressive,
        ),
        "-filter_complex",
    )  # fmt: skip
    assert "bwdif" not in graph


def test_renditions_carry_the_default_audio_track() -> None:
    probe = make_probe(1280, 720, audio_stream=2, audio_tracks=3, audio_codec="ac3")
    for plan in plan_ladder(probe, RUNGS, copy_top=False):
        args = ladder_args(
            Path("in.mkv"), Path("out"), [plan], segment_seconds=6, preset="veryfast", probe=probe
        )
        assert args[args.index("0:a:2") - 1] == "-map"
        assert "0:a:0" not in args


def test_the_ladder_fails_past_a_tenth_of_frames_undecodable() -> None:
    probe = make_probe(1280, 720, video_codec="hevc")
    args = ladder_args(
        Path("in.mp4"), Path("out"), plan_ladder(probe, RUNGS, copy_top=False),
        segment_seconds=6, preset="veryfast", probe=probe,
    )  # fmt: skip
    assert args.index("-max_error_rate") < args.index("-i")
    assert option(args, "-max_error_rate") == "0.1"


@pytest.mark.parametrize(
    ("audio", "subtitles", "sentence"),
    [
        (0, 0, None),
        (1, 0, None),
        (2, 0, "1 more audio track is only in the original."),
        (3, 1, "2 more audio tracks and 1 subtitle track are only in the original."),
        (1, 1, "1 subtitle track is only in the original."),
        (1, 2, "2 subtitle tracks are only in the original."),
        (2, 1, "1 more audio track and 1 subtitle track are only in the original."),
    ],
)
def test_what_is_left_out_is_said_in_a_sentence(
    audio: int, subtitles: int, sentence: str | None
) -> None:
    assert left_out(make_probe(audio_tracks=audio, subtitle_tracks=subtitles)) == sentence
