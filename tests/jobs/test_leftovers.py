"""What dead runners leave: only the recorded FFmpeg is killed, their jobs are put back."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from tests.jobs.helpers import get_job, run, set_job
from tests.support import wait_until
from vidbox.config import Settings
from vidbox.jobs import MEDIA_LANE
from vidbox.jobs.leftovers import (
    CRASHED_MESSAGE,
    RunnerLock,
    kill_leftover,
    process_tag,
    recover_dead_runners,
    runner_id_of,
)
from vidbox.jobs.queue import enqueue
from vidbox.media import ffmpeg_exe
from vidbox.models import JobState
from vidbox.services import open_services

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


def test_a_job_that_keeps_crashing_the_server_uses_up_its_attempts(settings: Settings) -> None:
    async def go() -> None:
        async with open_services(settings) as services:
            db = services.db
            async with db.session() as session:
                job = await enqueue(session, "transcode", {}, lane=MEDIA_LANE)
            alive = RunnerLock(settings.data_dir, "feedfacefeedface")
            alive.acquire()
            try:
                # (runner, attempts left counted after its crash)
                for crash, (owner, counted) in enumerate(
                    [("0123456789abcdef", 0), ("fedcba9876543210", 1), ("feedfacefeedface", 1)]
                ):
                    (settings.data_dir / "run").mkdir(exist_ok=True)
                    (settings.data_dir / "run" / f"{owner}.lock").touch()
                    await set_job(
                        db, job.id, state=JobState.RUNNING, attempts=1,
                        worker=f"box:1:{owner}/media0",
                    )  # fmt: skip
                    await recover_dead_runners(db, settings.data_dir)
                    row = await get_job(db, job.id)
                    assert row is not None
                    if crash == 2:  # that runner still lives: its job is left alone
                        assert (row.state, row.attempts) == (JobState.RUNNING, 1)
                        continue
                    # The first crash is not the job's fault; a second one in a row counts.
                    assert (row.state, row.attempts) == (JobState.QUEUED, counted)
                    assert row.last_error == CRASHED_MESSAGE
            finally:
                alive.release()

    run(go())
