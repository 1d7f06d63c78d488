"""Leftover FFmpeg processes: only the recorded process is ever killed."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from tests.support import wait_until
from vidbox.jobs.leftovers import kill_leftover, process_tag, runner_id_of
from vidbox.media import ffmpeg_exe

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def test_kill_leftover_checks_the_process_is_the_recorded_ffmpeg(tmp_path: Path) -> None:
    command = [ffmpeg_exe(), "-nostdin", "-re", "-f", "lavfi", "-i", "testsrc2", "-f", "null", "-"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: process_tag(process.pid), what="FFmpeg to start")
        tag = process_tag(process.pid)
        assert tag is not None
        pid, _, started = tag.partition(":")
        # The same PID with another start time is another process (a PID reused): untouched.
        assert kill_leftover([f"{pid}:{int(started) + 1}"]) == 0
        assert process.poll() is None
        assert kill_leftover([tag]) == 1
        assert process.wait(timeout=10) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_runner_id_of_worker_names() -> None:
    assert runner_id_of("box:12:0123456789abcdef/media0") == "0123456789abcdef"
    assert runner_id_of("box:12:0123abcd") == "0123abcd"
    assert runner_id_of("not a worker") is None
    assert runner_id_of(None) is None
