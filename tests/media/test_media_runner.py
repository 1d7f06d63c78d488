"""run_ffmpeg against the real FFmpeg: progress, failures, cancellation, timeouts."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from vidbox.media import MediaError, ffmpeg_exe, run_ffmpeg
from vidbox.media import runner as runner_module

# -re reads the lavfi source in real time, so the run lasts long enough to be interrupted.
SLOW_RUN = [
    "-hide_banner",
    "-nostats",
    "-progress",
    "pipe:1",
    "-re",
    "-f",
    "lavfi",
    "-i",
    "testsrc2=size=160x120:rate=25:duration=60",
    "-f",
    "null",
    "-",
]
QUICK_RUN = [
    "-hide_banner",
    "-nostats",
    "-progress",
    "pipe:1",
    "-f",
    "lavfi",
    "-i",
    "testsrc2=size=320x240:rate=25:duration=3",
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-f",
    "null",
    "-",
]


def ffmpeg_children() -> list[int]:
    """Child processes of this test process that run FFmpeg, zombies included."""
    exe = ffmpeg_exe().encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == os.getpid() and cmdline.startswith(exe):
            found.append(int(entry.name))
    return found


async def run_until_progress_then(action: str) -> tuple[list[int], BaseException | None]:
    """Start the slow run, wait for its first progress report, then cancel or fail it."""
    started = asyncio.Event()

    def on_progress(percent: float) -> None:
        started.set()
        if action == "raise":
            raise RuntimeError("the job's database went away")

    task = asyncio.create_task(run_ffmpeg(SLOW_RUN, duration=60, on_progress=on_progress))
    await asyncio.wait_for(started.wait(), 30)
    running = ffmpeg_children()
    if action == "cancel":
        task.cancel()
    try:
        await asyncio.wait_for(task, 30)
    except BaseException as exc:
        return running, exc
    return running, None


def test_progress_is_reported_in_increasing_percent() -> None:
    seen: list[float] = []

    async def on_progress(percent: float) -> None:  # coroutine callbacks are awaited
        seen.append(percent)

    stderr = asyncio.run(run_ffmpeg(QUICK_RUN, duration=3.0, on_progress=on_progress))
    assert seen, "no progress reported"
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert seen[-1] == 100.0
    assert "libx264" in stderr


def test_cancelling_stops_and_reaps_ffmpeg() -> None:
    running, raised = asyncio.run(run_until_progress_then("cancel"))
    assert len(running) == 1
    assert isinstance(raised, asyncio.CancelledError)
    assert ffmpeg_children() == []


def test_failing_progress_callback_stops_ffmpeg_and_propagates() -> None:
    running, raised = asyncio.run(run_until_progress_then("raise"))
    assert len(running) == 1
    assert isinstance(raised, RuntimeError)
    assert ffmpeg_children() == []


def test_ffmpeg_ignoring_q_is_terminated(monkeypatch: pytest.MonkeyPatch) -> None:
    # -nostdin makes FFmpeg deaf to "q"; the runner must escalate to signals.
    monkeypatch.setattr(runner_module, "STOP_GRACE_SECONDS", 0.2)
    args = ["-nostdin", *SLOW_RUN]

    async def scenario() -> BaseException:
        started = asyncio.Event()
        task = asyncio.create_task(
            run_ffmpeg(args, duration=60, on_progress=lambda _: started.set())
        )
        await asyncio.wait_for(started.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError) as caught:
            await task
        return caught.value

    assert isinstance(asyncio.run(scenario()), asyncio.CancelledError)
    assert ffmpeg_children() == []


def test_timeout_is_a_transient_media_error() -> None:
    with pytest.raises(MediaError) as caught:
        asyncio.run(run_ffmpeg(SLOW_RUN, duration=60, timeout=1.0))
    assert caught.value.reason == "Processing took longer than 1 second and was stopped."
    assert not caught.value.permanent
    assert ffmpeg_children() == []


def test_failure_gives_a_sentence_and_logs_the_stderr_tail(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "gone.mp4"
    with caplog.at_level(logging.WARNING, logger="vidbox.media"), pytest.raises(MediaError) as e:
        asyncio.run(run_ffmpeg(["-hide_banner", "-i", str(missing), "-f", "null", "-"]))
    assert e.value.reason == "The uploaded file is missing on the server."
    assert not e.value.permanent
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "vidbox.media")
    assert "No such file or directory" in logged
    assert str(missing) in logged


def test_stderr_is_kept_to_a_bounded_tail() -> None:
    chatty = ["-v", "debug", "-f", "lavfi", "-i", "testsrc2=size=64x64:duration=1", "-f", "null"]
    stderr = asyncio.run(run_ffmpeg([*chatty, "-"], stderr_lines=50))
    lines = stderr.splitlines()
    assert len(lines) == 50
    # The tail, not the head: the banner and input description are gone, the summary is kept.
    assert not any(line.startswith("ffmpeg version") for line in lines)
    assert any("video:" in line for line in lines)
