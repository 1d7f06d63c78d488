"""Which renditions to make of a video, and the FFmpeg arguments that make them.

Everything here is pure: sizes and bitrates from a Probe, argument lists from plans. The
runner executes the lists; tests read them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from vidbox.media.errors import MediaError
from vidbox.media.names import rendition_name
from vidbox.media.probe import Probe, input_args

THUMBNAIL_WIDTH = 1280
THUMBNAIL_HEIGHT = 720
INIT_SEGMENT = "init.mp4"
MEDIA_PLAYLIST = "index.m3u8"
SEGMENT_PATTERN = "seg_%05d.m4s"

# Video kbit/s at about 30 fps by short side; sizes in between are interpolated.
_BITRATE_KBPS = (
    (144, 150),
    (240, 400),
    (360, 800),
    (480, 1400),
    (720, 2800),
    (1080, 5000),
    (1440, 9000),
    (2160, 16000),
)
# bwdif: the best-looking deinterlacer FFmpeg has that is still fast. parity=auto trusts the
# field order the stream declares; deint=all because a stream flagged interlaced is so
# throughout.
DEINTERLACE = "bwdif=mode=send_frame:parity=auto:deint=all"
# An explicit -force_key_frames list longer than this would approach the kernel's limit on
# one argument (128 KiB); such a video falls back to keyframes on a fixed period.
_MAX_KEYFRAME_LIST_CHARS = 60_000


# Below this many pixels on a side there is no picture to speak of (an H.264 macroblock is
# 16x16), and such "videos" are tracking pixels or mistakes rather than something to watch.
MIN_SIDE = 16
# A source is copied as a rendition only when it is no heavier than this many times the
# bitrate vidbox would give a rendition of its size: players switch between neighbouring
# renditions, and a copied 20 Mbit/s rung next to a 2.8 Mbit/s one stalls on every switch.
COPY_MAX_BITRATE_RATIO = 1.5


@dataclass(frozen=True)
class RenditionPlan:
    name: str  # "720p": the short side, also the folder name
    width: int
    height: int
    video_bitrate: int  # bits per second
    maxrate: int
    bufsize: int
    audio_bitrate: int
    copy: bool  # remux the source's video stream as it is
    audio: str | None  # "copy", "aac" (encode) or None when the source is silent
    audio_stream: int = 0  # which of the source's audio streams (0:a:N)
    deinterlace: bool = False


BROWSER_H264_PROFILES = {"Baseline", "Constrained Baseline", "Main", "High", "Extended"}


def can_copy(probe: Probe) -> bool:
    """Whether browsers can play the source's video stream as it is.

    H.264 in 8-bit 4:2:0 plays everywhere. Rotated or non-square-pixel sources are encoded
    anyway: not every player honours the rotation matrix or pixel aspect of the container.
    Interlaced video would show combing on every progressive screen.
    """
    return (
        probe.video_codec == "h264"
        # Lossless x264 keeps 4:2:0 but uses High 4:4:4 Predictive, which browsers refuse.
        and (probe.video_profile or "High") in BROWSER_H264_PROFILES
        and probe.pix_fmt == "yuv420p"
        and probe.rotation == 0
        and probe.sample_aspect_ratio == "1:1"
        and not probe.interlaced
    )


def too_small(probe: Probe) -> str | None:
    """The FAILED sentence for a source too small to show, else None."""
    if min(probe.width, probe.height) >= MIN_SIDE:
        return None
    return (
        f"This video is {probe.width}x{probe.height} pixels, too small to play; "
        f"it needs at least {MIN_SIDE} pixels on each side."
    )


def plan_ladder(probe: Probe, rungs: Sequence[str], *, copy_top: bool) -> list[RenditionPlan]:
    """Renditions for ``probe``, lowest first.

    A rung ("360p") is a target short side, so portrait videos get the same ladder as
    landscape ones. Rungs above the source are skipped: upscaling only wastes bytes, and
    nothing above the top rung is offered (the original download is there for that). With
    ``copy_top`` the source itself is the top rendition and only rungs strictly below it are
    encoded, when it can be copied at all (``can_copy``), is no larger than the top rung and
    no heavier than ``COPY_MAX_BITRATE_RATIO`` times its rendition's bitrate. A video smaller
    than every rung gets one rendition at its own size, so every video is playable. Raises
    MediaError (permanent) for a source smaller than ``MIN_SIDE``.
    """
    reason = too_small(probe)
    if reason:
        raise MediaError(reason, permanent=True)
    audio = _audio_mode(probe)
    short = probe.short_side
    targets = sorted({int(rung.rstrip("p")) for rung in rungs})
    if copy_top and can_copy(probe) and short <= targets[-1]:
        # Odd-sized H.264 cannot exist in yuv420p, so the source size is already even.
        top = _plan(short, probe.width, probe.height, probe, audio, copy=True)
        if _fits_copy_budget(probe, top):
            below = [t for t in targets if t < short]
            return [*(_scaled_plan(t, probe, audio) for t in below), top]
    plans = [_scaled_plan(t, probe, audio) for t in targets if t <= short]
    if not plans:
        width, height = _even_floor(probe.width), _even_floor(probe.height)
        plans = [_plan(min(width, height), width, height, probe, audio, copy=False)]
    return plans


def _fits_copy_budget(probe: Probe, plan: RenditionPlan) -> bool:
    """Whether the source is light enough to stand in for ``plan``. The keyframe half of
    the budget is judged on the remuxed segments (``playlist.well_segmented``)."""
    bitrate = probe.video_bitrate or probe.bitrate
    if bitrate is None:
        return True  # unknown: the copied segments are measured before they are published
    return bitrate <= COPY_MAX_BITRATE_RATIO * plan.video_bitrate


def _audio_mode(probe: Probe) -> str | None:
    if not probe.has_audio:
        return None
    return "copy" if probe.audio_codec == "aac" else "aac"


def _scaled_plan(target: int, probe: Probe, audio: str | None) -> RenditionPlan:
    short = _even_round(target)
    if probe.is_portrait:
        width, height = short, _even_round(probe.height * short / probe.width)
    else:
        width, height = _even_round(probe.width * short / probe.height), short
    return _plan(target, width, height, probe, audio, copy=False)


def _plan(
    short_side: int, width: int, height: int, probe: Probe, audio: str | None, *, copy: bool
) -> RenditionPlan:
    kbps = _video_kbps(min(width, height))
    if probe.fps > 40:
        kbps = kbps * 3 // 2  # twice the frames cost about half as much again
    video = kbps * 1000
    return RenditionPlan(
        name=rendition_name(short_side),
        width=width,
        height=height,
        video_bitrate=video,
        maxrate=video * 3 // 2,
        bufsize=video * 2,
        audio_bitrate=96_000 if min(width, height) < 480 else 128_000,
        copy=copy,
        audio=audio,
        audio_stream=probe.audio_stream,
        deinterlace=probe.interlaced and not copy,
    )


def _video_kbps(short: int) -> int:
    points = _BITRATE_KBPS
    if short <= points[0][0]:
        return points[0][1] * short // points[0][0]
    for (low_side, low_rate), (high_side, high_rate) in pairwise(points):
        if short <= high_side:
            share = (short - low_side) / (high_side - low_side)
            return round(low_rate + share * (high_rate - low_rate))
    return points[-1][1] * short // points[-1][0]


def _even_round(value: float) -> int:
    # Half up, not Python's half-to-even, so equal inputs round the same way everywhere.
    return max(2, 2 * math.floor(value / 2 + 0.5))


def _even_floor(value: int) -> int:
    return max(2, value - value % 2)


# -- FFmpeg arguments --------------------------------------------------------------------


def thumbnail_args(src: Path, dst: Path, probe: Probe) -> list[str]:
    """A 1280x720 JPEG of the first frame, upright, letterboxed or pillarboxed in black."""
    scale = min(THUMBNAIL_WIDTH / probe.width, THUMBNAIL_HEIGHT / probe.height)
    width = min(THUMBNAIL_WIDTH, _even_round(probe.width * scale))
    height = min(THUMBNAIL_HEIGHT, _even_round(probe.height * scale))
    graph = (
        (DEINTERLACE + "," if probe.interlaced else "") + f"scale={width}:{height},setsar=1,"
        f"pad={THUMBNAIL_WIDTH}:{THUMBNAIL_HEIGHT}:(ow-iw)/2:(oh-ih)/2:color=black"
    )
    return [
        "-hide_banner",
        "-y",
        "-loglevel",
        "warning",
        "-ss",
        "0",
        *input_args(src),
        "-map",
        "0:V:0",
        "-frames:v",
        "1",
        "-vf",
        graph,
        "-q:v",
        "3",
        "-update",
        "1",
        "-f",
        "image2",
        str(dst),
    ]


# Share of frames that may fail to decode before a video counts as broken rather than
# damaged: beyond it the ladder run fails (FFmpeg's own count), below it the video is READY
# with a warning saying where the damage starts.
MAX_DECODE_ERROR_RATE = 0.1

# Quiet FFmpeg that reports its position on stdout for the progress bar.
WITH_PROGRESS = ("-hide_banner", "-y", "-loglevel", "warning", "-nostats", "-progress", "pipe:1")


def remux_args(src: Path, out_dir: Path, plan: RenditionPlan, segment_seconds: int) -> list[str]:
    """Copy the source's video (and AAC audio) into an fMP4 HLS rendition."""
    args = [
        *WITH_PROGRESS,
        *input_args(src),
        "-map",
        "0:V:0",
        "-c:v",
        "copy",
    ]
    args += _audio_args(plan)
    args += _hls_output_args(out_dir / plan.name, segment_seconds)
    return args


def video_encoder_args(plan: RenditionPlan, *, preset: str) -> list[str]:
    """The encoder and its rate control: the one place a hardware encoder would go."""
    return [
        "-c:v",
        "libx264",
        "-preset",
        preset,
        "-profile:v",
        "high",
        "-pix_fmt",
        "yuv420p",
        "-b:v",
        str(plan.video_bitrate),
        "-maxrate",
        str(plan.maxrate),
        "-bufsize",
        str(plan.bufsize),
        # Scene cuts would add keyframes in one rendition and not another.
        "-sc_threshold",
        "0",
    ]


def keyframe_args(
    fps: float,
    segment_seconds: int,
    keyframe_times: Sequence[float] | None = None,
    duration: float | None = None,
) -> list[str]:
    """Keyframes at the same instants in every rendition, so players switch between them.

    With ``keyframe_times`` (where the copied rendition's segments start; empty when it has a
    single segment) keyframes go exactly there and nowhere else, so the HLS muxer cuts every
    rendition at the same points. Otherwise one keyframe every ``segment_seconds``.
    """
    rate = fps if fps > 0 else 30.0
    period = max(1, round(rate * segment_seconds))
    if keyframe_times is not None:
        frame = 1 / rate
        # Half a frame early, so rounding in the playlist never pushes a keyframe one frame
        # late; a time within half a frame of the start is the first frame, a keyframe anyway.
        times = [t - frame / 2 for t in keyframe_times if t > frame / 2]
        listed = ",".join(f"{t:.3f}" for t in times)
        boundaries = [0.0, *times]
        if duration:
            boundaries.append(duration)
        if len(boundaries) > 1 and len(listed) <= _MAX_KEYFRAME_LIST_CHARS:
            longest = max(b - a for a, b in pairwise(boundaries))
            # Longer than any gap: the encoder never adds a keyframe of its own.
            gop = max(period, math.ceil((longest + 1) * rate))
            args = ["-g", str(gop), "-keyint_min", str(gop)]
            return [*args, "-force_key_frames", listed] if listed else args
    return [
        "-g",
        str(period),
        "-keyint_min",
        str(period),
        "-force_key_frames",
        f"expr:gte(t,n_forced*{segment_seconds})",
    ]


def ladder_args(
    src: Path,
    out_dir: Path,
    plans: Sequence[RenditionPlan],
    *,
    segment_seconds: int,
    preset: str,
    probe: Probe,
    keyframe_times: Sequence[float] | None = None,
) -> list[str]:
    """One FFmpeg run that decodes once and encodes every non-copy plan.

    Each rendition is its own HLS output (``<out_dir>/<name>/index.m3u8``); the split filter
    feeds them all from one decode.
    """
    encoded = [plan for plan in plans if not plan.copy]
    if not encoded:
        raise ValueError("no rendition to encode")
    labels = "".join(f"[split{i}]" for i in range(len(encoded)))
    # Fields are woven into frames before scaling, or every rendition shows combing; one
    # frame per frame (not per field) keeps the frame rate the keyframes are planned for.
    deinterlace = DEINTERLACE + "," if any(plan.deinterlace for plan in encoded) else ""
    chains = [f"[0:V:0]{deinterlace}split={len(encoded)}{labels}"]
    for i, plan in enumerate(encoded):
        chains.append(f"[split{i}]scale={plan.width}:{plan.height},setsar=1[out{i}]")
    args = [
        *WITH_PROGRESS,
        "-max_error_rate",
        str(MAX_DECODE_ERROR_RATE),
        *input_args(src),
        "-filter_complex",
        ";".join(chains),
    ]
    gop = keyframe_args(probe.fps, segment_seconds, keyframe_times, probe.duration_seconds)
    for i, plan in enumerate(encoded):
        args += ["-map", f"[out{i}]"]
        args += video_encoder_args(plan, preset=preset)
        args += gop
        args += _audio_args(plan)
        args += _hls_output_args(out_dir / plan.name, segment_seconds)
    return args


def locate_damage_args(src: Path) -> list[str]:
    """Decode the video until the first error and stop there (``-xerror``): the last
    progress position is where the damage starts. Run only for a video known to be damaged."""
    return [*WITH_PROGRESS, "-xerror", *input_args(src), "-map", "0:V:0", "-f", "null", "-"]


def _audio_args(plan: RenditionPlan) -> list[str]:
    if plan.audio is None:
        return []
    stream = f"0:a:{plan.audio_stream}"
    if plan.audio == "copy":
        return ["-map", stream, "-c:a", "copy"]
    return ["-map", stream, "-c:a", "aac", "-b:a", str(plan.audio_bitrate), "-ac", "2"]


def _hls_output_args(rendition_dir: Path, segment_seconds: int) -> list[str]:
    return [
        "-f",
        "hls",
        "-hls_time",
        str(segment_seconds),
        "-hls_playlist_type",
        "vod",
        "-hls_segment_type",
        "fmp4",
        "-hls_flags",
        "independent_segments",
        "-hls_fmp4_init_filename",
        INIT_SEGMENT,
        "-hls_segment_filename",
        str(rendition_dir / SEGMENT_PATTERN),
        "-start_number",
        "1",
        str(rendition_dir / MEDIA_PLAYLIST),
    ]
