"""FFmpeg's machine-readable progress (``-progress pipe:1``) turned into seconds and percent."""

from __future__ import annotations


def parse_progress_line(line: str) -> float | None:
    """Seconds of output written, from an ``out_time_us=`` line; None for any other line.

    FFmpeg prints ``out_time_us=N/A`` before the first frame and small negative values while
    an edit list is skipped; both read as 0.
    """
    key, sep, value = line.strip().partition("=")
    if not sep or key != "out_time_us":
        return None
    try:
        microseconds = int(value)
    except ValueError:
        return 0.0
    return max(0, microseconds) / 1_000_000


class ProgressTracker:
    """Accumulates progress lines. ``seconds_done`` never goes backwards."""

    def __init__(self, duration: float | None) -> None:
        self.duration = duration if duration and duration > 0 else None
        self.seconds_done = 0.0
        self.finished = False

    def feed(self, line: str) -> bool:
        """Take one line; True when it moved the progress forward (or finished the run)."""
        if line.strip() == "progress=end":
            was_finished = self.finished
            self.finished = True
            return not was_finished
        seconds = parse_progress_line(line)
        if seconds is None or seconds <= self.seconds_done:
            return False
        self.seconds_done = seconds
        return True

    @property
    def percent(self) -> float | None:
        """0-100 against the known duration; 100 once FFmpeg says it ended; None if unknown."""
        if self.finished:
            return 100.0
        if self.duration is None:
            return None
        return min(99.9, 100.0 * self.seconds_done / self.duration)
