"""Announcements reach every process sharing the database when the change commits: two
Database objects stand for two vidbox processes, each with its own LISTEN connection to one
real PostgreSQL server (on SQLite a Bus is in-process only)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from tests.jobs.helpers import eventually, run
from tests.postgres import only_postgres, run_sql
from vidbox.config import Settings
from vidbox.db import Database
from vidbox.jobs import MEDIA_LANE, SMALL_LANE, JobContext
from vidbox.jobs.queue import claim_next, enqueue, subscribe, unsubscribe
from vidbox.jobs.runner import JobRunner
from vidbox.models import JobState
from vidbox.notify import AUTH, Bus, announce, encode
from vidbox.services import open_services


class Heard:
    def __init__(self) -> None:
        self.lanes: list[frozenset[str]] = []

    def notify(self, lanes: frozenset[str]) -> None:
        self.lanes.append(lanes)


@asynccontextmanager
async def other_process(settings: Settings) -> AsyncIterator[Database]:
    """A second handle on the box's database, listening like another vidbox process."""
    db = Database.from_settings(settings)
    await db.listen()
    try:
        await asyncio.wait_for(db.bus.connected.wait(), 10)
        yield db
    finally:
        await db.close()


def test_a_transaction_announces_once_after_commit_and_never_on_rollback(
    settings: Settings,
) -> None:
    async def go() -> None:
        async with open_services(settings) as services:
            heard: list[frozenset[str] | None] = []
            services.db.bus.subscribe("test", heard.append)

            async def failing() -> None:
                async with services.db.session() as session:
                    announce(session, "test", "a")
                    raise RuntimeError("the caller's work failed")

            with pytest.raises(RuntimeError):
                await failing()
            async with services.db.session() as session:
                announce(session, "test", "b")
                announce(session, "test", "c")
                assert heard == []
            assert heard == [frozenset({"b", "c"})]

    run(go())


def test_an_oversized_announcement_degrades_to_anything_changed() -> None:
    small = encode("me", {"videos": {"v1"}})
    assert '"v1"' in small
    huge = encode("me", {"videos": {f"{i:032x}" for i in range(1000)}})
    assert len(huge) < 200 and '"videos":[]' in huge
    assert Bus().shared is False  # no DSN: in-process only


@only_postgres
def test_an_enqueue_in_one_process_wakes_another_and_a_rollback_wakes_nobody(
    settings: Settings,
) -> None:
    async def go() -> None:
        async with open_services(settings) as services, other_process(settings) as other:
            heard = Heard()
            subscribe(other, heard)
            try:

                async def failing() -> None:
                    async with services.db.session() as session:
                        await enqueue(session, "mail", {})
                        raise RuntimeError("rolled back")

                with pytest.raises(RuntimeError):
                    await failing()
                async with services.db.session() as session:
                    await enqueue(session, "transcode", {}, lane=MEDIA_LANE)

                async def woken() -> bool:
                    return bool(heard.lanes)

                await eventually(woken, within=5, what="the other process to hear the job")
                # Notifications arrive in commit order: had the rollback sent one, it would
                # have come first.
                assert heard.lanes[0] == frozenset({MEDIA_LANE})
            finally:
                unsubscribe(other, heard)

    run(go())


@only_postgres
def test_a_revocation_in_one_process_empties_the_others_sign_in_cache(
    settings: Settings,
) -> None:
    async def go() -> None:
        async with open_services(settings) as services, other_process(settings) as other:
            other.auth_cache.put(("token-hash", ("access",)), object())
            assert len(other.auth_cache) == 1
            async with services.db.session() as session:
                announce(session, AUTH)
            started = time.monotonic()

            async def cleared() -> bool:
                return len(other.auth_cache) == 0

            await eventually(cleared, within=5, what="the other cache to be cleared")
            assert time.monotonic() - started < 1.0  # the bound, not a benchmark

    run(go())


@only_postgres
def test_a_worker_in_another_process_runs_a_job_without_polling(settings: Settings) -> None:
    async def go() -> None:
        async with open_services(settings) as services, other_process(settings) as other:
            ran = asyncio.Event()

            async def mail(ctx: JobContext) -> None:
                ran.set()

            async with open_services(settings) as worker_services:
                await worker_services.db.listen()
                await asyncio.wait_for(worker_services.db.bus.connected.wait(), 10)
                # Ten minutes between polls: only the notification can be in time.
                runner = JobRunner(
                    worker_services,
                    {"mail": mail},
                    concurrency={MEDIA_LANE: 0, SMALL_LANE: 1},
                    poll_seconds=600,
                    startup_jobs=(),
                )
                await runner.start()
                try:
                    async with services.db.session() as session:
                        await enqueue(session, "mail", {})
                    await asyncio.wait_for(ran.wait(), 10)
                finally:
                    await runner.stop()
            assert other.bus.listening

    run(go())


@only_postgres
def test_the_listener_comes_back_after_its_connection_is_killed_and_resyncs(
    settings: Settings,
) -> None:
    async def go() -> None:
        async with open_services(settings), other_process(settings) as other:
            heard = Heard()
            subscribe(other, heard)
            try:
                killed = await asyncio.to_thread(
                    run_sql,
                    settings,
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid() "
                    "AND datname = current_database()",
                )
                assert killed[0][0] >= 1

                async def back() -> bool:
                    return other.bus.listening and bool(heard.lanes)

                await eventually(back, within=10, what="the listener to reconnect")
                # What was announced while it was down is lost: every lane looks again.
                assert heard.lanes[-1] == frozenset({MEDIA_LANE, SMALL_LANE})
            finally:
                unsubscribe(other, heard)

    run(go())


@only_postgres
def test_concurrent_claimers_in_two_processes_take_each_job_once(settings: Settings) -> None:
    async def go() -> None:
        async with open_services(settings) as services, other_process(settings) as other:
            async with services.db.session() as session:
                for n in range(60):
                    await enqueue(session, "mail", {"n": n})
            taken: list[int] = []

            async def claimer(db: Database, name: str) -> None:
                while True:
                    job = await claim_next(
                        db, lane=SMALL_LANE, kinds=["mail"], worker=name, lease_seconds=60
                    )
                    if job is None:
                        return
                    assert job.id is not None
                    taken.append(job.id)

            await asyncio.gather(
                *(claimer(db, f"w{i}") for i, db in enumerate([services.db, other] * 4))
            )
            assert len(taken) == 60 and len(set(taken)) == 60
            rows = await asyncio.to_thread(
                run_sql, settings, "SELECT state, attempts FROM jobs WHERE kind = 'mail'"
            )
            assert {(state, attempts) for state, attempts in rows} == {(JobState.RUNNING, 1)}

    run(go())
