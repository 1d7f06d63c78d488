"""The job queue's table operations: enqueue, claim and outcomes (admin views: jobs/admin.py).

Every state change is one short write transaction (``BEGIN IMMEDIATE``), so
several workers or processes sharing the database never both take a job. A running job is
owned through its *claim*: the worker name plus the attempt number written when it was taken.
Outcome writes match on both, so a worker that lost its job (its lease expired and another
worker reclaimed it, or the video was deleted) changes nothing.

State machine (see vidbox.models.JobState)::

    queued --claim--> running --succeeded-------------> succeeded
                        |   \\--PermanentJobError-----> failed
                        |    \\--other error: attempts left? queued (run_at + backoff) : dead
                        \\--shutdown / lease expired--> queued
    failed, dead --retry_job--> queued

On PostgreSQL the claims and outcomes run without the box's write lock
(``Database.queue_session``), so workers never queue behind web writes or each other: a claim
locks the row it takes with ``FOR UPDATE SKIP LOCKED`` (a second claimer skips it and takes the
next), and every outcome is one conditional UPDATE on the claim, which READ COMMITTED
re-checks against the latest row version.

Waking workers: ``enqueue`` (and anything else that makes a job runnable, through
``wake_after_commit``) announces the job's lane (vidbox.notify), and when that transaction
commits every ``Wakeup`` subscribed hears of it: in this process, and on PostgreSQL in every
process, through NOTIFY. A rollback wakes nobody. Callers never wake anything by hand.
"""

from __future__ import annotations

import json
import logging
import random
import weakref
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import case, delete, func, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from vidbox import notify
from vidbox.db import Database
from vidbox.jobs import MEDIA_LANE, SMALL_LANE
from vidbox.jobs.fairness import fair_pick
from vidbox.models import Job, JobState, utcnow

BACKOFF_BASE_SECONDS = 5.0
BACKOFF_CAP_SECONDS = 30 * 60.0
# Each delay is cut by up to this fraction at random, so jobs that failed together (the mail
# server was down) do not all come back in the same second. Less than half, so a later attempt
# always waits longer than an earlier one.
BACKOFF_JITTER = 0.25
# A full disk is nobody's fault and frees up when someone deletes something: wait for it,
# looking again after a pause that grows with the wait (half of it, 5 s to 5 min), for a day.
DISK_WAIT_SECONDS = 24 * 3600.0
DISK_RETRY_CAP_SECONDS = 5 * 60.0

LIVE_STATES = (JobState.QUEUED, JobState.RUNNING)
FINISHED_STATES = (JobState.SUCCEEDED, JobState.FAILED, JobState.DEAD)
ALL_STATES = (*LIVE_STATES, *FINISHED_STATES)
LANES = (MEDIA_LANE, SMALL_LANE)

LEASE_EXPIRED_MESSAGE = "The worker running this job stopped before it finished."

log = logging.getLogger("vidbox.jobs")


def backoff_seconds(attempt: int, rng: random.Random | None = None) -> float:
    """How long to wait before the run after failed attempt number ``attempt`` (1, 2, ...)."""
    doublings = min(max(attempt - 1, 0), 30)  # past the cap anyway; keeps the float finite
    raw = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**doublings)
    return float(raw * (1 - BACKOFF_JITTER * (rng or random).random()))


def disk_retry_seconds(waited: float, rng: random.Random | None = None) -> float:
    raw = min(DISK_RETRY_CAP_SECONDS, max(BACKOFF_BASE_SECONDS, waited / 2))
    return raw * (1 - BACKOFF_JITTER * (rng or random).random())


def _uncount_attempt() -> Any:
    """attempts - 1, not below 0, in SQL both SQLite and PostgreSQL speak."""
    return case((col(Job.attempts) > 0, col(Job.attempts) - 1), else_=0)


def job_payload(job: Job) -> dict[str, Any]:
    data = json.loads(job.payload or "{}")
    if not isinstance(data, dict):
        raise ValueError("job payload is not a JSON object")
    return data


# -- waking workers after commit --------------------------------------------------------------


class Wakeup(Protocol):
    """Told, after a commit (here or, on PostgreSQL, in any process), that jobs of ``lanes``
    became runnable. Called synchronously: do no I/O, only set events (or schedule work)."""

    def notify(self, lanes: frozenset[str]) -> None: ...


def _lanes_callback(wakeup: Wakeup) -> notify.Callback:
    # One callback object per Wakeup, so unsubscribe finds what subscribe added.
    callback = _CALLBACKS.get(wakeup)
    if callback is None:
        ref = weakref.ref(wakeup)  # the callback must not keep its (weak) key alive

        def callback(lanes: frozenset[str] | None) -> None:
            target = ref()
            if target is not None:
                target.notify(lanes or frozenset(LANES))  # None: a resync, look everywhere

        _CALLBACKS[wakeup] = callback
    return callback


_CALLBACKS: weakref.WeakKeyDictionary[Wakeup, notify.Callback] = weakref.WeakKeyDictionary()


@runtime_checkable
class VideoJobStopper(Protocol):
    """A subscriber that runs handlers in this process and can stop those of a video."""

    async def stop_video(self, video_id: str, job_ids: list[int]) -> None: ...


_STOPPERS: weakref.WeakKeyDictionary[Database, list[VideoJobStopper]] = weakref.WeakKeyDictionary()


def subscribe(db: Database, wakeup: Wakeup) -> None:
    """Hear of every job committed through ``db``, and on PostgreSQL through any process's."""
    db.bus.subscribe(notify.JOBS, _lanes_callback(wakeup))
    if isinstance(wakeup, VideoJobStopper):
        stoppers = _STOPPERS.setdefault(db, [])
        if wakeup not in stoppers:
            stoppers.append(wakeup)


def unsubscribe(db: Database, wakeup: Wakeup) -> None:
    db.bus.unsubscribe(notify.JOBS, _lanes_callback(wakeup))
    stoppers = _STOPPERS.get(db, [])
    if isinstance(wakeup, VideoJobStopper) and wakeup in stoppers:
        stoppers.remove(wakeup)


def wake_after_commit(session: AsyncSession, lane: str) -> None:
    """Wake the workers of ``lane`` once this session's transaction commits (not at all if it
    rolls back): this process's at once, on PostgreSQL every process's (vidbox.notify)."""
    notify.announce(session, notify.JOBS, lane)


async def stop_video_jobs(db: Database, video_id: str, job_ids: list[int]) -> None:
    """After the commit that removed a video's jobs (``cancel_video_jobs``): stop the handlers
    this process runs for them now. Other processes hear of it through the VIDEO_DELETED
    announcement that commit made (or notice at their next lease renewal)."""
    for stopper in list(_STOPPERS.get(db, ())):
        await stopper.stop_video(video_id, job_ids)


# -- enqueue --------------------------------------------------------------------------------


async def enqueue(
    session: AsyncSession,
    kind: str,
    payload: dict[str, Any],
    *,
    lane: str = SMALL_LANE,
    idempotency_key: str | None = None,
    video_id: str | None = None,
    max_attempts: int = 5,
    run_at: datetime | None = None,
) -> Job:
    """Add a job inside the caller's transaction; it exists exactly when that commits.

    With ``idempotency_key``: while a job with that key is queued or running, that job is
    returned and nothing is added. A finished job holding the key is deleted to make room (its
    outcome is superseded by the new job). Workers of ``lane`` are woken after the commit.
    """
    if lane not in LANES:
        raise ValueError(f"unknown job lane {lane!r}")
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    encoded = json.dumps(payload)  # fails here, in the caller, if it is not JSON
    if idempotency_key is not None:
        existing = (
            await session.exec(select(Job).where(Job.idempotency_key == idempotency_key))
        ).first()
        if existing is not None:
            if existing.state in LIVE_STATES:
                return existing
            await session.delete(existing)
            await session.flush()
    now = utcnow()
    job = Job(
        kind=kind,
        lane=lane,
        payload=encoded,
        max_attempts=max_attempts,
        run_at=run_at or now,
        idempotency_key=idempotency_key,
        video_id=video_id,
        created_at=now,
        updated_at=now,
    )
    session.add(job)
    await session.flush()
    wake_after_commit(session, lane)
    return job


async def release_idempotency_key(session: AsyncSession, job_id: int) -> None:
    """Let a running job give up its key, so the next job with that key can be enqueued while
    this one is still running (a periodic job scheduling its successor)."""
    await session.exec(
        update(Job).where(col(Job.id) == job_id).values(idempotency_key=None, updated_at=utcnow())
    )


# -- claim and outcomes (used by the runner) --------------------------------------------------


def _owned(job: Job, worker: str) -> Any:
    """Matches the row only while this claim (worker + attempt) still holds it."""
    return (
        (col(Job.id) == job.id)
        & (col(Job.state) == JobState.RUNNING)
        & (col(Job.worker) == worker)
        & (col(Job.attempts) == job.attempts)
    )


async def reclaim_expired(session: AsyncSession, now: datetime) -> int:
    """Make jobs whose lease ran out (their process died or hung) runnable again. The attempt
    they were on stays counted, so a job that kills its process every time ends up dead.
    Rows another claimer is reclaiming right now are skipped, not waited for (two claimers
    updating the same rows in different orders could deadlock)."""
    expired = (
        select(Job.id)
        .where(
            col(Job.state) == JobState.RUNNING,
            or_(col(Job.lease_until).is_(None), col(Job.lease_until) < now),
        )
        .with_for_update(skip_locked=True)
    )
    result = await session.exec(
        update(Job)
        .where(col(Job.id).in_(expired), col(Job.state) == JobState.RUNNING)
        .values(
            state=JobState.QUEUED,
            lease_until=None,
            worker=None,
            last_error=LEASE_EXPIRED_MESSAGE,
            updated_at=now,
        )
    )
    return int(result.rowcount)


async def claim_next(
    db: Database,
    *,
    lane: str,
    kinds: Iterable[str],
    worker: str,
    lease_seconds: float,
    now: datetime | None = None,
) -> Job | None:
    """Take the oldest runnable job of ``lane`` whose kind is in ``kinds``, or None.

    Jobs of kinds this worker has no handler for are left for a process that has one. Expired
    leases (of any lane) are reclaimed in the same transaction.
    """
    now = now or utcnow()
    kinds = list(kinds)
    if not kinds:
        return None
    async with db.queue_session() as session:
        await reclaim_expired(session, now)
        runnable = (
            (col(Job.state) == JobState.QUEUED)
            & (col(Job.lane) == lane)
            & col(Job.kind).in_(kinds)
            & (col(Job.run_at) <= now)
        )
        if lane == MEDIA_LANE:
            job = await fair_pick(session, runnable)
        else:
            job = (
                await session.exec(
                    select(Job)
                    .where(runnable)
                    .order_by(col(Job.run_at), col(Job.id))
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
            ).first()
        if job is None:
            return None
        job.state = JobState.RUNNING
        job.attempts += 1
        job.lease_until = now + timedelta(seconds=lease_seconds)
        job.worker = worker
        job.claimed_at = now
        job.pids = None
        job.updated_at = now
        session.add(job)
    return job


async def _update_owned(db: Database, job: Job, owner: str, /, **values: Any) -> bool:
    async with db.queue_session() as session:
        result = await session.exec(update(Job).where(_owned(job, owner)).values(**values))
        return bool(result.rowcount)


async def renew_lease(
    db: Database, job: Job, *, worker: str, lease_seconds: float, now: datetime | None = None
) -> bool:
    """Extend the lease; False when the claim was lost (job deleted or reclaimed)."""
    now = now or utcnow()
    until = now + timedelta(seconds=lease_seconds)
    return await _update_owned(db, job, worker, lease_until=until, updated_at=now)


async def mark_succeeded(
    db: Database, job: Job, *, worker: str, now: datetime | None = None
) -> bool:
    now = now or utcnow()
    return await _update_owned(
        db,
        job,
        worker,
        state=JobState.SUCCEEDED,
        lease_until=None,
        waiting_since=None,
        finished_at=now,
        updated_at=now,
    )


async def mark_failed(
    db: Database,
    job: Job,
    message: str,
    *,
    worker: str,
    state: str = JobState.FAILED,
    now: datetime | None = None,
) -> bool:
    """A final failure: ``failed`` (permanent error) or ``dead`` (attempts used up)."""
    if state not in (JobState.FAILED, JobState.DEAD):
        raise ValueError(f"{state!r} is not a failed state")
    now = now or utcnow()
    return await _update_owned(
        db,
        job,
        worker,
        state=state,
        last_error=message,
        lease_until=None,
        waiting_since=None,
        finished_at=now,
        updated_at=now,
    )


async def mark_retry(
    db: Database,
    job: Job,
    message: str,
    *,
    worker: str,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> str | None:
    """A transient failure: back to ``queued`` after a backoff, or ``dead`` when this was the
    last allowed attempt. Returns the new state, or None when the claim was lost."""
    now = now or utcnow()
    if job.attempts >= job.max_attempts:
        done = await mark_failed(db, job, message, worker=worker, state=JobState.DEAD, now=now)
        return JobState.DEAD if done else None
    run_at = now + timedelta(seconds=backoff_seconds(job.attempts, rng))
    done = await _update_owned(
        db,
        job,
        worker,
        state=JobState.QUEUED,
        run_at=run_at,
        last_error=message,
        lease_until=None,
        worker=None,
        waiting_since=None,
        updated_at=now,
    )
    return JobState.QUEUED if done else None


async def mark_waiting(
    db: Database,
    job: Job,
    message: str,
    *,
    worker: str,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> bool:
    """Out of disk space: back to ``queued`` without counting the attempt, to look again after
    a pause (``disk_retry_seconds``). The caller gives up after DISK_WAIT_SECONDS."""
    now = now or utcnow()
    since = job.waiting_since or now
    delay = disk_retry_seconds((now - since).total_seconds(), rng)
    return await _update_owned(
        db,
        job,
        worker,
        state=JobState.QUEUED,
        attempts=_uncount_attempt(),
        run_at=now + timedelta(seconds=delay),
        waiting_since=since,
        last_error=message,
        lease_until=None,
        worker=None,
        updated_at=now,
    )


async def requeue(db: Database, job: Job, *, worker: str, now: datetime | None = None) -> bool:
    """Put back a job that was interrupted through no fault of its own (shutdown): runnable at
    once, and the interrupted attempt does not count."""
    now = now or utcnow()
    return await _update_owned(
        db,
        job,
        worker,
        state=JobState.QUEUED,
        attempts=_uncount_attempt(),
        run_at=now,
        lease_until=None,
        worker=None,
        updated_at=now,
    )


async def next_due(
    db: Database, *, lane: str, kinds: Iterable[str], now: datetime | None = None
) -> datetime | None:
    """When this lane next needs looking at without being told: the earliest future run_at
    of its queued jobs (a retry's backoff) or lease end of a running one (a dead worker's)."""
    now = now or utcnow()
    async with db.read() as session:
        queued = (
            await session.exec(
                select(func.min(col(Job.run_at))).where(
                    col(Job.state) == JobState.QUEUED,
                    col(Job.lane) == lane,
                    col(Job.kind).in_(list(kinds)),
                    col(Job.run_at) > now,
                )
            )
        ).one()
        lease = (
            await session.exec(
                select(func.min(col(Job.lease_until))).where(col(Job.state) == JobState.RUNNING)
            )
        ).one()
    moments = [m for m in (queued, lease) if m is not None]
    return min(moments) if moments else None


async def work_pending(db: Database, kinds: Iterable[str], *, now: datetime | None = None) -> bool:
    """Is a job of ``kinds`` runnable now, or is any job running (anywhere)?"""
    now = now or utcnow()
    runnable = (
        (col(Job.state) == JobState.QUEUED)
        & col(Job.kind).in_(list(kinds))
        & (col(Job.run_at) <= now)
    )
    async with db.read() as session:
        found = await session.exec(
            select(Job.id).where(runnable | (col(Job.state) == JobState.RUNNING)).limit(1)
        )
        return found.first() is not None


# -- cancelling ----------------------------------------------------------------------------


async def cancel_video_jobs(session: AsyncSession, video_id: str) -> list[int]:
    """Remove the live jobs of a deleted video inside the caller's transaction; returns the ids
    of those that were running. Their rows are deleted too: the runner that owns one notices
    (``stop_video_jobs`` after the commit at once in this process, the next lease renewal in
    any other)
    and cancels the handler without recording an outcome."""
    running = list(
        (
            await session.exec(
                select(Job.id).where(
                    col(Job.video_id) == video_id, col(Job.state) == JobState.RUNNING
                )
            )
        ).all()
    )
    await session.exec(
        delete(Job).where(col(Job.video_id) == video_id, col(Job.state).in_(LIVE_STATES))
    )
    notify.announce(session, notify.VIDEO_DELETED, video_id)
    return [job_id for job_id in running if job_id is not None]
