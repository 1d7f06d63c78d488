"""What a video file contains, read from FFmpeg's own description of its input.

There is no ffprobe in imageio-ffmpeg, so the probe runs ``ffmpeg -i FILE`` and also decodes
the first frame into the null muxer: that proves the video really decodes and makes FFmpeg
print the size of the frame as displayed (after applying the rotation).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from vidbox.media.errors import NO_VIDEO_STREAM, NOT_A_VIDEO, MediaError, diagnose_failure
from vidbox.media.runner import run_ffmpeg

# FFmpeg prints several lines per chapter and metadata tag; the Input section must fit.
PROBE_STDERR_LINES = 5000


@dataclass(frozen=True)
class Probe:
    duration_seconds: float | None
    width: int  # displayed: after rotation and after a non-square sample aspect ratio
    height: int
    coded_width: int
    coded_height: int
    rotation: int  # clockwise degrees a player turns the picture: 0, 90, 180 or 270
    fps: float
    video_codec: str  # FFmpeg's codec name: h264, hevc, vp9...
    video_profile: str | None  # "High", "Constrained Baseline", "Profile 0"...
    pix_fmt: str
    audio_codec: str | None
    bitrate: int | None  # whole file, bits per second
    sample_aspect_ratio: str  # "1:1" for square pixels
    has_audio: bool
    container: str  # FFmpeg's demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    video_bitrate: int | None = None  # the video stream alone, when the container says
    interlaced: bool = False  # fields, not frames: must be deinterlaced before scaling
    audio_stream: int = 0  # which audio stream (0:a:N) renditions carry: the default one
    audio_tracks: int = 0  # audio streams in the file
    subtitle_tracks: int = 0

    @property
    def is_portrait(self) -> bool:
        return self.height > self.width

    @property
    def short_side(self) -> int:
        return min(self.width, self.height)


# Containers that hold media themselves. Playlists and indirections (hls, dash, concat,
# image2 patterns...) are refused: an upload named .mp4 that is really a playlist would make
# FFmpeg read other files on the server, or the network, into the published video.
SAFE_DEMUXERS = (
    "mov,matroska,avi,mpegts,mpeg,flv,asf,ogg,mxf,dv,nut,ivf,gif,"
    "h264,hevc,m4v,mpegvideo,yuv4mpegpipe"
)


def input_args(path: Path) -> list[str]:
    """``-i path`` for an uploaded file, restricted to local media containers."""
    return [
        "-protocol_whitelist",
        "file",
        "-format_whitelist",
        SAFE_DEMUXERS,
        "-i",
        # file: keeps a colon in the name from being read as a protocol.
        f"file:{path}",
    ]


def probe_args(path: Path) -> list[str]:
    """FFmpeg arguments whose stderr ``parse_probe`` reads."""
    # 0:V skips cover art and thumbnails that containers store as extra video streams.
    return ["-hide_banner", *input_args(path), "-map", "0:V:0", "-frames:v", "1", "-f", "null", "-"]


async def probe(path: Path, limits: MediaLimits | None = None) -> Probe:
    """Describe ``path``; raise MediaError when it is no decodable video, or (permanent) when
    it is beyond ``limits``."""
    stderr = await run_ffmpeg(probe_args(path), stderr_lines=PROBE_STDERR_LINES)
    info = parse_probe(stderr)
    if limits is not None:
        check_limits(info, limits, declared_fps=declared_fps(stderr))
    return info


def declared_fps(stderr: str) -> float | None:
    """The video stream's average frame rate as FFmpeg prints it ("25 fps"), or None. Not the
    "tbr" that Probe.fps falls back to: WebM from browsers says "1k tbr" at 30 frames a second."""
    lines = stderr.splitlines()
    start = next((i for i, line in enumerate(lines) if _INPUT.match(line)), None)
    if start is None:
        return None
    section = []
    for line in lines[start:]:
        if line.startswith("Output #0"):
            break
        section.append(line)
    index = _first_stream(section, "Video", skip_attached=True)
    if index is None:
        return None
    rates = {
        kind: float(number) * (1000 if kilo else 1)
        for number, kilo, kind in _RATE.findall(section[index])
    }
    fps = rates.get("fps")
    # A rate equal to the time base is FFmpeg echoing the time base when it could not
    # estimate one (variable frame rate Matroska: "1k fps, 1k tbr, 1k tbn").
    if fps is None or fps == rates.get("tbn"):
        return None
    return fps


_RATE = re.compile(r"([\d.]+)(k?) (fps|tbr|tbn)\b")


@dataclass(frozen=True)
class MediaLimits:
    """What a video may cost. A few megabytes can hold hours of black frames or an enormous
    frame size, which would take the box days or all its memory to encode."""

    max_pixels: int  # per frame
    max_duration_seconds: float
    max_fps: float


def check_limits(info: Probe, limits: MediaLimits, *, declared_fps: float | None = None) -> None:
    """Raise a permanent MediaError with a sentence when ``info`` is beyond ``limits``. The
    frame rate is only checked when the file declares one (``declared_fps``)."""
    # The larger of the coded and the displayed frame: decoding costs the one, scaling the other.
    width, height = max(
        (info.coded_width, info.coded_height), (info.width, info.height), key=lambda s: s[0] * s[1]
    )
    if width * height > limits.max_pixels:
        raise MediaError(
            f"This video's frames are {width}x{height} ({_megapixels(width * height)}); "
            f"this server accepts at most {_megapixels(limits.max_pixels)} per frame.",
            permanent=True,
        )
    duration = info.duration_seconds
    if duration is not None and duration > limits.max_duration_seconds:
        raise MediaError(
            f"This video is {_hours(duration)} long; this server accepts at most "
            f"{_hours(limits.max_duration_seconds)}.",
            permanent=True,
        )
    if declared_fps is not None and declared_fps > limits.max_fps:
        raise MediaError(
            f"This video has {declared_fps:g} frames per second; this server accepts at most "
            f"{limits.max_fps:g}.",
            permanent=True,
        )


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} megapixels"


def _hours(seconds: float) -> str:
    hours = seconds / 3600
    if hours < 1:
        return f"{seconds / 60:.0f} minutes"
    return f"{hours:.1f} hours" if hours % 1 else f"{hours:.0f} hours"


_INPUT = re.compile(r"^Input #0, (?P<format>.+), from '")
_DURATION = re.compile(
    r"^\s*Duration: (?P<duration>N/A|\d+:\d\d:\d\d(?:\.\d+)?)"
    r"(?:, start: [^,]+)?, bitrate: (?P<bitrate>N/A|\d+ kb/s)"
)
_STREAM = re.compile(r"^\s*Stream #\d+:\d+\S*: (?P<kind>Video|Audio|Subtitle|Data|Attachment): ")
_SIZE = re.compile(r"^(\d+)x(\d+)")
_SAR = re.compile(r"SAR (\d+):(\d+)")
_FPS = re.compile(r"([\d.]+)(k?) (fps|tbr)\b")
_PROFILE = re.compile(r"^\w+ \(([^)]*)\)")
_DISPLAY_MATRIX = re.compile(r"display ?matrix: rotation of (-?[\d.]+) degrees", re.I)
_ROTATE_TAG = re.compile(r"^\s*rotate\s*: (-?\d+)\s*$")
_KBPS = re.compile(r"(\d+) kb/s")
_FIELD_ORDERS = ("top first", "bottom first", "top coded first", "bottom coded first")
_FRAMES_DONE = re.compile(r"^frame=\s*(\d+)")


def parse_probe(stderr: str) -> Probe:
    """Read ``probe_args`` output. Raises MediaError (permanent) when there is no video."""
    lines = stderr.splitlines()
    input_start = next((i for i, line in enumerate(lines) if _INPUT.match(line)), None)
    if input_start is None:
        raise _failure(stderr)
    output_start = next(
        (i for i, line in enumerate(lines) if line.startswith("Output #0")), len(lines)
    )
    input_lines = lines[input_start:output_start]
    header = _INPUT.match(lines[input_start])
    if header is None:
        raise _failure(stderr)
    container = header.group("format")

    duration = bitrate = None
    for line in input_lines:
        match = _DURATION.match(line)
        if match:
            duration = _parse_clock(match.group("duration"))
            bitrate = _parse_kbps(match.group("bitrate"))
            break

    video_index = _first_stream(input_lines, "Video", skip_attached=True)
    if video_index is None:
        raise MediaError(NO_VIDEO_STREAM, permanent=True)
    video = _stream_fields(input_lines[video_index])
    audio_lines = _streams(input_lines, "Audio")
    # The track a player would pick: the one marked default, else the first.
    audio_stream = next((i for i, line in enumerate(audio_lines) if "(default)" in line), 0)
    audio_codec = _codec(_stream_fields(audio_lines[audio_stream])) if audio_lines else None

    coded_width, coded_height = _size(video)
    sar = _sar(input_lines[video_index])
    rotation = _rotation(input_lines[video_index + 1 :])

    decoded = _decoded_stream(lines[output_start:])
    if decoded is None or not _first_frame_decoded(lines):
        raise _failure(stderr)
    # The null output shows the frame as it will be filtered: already turned upright, with
    # the sample aspect ratio turned along with it.
    shown_width, shown_height = _size(_stream_fields(decoded))
    shown_sar = _sar(decoded)
    width, height = _display_size(shown_width, shown_height, shown_sar)

    return Probe(
        duration_seconds=duration,
        width=width,
        height=height,
        coded_width=coded_width,
        coded_height=coded_height,
        rotation=rotation,
        fps=_fps(input_lines[video_index]),
        video_codec=_codec(video),
        video_profile=_profile(video[0]),
        pix_fmt=video[1].split("(")[0] if len(video) > 1 else "",
        audio_codec=audio_codec,
        bitrate=bitrate,
        sample_aspect_ratio=f"{sar.numerator}:{sar.denominator}",
        has_audio=audio_codec is not None,
        container=container,
        video_bitrate=_stream_kbps(video),
        interlaced=_interlaced(video),
        audio_stream=audio_stream,
        audio_tracks=len(audio_lines),
        subtitle_tracks=len(_streams(input_lines, "Subtitle")),
    )


def _failure(stderr: str) -> MediaError:
    diagnosis = diagnose_failure(stderr, 0.0)
    return MediaError(diagnosis.reason, permanent=diagnosis.permanent)


def _first_stream(lines: list[str], kind: str, *, skip_attached: bool = False) -> int | None:
    for i, line in enumerate(lines):
        match = _STREAM.match(line)
        if not match or match.group("kind") != kind:
            continue
        if skip_attached and "(attached pic)" in line:
            continue
        return i
    return None


def _streams(lines: list[str], kind: str) -> list[str]:
    found = []
    for line in lines:
        match = _STREAM.match(line)
        if match and match.group("kind") == kind:
            found.append(line)
    return found


def _stream_kbps(fields: list[str]) -> int | None:
    for field in fields:
        match = _KBPS.fullmatch(field)
        if match:
            return int(match.group(1)) * 1000
    return None


def _interlaced(fields: list[str]) -> bool:
    """The field order FFmpeg prints with the pixel format: "yuv420p(tv, top first)"."""
    details = fields[1] if len(fields) > 1 else ""
    return any(order in details for order in _FIELD_ORDERS)


def _stream_fields(line: str) -> list[str]:
    """The comma-separated fields after "Video: ", not splitting inside parentheses."""
    body = line.split(": ", 1)[1].split(": ", 1)[1]
    fields: list[str] = []
    depth = 0
    current = ""
    for char in body:
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        if char == "," and depth == 0:
            fields.append(current.strip())
            current = ""
        else:
            current += char
    fields.append(current.strip())
    return fields


def _codec(fields: list[str]) -> str:
    return fields[0].split()[0]


def _profile(first_field: str) -> str | None:
    match = _PROFILE.match(first_field)
    # "(avc1 / 0x31637661)" is the codec tag, not a profile.
    if match and " / 0x" not in match.group(1):
        return match.group(1)
    return None


def _size(fields: list[str]) -> tuple[int, int]:
    for field in fields:
        match = _SIZE.match(field)
        if match:
            return int(match.group(1)), int(match.group(2))
    raise MediaError(NOT_A_VIDEO, permanent=True)


def _sar(line: str) -> Fraction:
    match = _SAR.search(line)
    if not match or int(match.group(1)) == 0 or int(match.group(2)) == 0:
        return Fraction(1)
    return Fraction(int(match.group(1)), int(match.group(2)))


def _fps(line: str) -> float:
    values = {kind: float(num) * (1000 if k else 1) for num, k, kind in _FPS.findall(line)}
    return values.get("fps") or values.get("tbr") or 0.0


def _rotation(following: list[str]) -> int:
    """Clockwise rotation from the side data or the legacy rotate tag of one stream."""
    for line in following:
        if _STREAM.match(line):
            break
        match = _DISPLAY_MATRIX.search(line)
        if match:
            # The display matrix angle is counter-clockwise.
            return round(-float(match.group(1)) / 90) * 90 % 360
        match = _ROTATE_TAG.match(line)
        if match:
            return round(int(match.group(1)) / 90) * 90 % 360
    return 0


def _decoded_stream(output_lines: list[str]) -> str | None:
    return next((line for line in output_lines if _STREAM.match(line)), None)


def _first_frame_decoded(lines: list[str]) -> bool:
    for line in reversed(lines):
        match = _FRAMES_DONE.match(line.strip())
        if match:
            return int(match.group(1)) > 0
    return False


def _display_size(width: int, height: int, sar: Fraction) -> tuple[int, int]:
    if sar == 1:
        return width, height
    # Stretch one side, never shrink: pixels wider than tall widen the picture.
    if sar > 1:
        return round(width * sar), height
    return width, round(height / sar)


def _parse_clock(text: str) -> float | None:
    if text == "N/A":
        return None
    hours, minutes, seconds = text.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _parse_kbps(text: str) -> int | None:
    if text == "N/A":
        return None
    return int(text.split()[0]) * 1000
