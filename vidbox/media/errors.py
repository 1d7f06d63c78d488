"""Why FFmpeg failed, in one sentence a person understands.

FFmpeg explains failures in its own vocabulary ("moov atom not found", "Invalid NAL unit
size"). Users see only the sentence chosen here; the raw stderr goes to the log. Keeping the
mapping pure lets it be tested over captured outputs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NOT_A_VIDEO = "This file is not a video FFmpeg can read."
NO_VIDEO_STREAM = "This file has no video stream."
DISK_FULL = "The disk is full."


class MediaError(Exception):
    """Processing a video failed.

    ``reason`` is one sentence for the person who uploaded the video. ``permanent`` says whether
    retrying can help: broken or unsupported media will fail the same way again, while a killed
    process, a timeout or a full disk may not.
    """

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


@dataclass(frozen=True)
class Diagnosis:
    reason: str
    permanent: bool


def format_timestamp(seconds: float) -> str:
    """0:42, 12:03 or 1:02:03, the way video players show positions."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


# Decoder and demuxer complaints that mean the bytes of the video itself are damaged.
_CORRUPTION_MARKERS = (
    "decode error rate",
    "invalid nal unit",
    "error splitting the input into nal units",
    "decoding error",
    "error while decoding",
    "corrupt input packet",
    "packet corrupt",
    "partial file",
    "concealing",
    "invalid data found when processing input",
)

_UNREADABLE_MARKERS = (
    "error opening input",
    "moov atom not found",
    "ebml header parsing failed",
)

_MISSING_DECODER = re.compile(
    r"decoder \(codec (\w+)\) not found|unsupported codec with id \d+ for input stream", re.I
)
# FFmpeg's own count, against -max_error_rate: "Decode error rate 0.41 exceeds maximum 0.1".
_ERROR_RATE = re.compile(r"decode error rate ([\d.]+) exceeds maximum", re.I)
_ADDRESS_PREFIX = re.compile(r"^(\[[^\]]*@ 0x[0-9a-f]+\]\s*)+", re.I)


def _has(text: str, markers: tuple[str, ...]) -> bool:
    return any(marker in text for marker in markers)


def diagnose_failure(stderr: str, seconds_done: float, returncode: int | None = None) -> Diagnosis:
    """Reason and permanence for a failed FFmpeg run.

    ``seconds_done`` is how far into the video FFmpeg got (from its progress output), used to
    say where a corrupt stream breaks. ``returncode`` lets a process killed by a signal be told
    apart from a media problem.
    """
    low = stderr.lower()
    if "no space left on device" in low or "disk quota exceeded" in low:
        return Diagnosis(DISK_FULL, permanent=False)
    if returncode is not None and returncode < 0:
        return Diagnosis(
            f"FFmpeg was stopped by the system (signal {-returncode}) before it finished.",
            permanent=False,
        )
    if "cannot allocate memory" in low or "out of memory" in low:
        return Diagnosis("The server ran out of memory.", permanent=False)
    if "permission denied" in low:
        return Diagnosis("vidbox is not allowed to read or write a media file.", permanent=False)
    if "no such file or directory" in low:
        if "error opening input" in low:
            return Diagnosis("The uploaded file is missing on the server.", permanent=False)
        return Diagnosis("A folder for the processed video is missing.", permanent=False)
    if "received signal" in low or "exiting normally, received" in low:
        return Diagnosis("FFmpeg was interrupted before it finished.", permanent=False)
    missing = _MISSING_DECODER.search(stderr)
    if missing:
        codec = missing.group(1)
        detail = f" ({codec})" if codec else ""
        return Diagnosis(f"This video uses a format FFmpeg cannot decode{detail}.", permanent=True)
    if "matches no streams" in low and "0:v" in low:
        return Diagnosis(NO_VIDEO_STREAM, permanent=True)
    rate = _ERROR_RATE.search(stderr)
    if rate:
        share = round(100 * float(rate.group(1)))
        return Diagnosis(f"{share}% of the video's frames are damaged, too many to play.", True)
    if _has(low, _UNREADABLE_MARKERS):
        return Diagnosis(NOT_A_VIDEO, permanent=True)
    if _has(low, _CORRUPTION_MARKERS):
        return Diagnosis(corrupt_after(seconds_done), permanent=True)
    line = _last_error_line(stderr)
    detail = f" ({line})" if line else ""
    # Unknown failures are retried: they are as likely to be the server as the file.
    return Diagnosis(f"FFmpeg failed unexpectedly{detail}.", permanent=False)


def describe_failure(stderr: str, seconds_done: float) -> str:
    """The sentence shown to the user for a failed FFmpeg run."""
    return diagnose_failure(stderr, seconds_done).reason


def describe_incomplete(stderr: str, seconds_done: float, duration: float | None) -> str | None:
    """A sentence when FFmpeg exited cleanly but stopped early on damaged data, else None.

    FFmpeg exits 0 on a truncated file whose index is intact: it decodes what is there and
    complains on stderr. Output shorter than the source *and* a complaint means the upload is
    damaged; a short output alone can be a source whose audio outlasts its video.
    """
    if duration is None or duration <= 0:
        return None
    if seconds_done >= duration - max(1.0, 0.05 * duration):
        return None
    if not _has(stderr.lower(), _CORRUPTION_MARKERS):
        return None
    return corrupt_after(seconds_done)


def has_decode_errors(stderr: str) -> bool:
    """Whether a run that finished complained about damaged video data on the way."""
    return _has(stderr.lower(), _CORRUPTION_MARKERS)


def damaged_from(seconds: float | None) -> str:
    """The warning shown with a READY video whose renditions have decode errors."""
    if seconds is None:
        return "The video is damaged in places; the picture may break up or freeze there."
    return (
        f"The video is damaged from {format_timestamp(seconds)}; "
        "the picture may break up or freeze from there."
    )


def corrupt_after(seconds_done: float) -> str:
    if seconds_done < 1:
        return "The video stream is corrupt from the start."
    return f"The video stream is corrupt after {format_timestamp(seconds_done)}."


def _last_error_line(stderr: str) -> str:
    for raw in reversed(stderr.splitlines()):
        line = _ADDRESS_PREFIX.sub("", raw).strip()
        if line and not line.startswith(("frame=", "[out#", "video:", "Conversion failed")):
            return line[:120].rstrip(".")
    return ""
