"""Enqueueing wakes the workers after the commit by itself; a rollback wakes nobody."""

from __future__ import annotations

import asyncio

import pytest

from tests.jobs.helpers import all_jobs, run, wait_event
from vidbox.config import Settings
from vidbox.jobs import MEDIA_LANE, SMALL_LANE, JobContext
from vidbox.jobs.queue import enqueue, subscribe, unsubscribe
from vidbox.jobs.runner import JobRunner
from vidbox.models import Job
from vidbox.services import open_services


class Heard:
    """A queue.Wakeup that records what it was told."""

    def __init__(self) -> None:
        self.lanes: list[frozenset[str]] = []

    def notify(self, lanes: frozenset[str]) -> None:
        self.lanes.append(lanes)


class WatchedRunner(JobRunner):
    """Says when a worker looked and found nothing: from then on it sleeps until woken."""

    idle: asyncio.Event

    async def _claim(self, lane: str, worker: str) -> Job | None:
        job = await super()._claim(lane, worker)
        if job is None:
            self.idle.set()
        return job


def test_a_job_enqueued_in_a_unit_of_work_runs_without_a_wake(settings: Settings) -> None:
    async def go() -> None:
        async with open_services(settings) as services:
            ran = asyncio.Event()

            async def mail(ctx: JobContext) -> None:
                ran.set()

            # Polling alone would take ten minutes: only the commit's wake-up can be in time.
            runner = WatchedRunner(
                services,
                {"mail": mail},
                concurrency={MEDIA_LANE: 0, SMALL_LANE: 1},
                poll_seconds=600,
                startup_jobs=(),
            )
            runner.idle = asyncio.Event()
            await runner.start()
            try:
                # The worker has looked and found nothing; it cleared its wake-up event before
                # looking, so only a wake-up after this point makes it look again.
                await wait_event(runner.idle)
                async with services.db.session() as session:
                    await enqueue(session, "mail", {})
                await wait_event(ran, within=10)
            finally:
                await runner.stop()

    run(go())


def test_the_wake_comes_after_the_commit_and_names_the_lane(settings: Settings) -> None:
    async def go() -> None:
        async with open_services(settings) as services:
            heard = Heard()
            subscribe(services.db, heard)
            try:
                async with services.db.session() as session:
                    await enqueue(session, "transcode", {}, lane=MEDIA_LANE)
                    await enqueue(session, "mail", {})
                    assert heard.lanes == []  # not before the job is visible to a worker
                assert heard.lanes == [frozenset({MEDIA_LANE, SMALL_LANE})]
            finally:
                unsubscribe(services.db, heard)

    run(go())


def test_a_rolled_back_unit_of_work_wakes_nothing(settings: Settings) -> None:
    async def go() -> None:
        async with open_services(settings) as services:
            heard = Heard()
            subscribe(services.db, heard)
            try:

                async def failing_work() -> None:
                    async with services.db.session() as session:
                        await enqueue(session, "mail", {})
                        raise RuntimeError("the caller's work failed")

                with pytest.raises(RuntimeError):
                    await failing_work()
                assert heard.lanes == []
                assert await all_jobs(services.db) == []
                # The next unit of work that does commit wakes for its own jobs only.
                async with services.db.session() as session:
                    await enqueue(session, "transcode", {}, lane=MEDIA_LANE)
                assert heard.lanes == [frozenset({MEDIA_LANE})]
            finally:
                unsubscribe(services.db, heard)

    run(go())
