"""JobRunner: lanes, timeouts, shutdown, crash recovery and cancellation, with real asyncio."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest

from tests.jobs.helpers import all_jobs, eventually, get_job, run, set_job, wait_event
from vidbox.config import Settings
from vidbox.jobs import MEDIA_LANE, JobContext, JobHandler
from vidbox.jobs.cleanup import CLEANUP_INTERVAL, CLEANUP_KIND, HANDLERS
from vidbox.jobs.queue import cancel_video_jobs, enqueue
from vidbox.jobs.runner import JobRunner
from vidbox.models import JobState, utcnow
from vidbox.services import open_services


class Blocker:
    """A handler that signals it started, then waits until released (or cancelled)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.attempts: list[int] = []

    async def __call__(self, ctx: JobContext) -> None:
        self.attempts.append(ctx.attempt)
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


def test_a_long_media_job_does_not_hold_up_small_jobs(settings: Settings) -> None:
    async def go() -> None:
        async with open_services(settings) as services:
            transcode = Blocker()
            mailed = asyncio.Event()

            async def mail(ctx: JobContext) -> None:
                mailed.set()

            runner = JobRunner(
                services,
                {"transcode": transcode, "mail": mail},
                concurrency={MEDIA_LANE: 1, "small": 1},
                poll_seconds=30,  # only wake-ups can start these jobs in time
            )
            await runner.start()
            try:
                async with services.db.session() as session:
                    media = await enqueue(session, "transcode", {}, lane=MEDIA_LANE)
                runner.wake()
                await wait_event(transcode.started)
                async with services.db.session() as session:
                    small = await enqueue(session, "mail", {})
                runner.wake()
                await wait_event(mailed)

                async def small_done() -> bool:
                    row = await get_job(services.db, small.id)
                    return row is not None and row.state == JobState.SUCCEEDED

                await eventually(small_done, what="the mail job to be recorded")
                row = await get_job(services.db, media.id)
                assert row is not None
                assert row.state == JobState.RUNNING
                assert runner.running_job_ids == [media.id]

                transcode.release.set()

                async def media_done() -> bool:
                    row = await get_job(services.db, media.id)
                    return row is not None and row.state == JobState.SUCCEEDED

                await eventually(media_done, what="the transcode to be recorded")
            finally:
                await runner.stop()

    run(go())


def test_a_job_past_its_timeout_is_stopped_and_retried_later(settings: Settings) -> None:
    async def go() -> None:
        async with open_services(settings) as services:
            slow = Blocker()
            async with services.db.session() as session:
                job = await enqueue(session, "slow", {})
            runner = JobRunner(services, {"slow": slow}, timeout_seconds={"slow": 0.2})
            await runner.run_until_idle(timeout=20)
            assert slow.cancelled.is_set()
            row = await get_job(services.db, job.id)
            assert row is not None
            assert (row.state, row.attempts) == (JobState.QUEUED, 1)
            assert row.last_error == "The job ran longer than its 0.2-second limit and was stopped."
            assert row.run_at > utcnow()

    run(go())


def test_stop_puts_running_jobs_back_without_counting_the_attempt(settings: Settings) -> None:
    async def go() -> None:
        async with open_services(settings) as services:
            transcode = Blocker()
            async with services.db.session() as session:
                job = await enqueue(session, "transcode", {}, lane=MEDIA_LANE)
            runner = JobRunner(services, {"transcode": transcode})
            await runner.start()
            await wait_event(transcode.started)
            await runner.stop(grace=5)

            assert transcode.cancelled.is_set()
            row = await get_job(services.db, job.id)
            assert row is not None
            assert (row.state, row.attempts, row.worker, row.lease_until) == (
                JobState.QUEUED,
                0,
                None,
                None,
            )
            assert row.run_at <= utcnow()
            await runner.stop()  # a second stop is harmless

            # The next start picks it up as a first attempt.
            transcode.release.set()
            await JobRunner(services, {"transcode": transcode}).run_until_idle(timeout=20)
            assert transcode.attempts == [1, 1]
            row = await get_job(services.db, job.id)
            assert row is not None
            assert (row.state, row.attempts) == (JobState.SUCCEEDED, 1)

    run(go())


def test_stop_returns_even_when_a_handler_refuses_to_stop(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async def go() -> None:
        async with open_services(settings) as services:
            started, release = asyncio.Event(), asyncio.Event()

            async def stubborn(ctx: JobContext) -> None:
                started.set()
                while not release.is_set():
                    try:
                        await release.wait()
                    except asyncio.CancelledError:
                        continue  # swallows every cancellation

            async with services.db.session() as session:
                job = await enqueue(session, "stubborn", {})
            runner = JobRunner(services, {"stubborn": stubborn})
            await runner.start()
            await wait_event(started)
            await runner.stop(grace=0.1)
            # Still marked running: its lease runs out and the next start reclaims it.
            row = await get_job(services.db, job.id)
            assert row is not None
            assert row.state == JobState.RUNNING
            release.set()

    with caplog.at_level(logging.ERROR, logger="vidbox.jobs"):
        run(go())
    assert "did not stop in time" in caplog.text


def test_a_job_whose_process_died_is_reclaimed_and_completes(settings: Settings) -> None:
    async def go() -> None:
        async with open_services(settings) as services:
            db = services.db
            now = utcnow()
            async with db.session() as session:
                crashed = await enqueue(session, "transcode", {}, lane=MEDIA_LANE)
                alive = await enqueue(session, "transcode", {}, lane=MEDIA_LANE)
            # What a kill -9 leaves behind: running rows nobody renews. One lease has run out,
            # the other (a live worker elsewhere) has not.
            await set_job(
                db,
                crashed.id,
                state=JobState.RUNNING,
                attempts=1,
                worker="gone:1:dead/media0",
                lease_until=now - timedelta(seconds=1),
            )
            await set_job(
                db,
                alive.id,
                state=JobState.RUNNING,
                attempts=1,
                worker="elsewhere:2:live/media0",
                lease_until=now + timedelta(minutes=5),
            )
            seen: list[tuple[int, int]] = []

            async def transcode(ctx: JobContext) -> None:
                seen.append((ctx.job_id, ctx.attempt))
                if ctx.job_id == crashed.id:
                    # The other "process" finishes its job meanwhile.
                    await set_job(db, alive.id, state=JobState.SUCCEEDED)

            await JobRunner(services, {"transcode": transcode}).run_until_idle(timeout=20)
            assert seen == [(crashed.id, 2)]
            row = await get_job(db, crashed.id)
            assert row is not None
            assert (row.state, row.attempts) == (JobState.SUCCEEDED, 2)

    run(go())


def test_a_job_that_kills_its_process_every_time_ends_dead(settings: Settings) -> None:
    async def go() -> None:
        async with open_services(settings) as services:
            db = services.db
            calls: list[int] = []
            gave_up: list[str] = []

            async def transcode(ctx: JobContext) -> None:
                calls.append(ctx.attempt)

            async def on_gave_up(ctx: JobContext, message: str) -> None:
                gave_up.append(message)

            handler = JobHandler(transcode, on_gave_up=on_gave_up)
            async with db.session() as session:
                job = await enqueue(session, "transcode", {}, lane=MEDIA_LANE, max_attempts=2)
            await set_job(
                db,
                job.id,
                state=JobState.RUNNING,
                attempts=2,
                worker="gone:1:dead/media0",
                lease_until=utcnow() - timedelta(seconds=1),
            )
            await JobRunner(services, {"transcode": handler}).run_until_idle(timeout=20)
            assert calls == []
            row = await get_job(db, job.id)
            assert row is not None
            assert row.state == JobState.DEAD
            assert row.last_error == (
                "Gave up after 2 attempts. The worker running this job stopped before it finished."
            )
            assert gave_up == [row.last_error]

    run(go())


def test_cancel_video_stops_its_running_job_and_drops_queued_ones(settings: Settings) -> None:
    async def go() -> None:
        async with open_services(settings) as services:
            db = services.db
            transcode = Blocker()
            later = utcnow() + timedelta(hours=1)
            async with db.session() as session:
                running = await enqueue(
                    session, "transcode", {}, lane=MEDIA_LANE, video_id="v1", idempotency_key="t:v1"
                )
                await enqueue(session, "mail", {}, video_id="v1", run_at=later)
                other = await enqueue(session, "mail", {}, video_id="v2", run_at=later)
            runner = JobRunner(services, {"transcode": transcode, "mail": transcode})
            await runner.start()
            try:
                await wait_event(transcode.started)
                assert await runner.cancel_video("v1") == [running.id]
                assert transcode.cancelled.is_set()
                assert [j.id for j in await all_jobs(db)] == [other.id]
                assert runner.running_job_ids == []
                # The key is free again, e.g. for a video id that comes back.
                async with db.session() as session:
                    again = await enqueue(session, "mail", {}, idempotency_key="t:v1", run_at=later)
                assert again.state == JobState.QUEUED
            finally:
                await runner.stop()
            assert [j.id for j in await all_jobs(db)] == [other.id, again.id]

    run(go())


def test_a_job_deleted_by_another_process_is_cancelled_at_the_next_heartbeat(
    settings: Settings,
) -> None:
    async def go() -> None:
        async with open_services(settings) as services, open_services(settings) as other:
            transcode = Blocker()
            async with services.db.session() as session:
                job = await enqueue(session, "transcode", {}, lane=MEDIA_LANE, video_id="v9")
            runner = JobRunner(services, {"transcode": transcode}, lease_seconds=0.3)
            await runner.start()
            try:
                await wait_event(transcode.started)
                # Another vidbox process deletes the video (its own connection, no runner).
                async with other.db.session() as session:
                    assert await cancel_video_jobs(session, "v9") == [job.id]
                await wait_event(transcode.cancelled)
                await eventually(lambda: _no_running(runner), what="the worker to let go")
                assert await all_jobs(services.db) == []
            finally:
                await runner.stop()

    run(go())


async def _no_running(runner: JobRunner) -> bool:
    return not runner.running_job_ids


def test_start_schedules_exactly_one_cleanup_which_reschedules_itself(settings: Settings) -> None:
    async def go() -> None:
        async with open_services(settings) as services:
            db = services.db

            async def cleanup_ran() -> bool:
                return any(j.state == JobState.SUCCEEDED for j in await all_jobs(db))

            first = JobRunner(services, HANDLERS)
            await first.start()
            try:
                await eventually(cleanup_ran, what="the first cleanup")
            finally:
                await first.stop()
            second = JobRunner(services, HANDLERS)
            await second.start()  # must not add another one
            await second.stop()

            jobs = await all_jobs(db)
            assert [(j.kind, j.state, j.idempotency_key) for j in jobs] == [
                (CLEANUP_KIND, JobState.SUCCEEDED, None),
                (CLEANUP_KIND, JobState.QUEUED, CLEANUP_KIND),
            ]
            done, scheduled = jobs
            assert done.finished_at is not None
            assert scheduled.run_at - done.finished_at == pytest.approx(
                CLEANUP_INTERVAL, abs=timedelta(seconds=30)
            )

    run(go())


def test_run_until_idle_gives_up_after_its_timeout(settings: Settings) -> None:
    async def go() -> None:
        async with open_services(settings) as services:
            forever = Blocker()
            async with services.db.session() as session:
                job = await enqueue(session, "forever", {})
            with pytest.raises(TimeoutError):
                await JobRunner(services, {"forever": forever}).run_until_idle(timeout=0.5)
            assert forever.cancelled.is_set()
            row = await get_job(services.db, job.id)
            assert row is not None
            assert (row.state, row.attempts) == (JobState.QUEUED, 0)

    run(go())


def test_run_until_idle_also_runs_the_jobs_that_jobs_enqueue(settings: Settings) -> None:
    async def go() -> None:
        async with open_services(settings) as services:
            ran: list[str] = []

            async def upload_done(ctx: JobContext) -> None:
                ran.append("upload_done")
                async with services.db.session() as session:
                    await enqueue(session, "transcode", {}, lane=MEDIA_LANE)

            async def transcode(ctx: JobContext) -> None:
                ran.append("transcode")
                async with services.db.session() as session:
                    await enqueue(session, "notify", {})

            async def notify(ctx: JobContext) -> None:
                ran.append("notify")

            handlers = {"upload_done": upload_done, "transcode": transcode, "notify": notify}
            async with services.db.session() as session:
                await enqueue(session, "upload_done", {})
            # A long poll: only the runner's own wake-ups can keep this quick.
            await JobRunner(services, handlers, poll_seconds=30).run_until_idle(timeout=20)
            assert ran == ["upload_done", "transcode", "notify"]
            jobs = await all_jobs(services.db)
            assert [j.state for j in jobs] == [JobState.SUCCEEDED] * 3

    run(go())
