"""A processing attempt's time limit follows the video's duration, not a flat 240 minutes."""

from __future__ import annotations

import asyncio

from tests.jobs.helpers import eventually, get_job, run
from vidbox.config import Settings
from vidbox.config.schema import ProcessingSettings
from vidbox.jobs import MEDIA_LANE, JobContext
from vidbox.jobs.process_video import time_limit
from vidbox.jobs.queue import enqueue
from vidbox.jobs.runner import JobRunner
from vidbox.models import JobState
from vidbox.services import open_services


def test_the_limit_is_scaled_to_the_duration() -> None:
    defaults = ProcessingSettings()
    assert time_limit(defaults, 2.0) == 5 * 60  # a short clip: the 5-minute floor
    assert time_limit(defaults, 30 * 60.0) == 10 * 3600  # half an hour of video: 10 hours
    assert time_limit(defaults, None) == 5 * 60


def test_a_handler_sets_its_own_limit_once_it_knows_its_work(settings: Settings) -> None:
    async def go() -> None:
        async with open_services(settings) as services:
            started = asyncio.Event()

            async def transcode(ctx: JobContext) -> None:
                ctx.set_time_limit(0.2)  # the probe said: a short video
                started.set()
                await asyncio.Event().wait()  # hangs, like a stuck FFmpeg

            runner = JobRunner(
                services, {"transcode": transcode}, timeout_seconds={"transcode": 3600.0}
            )
            async with services.db.session() as session:
                job = await enqueue(session, "transcode", {}, lane=MEDIA_LANE)
            await runner.start()
            try:
                runner.wake()

                async def stopped() -> bool:
                    row = await get_job(services.db, job.id)
                    return row is not None and row.state == JobState.QUEUED and row.attempts == 1

                await eventually(stopped, what="the attempt to be stopped at its own limit")
                row = await get_job(services.db, job.id)
                assert row is not None
                assert (row.last_error or "").startswith("The job ran longer than its")
            finally:
                await runner.stop()

    run(go())
