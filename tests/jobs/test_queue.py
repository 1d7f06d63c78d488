"""The queue's table operations and their contract, on a real SQLite database."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import timedelta

import pytest

from tests.jobs.helpers import all_jobs, get_job, make_due, run, set_job
from vidbox.config import Settings
from vidbox.jobs import (
    MEDIA_LANE,
    SMALL_LANE,
    Handler,
    JobContext,
    JobHandler,
    PermanentJobError,
)
from vidbox.jobs.admin import list_jobs, queue_stats, retry_job
from vidbox.jobs.outcomes import describe_error
from vidbox.jobs.queue import (
    BACKOFF_CAP_SECONDS,
    backoff_seconds,
    cancel_video_jobs,
    claim_next,
    enqueue,
)
from vidbox.jobs.runner import JobRunner
from vidbox.models import Job, JobState, utcnow
from vidbox.services import open_services


class Recorder:
    """A handler that remembers every context it ran with."""

    def __init__(self) -> None:
        self.calls: list[JobContext] = []

    async def __call__(self, ctx: JobContext) -> None:
        self.calls.append(ctx)


def test_enqueued_job_commits_with_its_transaction_and_runs(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async def go() -> None:
        async with open_services(settings) as services:

            async def failing_change() -> None:
                async with services.db.session() as session:
                    await enqueue(session, "mail", {"to": "lost@example.org"})
                    raise RuntimeError("the caller's change failed")

            with pytest.raises(RuntimeError):
                await failing_change()
            assert await all_jobs(services.db) == []

            async with services.db.session() as session:
                job = await enqueue(session, "mail", {"to": "ann@example.org"}, video_id="v1")
            assert job.id is not None
            mail = Recorder()
            await JobRunner(services, {"mail": mail}).run_until_idle(timeout=20)

            assert [(c.job_id, c.kind, c.payload, c.attempt) for c in mail.calls] == [
                (job.id, "mail", {"to": "ann@example.org"}, 1)
            ]
            assert mail.calls[0].services is services
            done = await get_job(services.db, job.id)
            assert done is not None
            assert done.state == JobState.SUCCEEDED
            assert done.finished_at is not None
            assert (done.lease_until, done.video_id) == (None, "v1")

    with caplog.at_level(logging.INFO, logger="vidbox.jobs"):
        run(go())
    lines = [(r.getMessage(), r.fields) for r in caplog.records if r.name == "vidbox.jobs"]
    (started, start_fields), (finished, finish_fields) = lines
    assert (started, finished) == ("job started", "job finished")
    assert start_fields["kind"] == finish_fields["kind"] == "mail"
    assert finish_fields["attempt"] == 1
    assert finish_fields["outcome"] == "succeeded"
    assert isinstance(finish_fields["ms"], int)


def test_idempotency_key_returns_the_live_job_and_frees_up_when_finished(
    settings: Settings,
) -> None:
    async def go() -> None:
        async with open_services(settings) as services:
            db = services.db
            async with db.session() as session:
                first = await enqueue(session, "process_video", {"n": 1}, idempotency_key="pv:v1")
                again = await enqueue(session, "process_video", {"n": 2}, idempotency_key="pv:v1")
            assert again.id == first.id
            assert again.payload == '{"n": 1}'

            claimed = await claim_next(
                db, lane=SMALL_LANE, kinds=["process_video"], worker="w", lease_seconds=60
            )
            assert claimed is not None
            assert claimed.id == first.id
            async with db.session() as session:
                while_running = await enqueue(session, "process_video", {}, idempotency_key="pv:v1")
            assert while_running.id == first.id
            assert len(await all_jobs(db)) == 1

            await set_job(db, first.id, state=JobState.DEAD)
            async with db.session() as session:
                fresh = await enqueue(session, "process_video", {"n": 3}, idempotency_key="pv:v1")
            jobs = await all_jobs(db)
            assert [(j.id, j.state, j.attempts, j.payload) for j in jobs] == [
                (fresh.id, JobState.QUEUED, 0, '{"n": 3}')
            ]

    run(go())


def test_enqueue_refuses_what_it_could_never_run(settings: Settings) -> None:
    async def go() -> None:
        async with open_services(settings) as services, services.db.session() as session:
            with pytest.raises(ValueError, match="lane"):
                await enqueue(session, "mail", {}, lane="gpu")
            with pytest.raises(TypeError):
                await enqueue(session, "mail", {"when": object()})
            with pytest.raises(ValueError, match="max_attempts"):
                await enqueue(session, "mail", {}, max_attempts=0)

    run(go())


def test_two_runners_on_one_database_run_each_job_exactly_once(settings: Settings) -> None:
    """Two processes' worth of runners (separate engines and connections) race for 50 jobs."""
    runs: list[tuple[str, int]] = []

    async def go() -> None:
        both = asyncio.Event()

        def handler_for(name: str) -> Handler:
            async def handler(ctx: JobContext) -> None:
                runs.append((name, ctx.job_id))
                if {who for who, _ in runs} == {"a", "b"}:
                    both.set()
                # Hold the first jobs until both runners have one, so both really take part.
                await asyncio.wait_for(both.wait(), 20)

            return handler

        async with open_services(settings) as one, open_services(settings) as two:
            async with one.db.session() as session:
                ids = [(await enqueue(session, "work", {"i": i})).id for i in range(50)]
            lanes = {SMALL_LANE: 3, MEDIA_LANE: 0}
            runner_a = JobRunner(one, {"work": handler_for("a")}, concurrency=lanes)
            runner_b = JobRunner(two, {"work": handler_for("b")}, concurrency=lanes)
            await asyncio.gather(runner_a.run_until_idle(30), runner_b.run_until_idle(30))

            assert sorted(job_id for _, job_id in runs) == sorted(ids)
            assert {who for who, _ in runs} == {"a", "b"}
            jobs = await all_jobs(one.db)
            assert {(j.state, j.attempts) for j in jobs} == {(JobState.SUCCEEDED, 1)}

    run(go())


class FlakyMail:
    """Fails until told otherwise; records the give-up call."""

    def __init__(self) -> None:
        self.failing = True
        self.attempts: list[int] = []
        self.gave_up: list[tuple[int, str]] = []

    async def __call__(self, ctx: JobContext) -> None:
        self.attempts.append(ctx.attempt)
        if self.failing:
            raise ConnectionRefusedError("mail server down")

    async def on_gave_up(self, ctx: JobContext, message: str) -> None:
        self.gave_up.append((ctx.job_id, message))


def test_transient_failures_back_off_then_die_and_an_admin_can_retry(settings: Settings) -> None:
    async def go() -> None:
        async with open_services(settings) as services:
            db = services.db
            async with db.session() as session:
                job = await enqueue(session, "mail", {}, max_attempts=3)
            assert job.id is not None
            mail = FlakyMail()
            handler = JobHandler(mail, on_gave_up=mail.on_gave_up)
            runner = JobRunner(services, {"mail": handler}, rng=random.Random(1))

            delays = []
            for attempt in (1, 2):
                await runner.run_until_idle(timeout=20)
                row = await get_job(db, job.id)
                assert row is not None
                assert (row.state, row.attempts) == (JobState.QUEUED, attempt)
                assert row.last_error == "ConnectionRefusedError: mail server down"
                assert (row.worker, row.lease_until) == (None, None)
                delays.append((row.run_at - row.updated_at).total_seconds())
                await make_due(db, job.id)
            assert 3.7 < delays[0] <= 5 < 7.5 <= delays[1] <= 10

            await runner.run_until_idle(timeout=20)
            dead = await get_job(db, job.id)
            assert dead is not None
            assert (dead.state, dead.attempts) == (JobState.DEAD, 3)
            assert dead.finished_at is not None
            assert "mail server down" in (dead.last_error or "")
            assert mail.attempts == [1, 2, 3]
            assert mail.gave_up == [(job.id, dead.last_error)]
            assert dead.last_error.startswith("Gave up after 3 attempts.")
            assert [j.id for j in await list_jobs(db)] == [job.id]

            retried = await retry_job(db, job.id)
            assert retried is not None
            assert (retried.state, retried.attempts, retried.finished_at) == (
                JobState.QUEUED,
                0,
                None,
            )
            mail.failing = False
            await runner.run_until_idle(timeout=20)
            done = await get_job(db, job.id)
            assert done is not None
            assert (done.state, done.attempts) == (JobState.SUCCEEDED, 1)
            assert mail.attempts == [1, 2, 3, 1]
            assert await list_jobs(db) == []
            assert await retry_job(db, 999_999) is None

    run(go())


def test_backoff_grows_exponentially_with_jitter_up_to_a_cap() -> None:
    rng = random.Random(5)
    for attempt in range(1, 12):
        raw = min(BACKOFF_CAP_SECONDS, 5 * 2 ** (attempt - 1))
        samples = [backoff_seconds(attempt, rng) for _ in range(50)]
        assert all(0.75 * raw <= s <= raw for s in samples)
        assert len(set(samples)) > 1  # jittered, so failed-together jobs spread out
    assert backoff_seconds(40, rng) <= BACKOFF_CAP_SECONDS


def test_permanent_error_fails_at_once_and_tells_the_handler(settings: Settings) -> None:
    gave_up: list[tuple[int, int, str]] = []

    async def probe(ctx: JobContext) -> None:
        raise PermanentJobError("This file is not a video FFmpeg can read.")

    async def on_gave_up(ctx: JobContext, message: str) -> None:
        gave_up.append((ctx.job_id, ctx.attempt, message))

    handler = JobHandler(probe, on_gave_up=on_gave_up)

    async def go() -> None:
        async with open_services(settings) as services:
            async with services.db.session() as session:
                job = await enqueue(session, "probe", {}, lane=MEDIA_LANE)
            await JobRunner(services, {"probe": handler}).run_until_idle(timeout=20)
            row = await get_job(services.db, job.id)
            assert row is not None
            assert (row.state, row.attempts) == (JobState.FAILED, 1)
            assert row.last_error == "This file is not a video FFmpeg can read."
            assert gave_up == [(job.id, 1, "This file is not a video FFmpeg can read.")]

    run(go())


def test_cancel_video_jobs_drops_queued_and_reports_running(settings: Settings) -> None:
    async def go() -> None:
        async with open_services(settings) as services:
            db = services.db
            async with db.session() as session:
                running = await enqueue(
                    session, "process_video", {}, video_id="v1", lane=MEDIA_LANE
                )
                queued = await enqueue(session, "mail", {}, video_id="v1")
                other = await enqueue(session, "mail", {}, video_id="v2")
                finished = await enqueue(session, "mail", {}, video_id="v1")
            await set_job(db, finished.id, state=JobState.DEAD)
            claimed = await claim_next(
                db, lane=MEDIA_LANE, kinds=["process_video"], worker="w", lease_seconds=60
            )
            assert claimed is not None
            assert claimed.id == running.id
            async with db.session() as session:
                assert await cancel_video_jobs(session, "v1") == [running.id]
            left = {j.id for j in await all_jobs(db)}
            assert queued.id not in left
            assert running.id not in left
            assert left == {other.id, finished.id}

    run(go())


def test_claim_takes_the_oldest_runnable_job_of_its_lane_and_known_kinds(
    settings: Settings,
) -> None:
    async def go() -> None:
        async with open_services(settings) as services:
            db = services.db
            now = utcnow()
            async with db.session() as session:
                later = await enqueue(session, "a", {}, run_at=now + timedelta(minutes=5))
                newer = await enqueue(session, "a", {}, run_at=now - timedelta(seconds=1))
                older = await enqueue(session, "a", {}, run_at=now - timedelta(seconds=9))
                await enqueue(session, "unknown", {}, run_at=now - timedelta(hours=1))
                await enqueue(session, "a", {}, lane=MEDIA_LANE, run_at=now - timedelta(hours=1))

            async def claim() -> Job | None:
                return await claim_next(
                    db, lane=SMALL_LANE, kinds=["a"], worker="w", lease_seconds=30, now=now
                )

            first, second, third = await claim(), await claim(), await claim()
            assert first is not None
            assert second is not None
            assert [first.id, second.id, third] == [older.id, newer.id, None]
            assert first.lease_until == now + timedelta(seconds=30)
            assert (first.state, first.attempts, first.worker) == (JobState.RUNNING, 1, "w")
            assert later.state == JobState.QUEUED

    run(go())


def test_queue_stats_count_states_and_lanes_and_the_oldest_wait(settings: Settings) -> None:
    async def go() -> None:
        async with open_services(settings) as services:
            db = services.db
            now = utcnow()
            async with db.session() as session:
                await enqueue(session, "a", {}, run_at=now - timedelta(seconds=90))
                await enqueue(session, "a", {}, run_at=now + timedelta(hours=1))
                stuck = await enqueue(session, "v", {}, lane=MEDIA_LANE)
                dead = await enqueue(session, "v", {}, lane=MEDIA_LANE)
            await set_job(
                db, stuck.id, state=JobState.RUNNING, lease_until=now - timedelta(seconds=1)
            )
            await set_job(db, dead.id, state=JobState.DEAD)

            stats = await queue_stats(db, now=now)
            assert stats["states"] == {
                "queued": 2,
                "running": 1,
                "succeeded": 0,
                "failed": 0,
                "dead": 1,
            }
            assert stats["lanes"]["small"]["queued"] == 2
            assert stats["lanes"]["media"] == {
                "queued": 0,
                "running": 1,
                "succeeded": 0,
                "failed": 0,
                "dead": 1,
            }
            assert stats["runnable"] == 1
            assert stats["oldest_runnable_seconds"] == pytest.approx(90, abs=1)
            assert stats["expired_leases"] == 1

            empty = await queue_stats(db, now=now - timedelta(hours=1))
            assert empty["oldest_runnable_seconds"] is None

    run(go())


def test_list_jobs_shows_newest_first_and_honours_the_limit(settings: Settings) -> None:
    async def go() -> None:
        async with open_services(settings) as services:
            db = services.db
            async with db.session() as session:
                jobs = [await enqueue(session, "a", {}) for _ in range(4)]
            now = utcnow()
            for age, job in enumerate(jobs):
                state = JobState.FAILED if age % 2 else JobState.DEAD
                await set_job(db, job.id, state=state, updated_at=now - timedelta(minutes=age))
            listed = await list_jobs(db, limit=3)
            assert [j.id for j in listed] == [jobs[0].id, jobs[1].id, jobs[2].id]
            assert [j.id for j in await list_jobs(db, states=("failed",))] == [
                jobs[1].id,
                jobs[3].id,
            ]

    run(go())


def test_error_descriptions_are_readable() -> None:
    assert describe_error(PermanentJobError("Unreadable file.")) == "Unreadable file."
    assert describe_error(KeyError("video_id")) == "KeyError: 'video_id'"
    assert describe_error(RuntimeError()) == "RuntimeError"

    class MediaError(Exception):
        pass

    assert describe_error(MediaError("FFmpeg ran out of disk space.")) == (
        "FFmpeg ran out of disk space."
    )
