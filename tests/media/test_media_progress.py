"""FFmpeg's -progress output to seconds and percent."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from vidbox.media import ProgressTracker, parse_progress_line


@pytest.mark.parametrize(
    ("line", "seconds"),
    [
        ("out_time_us=2800000", 2.8),
        ("out_time_us=2800000\n", 2.8),
        ("out_time_us=N/A", 0.0),
        ("out_time_us=-23220", 0.0),
        ("out_time_ms=2800000", None),  # despite its name, also microseconds; ignored
        ("frame=50", None),
        ("progress=continue", None),
        ("", None),
    ],
)
def test_parse_progress_line(line: str, seconds: float | None) -> None:
    assert parse_progress_line(line) == seconds


def test_tracker_over_captured_output(captured: Callable[[str], str]) -> None:
    tracker = ProgressTracker(duration=3.0)
    seen = []
    for line in captured("progress_pipe").splitlines():
        if tracker.feed(line):
            seen.append(tracker.percent)
    assert seen[-1] == 100.0
    assert seen == sorted(seen)
    assert tracker.seconds_done == pytest.approx(3.0)
    assert tracker.finished


def test_tracker_never_goes_backwards_and_stays_below_100_until_the_end() -> None:
    tracker = ProgressTracker(duration=10.0)
    assert tracker.feed("out_time_us=4000000")
    assert tracker.percent == pytest.approx(40.0)
    assert not tracker.feed("out_time_us=3000000")
    assert tracker.seconds_done == 4.0
    assert tracker.feed("out_time_us=12000000")  # audio a little longer than the duration
    assert tracker.percent == pytest.approx(99.9)
    assert tracker.feed("progress=end")
    assert tracker.percent == 100.0
    assert not tracker.feed("progress=end")


def test_tracker_without_duration_counts_seconds_only() -> None:
    tracker = ProgressTracker(duration=None)
    assert tracker.feed("out_time_us=1500000")
    assert tracker.seconds_done == 1.5
    assert tracker.percent is None
