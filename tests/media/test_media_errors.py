"""Failure sentences from captured FFmpeg stderr."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from vidbox.media import MediaError, describe_failure, diagnose_failure, format_timestamp
from vidbox.media.errors import damaged_from, describe_incomplete, has_decode_errors


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0:00"), (42.9, "0:42"), (61, "1:01"), (3723, "1:02:03"), (-1, "0:00")],
)
def test_format_timestamp(seconds: float, shown: str) -> None:
    assert format_timestamp(seconds) == shown


def without_error_rate(stderr: str) -> str:
    """A run that stopped on damage, rather than finishing with too many decode errors."""
    return "\n".join(line for line in stderr.splitlines() if "error rate" not in line)


def test_corrupt_stream_names_where_it_breaks(captured: Callable[[str], str]) -> None:
    stderr = without_error_rate(captured("failure_corrupt_decode"))
    assert describe_failure(stderr, 42.5) == "The video stream is corrupt after 0:42."
    assert diagnose_failure(stderr, 42.5).permanent


def test_corrupt_from_the_start(captured: Callable[[str], str]) -> None:
    reason = describe_failure(without_error_rate(captured("failure_corrupt_decode")), 0.0)
    assert reason == "The video stream is corrupt from the start."


def test_disk_full_is_transient(captured: Callable[[str], str]) -> None:
    diagnosis = diagnose_failure(captured("failure_disk_full"), 1.0)
    assert diagnosis.reason == "The disk is full."
    assert not diagnosis.permanent


@pytest.mark.parametrize(
    "capture", ["truncated_moov_missing", "text_named_mp4"], ids=["truncated", "text"]
)
def test_unreadable_input(captured: Callable[[str], str], capture: str) -> None:
    diagnosis = diagnose_failure(captured(capture), 0.0)
    assert diagnosis.reason == "This file is not a video FFmpeg can read."
    assert diagnosis.permanent


def test_no_video_stream(captured: Callable[[str], str]) -> None:
    diagnosis = diagnose_failure(captured("audio_only"), 0.0)
    assert diagnosis.reason == "This file has no video stream."
    assert diagnosis.permanent


def test_killed_process_is_transient() -> None:
    diagnosis = diagnose_failure("frame=  100 fps=25", 4.0, returncode=-9)
    assert diagnosis.reason == "FFmpeg was stopped by the system (signal 9) before it finished."
    assert not diagnosis.permanent


def test_missing_output_folder_is_not_blamed_on_the_upload() -> None:
    stderr = "[out#0/hls @ 0x55] Failed to open file 'x/init.mp4': No such file or directory"
    diagnosis = diagnose_failure(stderr, 0.0)
    assert diagnosis.reason == "A folder for the processed video is missing."
    assert not diagnosis.permanent


def test_missing_decoder_is_permanent() -> None:
    stderr = "[vist#0:0 @ 0x55d] Decoder (codec cinepak) not found for input stream #0:0"
    diagnosis = diagnose_failure(stderr, 0.0)
    assert diagnosis.reason == "This video uses a format FFmpeg cannot decode (cinepak)."
    assert diagnosis.permanent


def test_unknown_failure_quotes_ffmpeg_without_addresses_and_may_be_retried() -> None:
    stderr = "Input #0, mov...\n[libx264 @ 0x5612ab] something strange happened.\n"
    diagnosis = diagnose_failure(stderr, 3.0)
    assert diagnosis.reason == "FFmpeg failed unexpectedly (something strange happened)."
    assert not diagnosis.permanent


def test_incomplete_output_with_decoder_complaints_is_corruption(
    captured: Callable[[str], str],
) -> None:
    stderr = captured("failure_corrupt_decode")
    assert describe_incomplete(stderr, 61.0, 120.0) == "The video stream is corrupt after 1:01."
    assert describe_incomplete(stderr, 119.5, 120.0) is None
    # Short output without complaints: audio outlasting the video, not damage.
    assert describe_incomplete("", 61.0, 120.0) is None
    assert describe_incomplete(stderr, 61.0, None) is None


def test_media_error_carries_reason_and_permanence() -> None:
    error = MediaError("The disk is full.", permanent=False)
    assert str(error) == "The disk is full."
    assert error.reason == "The disk is full."
    assert not error.permanent


def test_too_many_decode_errors_say_how_much_is_damaged(captured: Callable[[str], str]) -> None:
    assert describe_failure(captured("failure_corrupt_decode"), 42.5) == (
        "83% of the video's frames are damaged, too many to play."
    )
    stderr = (
        "[h264 @ 0x5563] Invalid NAL unit size (166579060 > 2067).\n"
        "[vist#0:0/h264 @ 0x55] [dec:h264 @ 0x55] Decode error rate 0.412 exceeds maximum 0.1\n"
    )
    diagnosis = diagnose_failure(stderr, 9.5, 69)
    assert diagnosis.reason == "41% of the video's frames are damaged, too many to play."
    assert diagnosis.permanent


def test_damage_warning_names_where_it_starts() -> None:
    assert damaged_from(11.8) == (
        "The video is damaged from 0:11; the picture may break up or freeze from there."
    )
    assert "in places" in damaged_from(None)
    assert has_decode_errors("[h264 @ 0x1] Invalid NAL unit size (1 > 2).")
    assert not has_decode_errors("[libx264 @ 0x1] frame I:3 Avg QP:20.00 size: 1234")
