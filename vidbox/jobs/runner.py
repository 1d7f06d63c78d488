"""JobRunner: asyncio workers that claim jobs from the database and run their handlers.

Each lane has its own worker slots, so mail never waits behind a transcode. A worker claims a
job (queue.claim_next), runs the handler in a task of its own, renews the job's lease every
third of the lease while it runs, stops it when it overruns its kind's timeout, and records the
outcome. All state that matters is in the database: a second process sharing it behaves the
same, and a process killed mid-job loses nothing: the next start of this data dir takes its
jobs back at once (vidbox.jobs.leftovers), any other process when their lease expires.
Every commit that enqueued a job wakes the workers of that job's lane (queue.subscribe,
queue.wake_after_commit): in this process, and on PostgreSQL in every process (LISTEN/NOTIFY,
vidbox.notify). While those announcements reach us, an idle worker sleeps until the next
moment the table itself says to look (a retry's backoff, a lease's end; at most
LISTENING_POLL_SECONDS); otherwise (SQLite shared by several processes, or the listening
connection down) it polls every ``poll_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from vidbox.jobs import MEDIA_LANE, SMALL_LANE, Handler, JobContext, job_handler
from vidbox.jobs.leftovers import RunnerLock, recover_dead_runners, sweep_work_dirs
from vidbox.jobs.outcomes import (
    CANCELLED,
    LOST,
    SHUTDOWN,
    TIMEOUT,
    RunningJob,
    TimeLimit,
    WorkerGroup,
    give_up,
    log_finish,
    settle,
)
from vidbox.jobs.queue import (
    LEASE_EXPIRED_MESSAGE,
    cancel_video_jobs,
    claim_next,
    enqueue,
    job_payload,
    next_due,
    renew_lease,
    requeue,
    subscribe,
    unsubscribe,
    work_pending,
)
from vidbox.logs import log_fields
from vidbox.models import Job, JobState, utcnow
from vidbox.notify import VIDEO_DELETED

if TYPE_CHECKING:
    from vidbox.services import Services

log = logging.getLogger("vidbox.jobs")

PROCESS_VIDEO_KIND = "process_video"
DEFAULT_SMALL_CONCURRENCY = 2
# Kinds without a limit of their own: long enough for any mail or sweep, short enough that a
# handler stuck on a dead connection gives its slot back.
DEFAULT_TIMEOUT_SECONDS = 3600.0
# A handler told to stop gets this long to unwind (FFmpeg's own stop takes up to ~6 s) before
# its worker gives up waiting on it.
UNWIND_SECONDS = 30.0
STOP_EXTRA_SECONDS = 5.0
# An idle worker that hears every enqueue still looks this often on its own (a missed
# notification, a clock step).
LISTENING_POLL_SECONDS = 30.0
# A retry downloads the original from storage before anything else: gigabytes from S3.
SOURCE_SECONDS = 3600.0


class JobRunner:
    def __init__(
        self,
        services: Services,
        handlers: Mapping[str, Handler],
        *,
        concurrency: Mapping[str, int] | None = None,
        lease_seconds: float | None = None,
        poll_seconds: float = 1.0,
        timeout_seconds: Mapping[str, float] | None = None,
        default_timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        startup_jobs: Iterable[str] = ("cleanup",),
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
    ) -> None:
        """``concurrency``: workers per lane (media: settings.processing.concurrency, small: 2).
        ``timeout_seconds``: per kind (process_video: see SOURCE_SECONDS).
        ``startup_jobs``: kinds enqueued by start() under their own name as idempotency key,
        so one of each is always scheduled (the cleanup handler schedules its next run)."""
        settings = services.settings
        self.services = services
        self.handlers = {kind: job_handler(handler) for kind, handler in handlers.items()}
        self.concurrency = {
            MEDIA_LANE: settings.processing.concurrency,
            SMALL_LANE: DEFAULT_SMALL_CONCURRENCY,
            **(concurrency or {}),
        }
        self.lease_seconds = float(lease_seconds or settings.processing.lease_seconds)
        self.poll_seconds = poll_seconds
        self.timeout_seconds = {
            # Until the handler knows the video's duration (vidbox.jobs.process_video sets
            # its own limit then), it may take this long to get hold of the source.
            PROCESS_VIDEO_KIND: max(settings.processing.timeout_minutes * 60.0, SOURCE_SECONDS),
            **(timeout_seconds or {}),
        }
        self.default_timeout_seconds = default_timeout_seconds
        self.startup_jobs = tuple(startup_jobs)
        self.clock = clock
        self.rng = rng or random.Random()
        # Unique per runner, so two processes (or two runners in a test) never share a claim.
        self.runner_id = uuid.uuid4().hex[:16]
        self.name = f"{socket.gethostname()[:60]}:{os.getpid()}:{self.runner_id}"
        self._lock = RunnerLock(settings.data_dir, self.runner_id)
        self._group: WorkerGroup | None = None
        self._running: dict[int, RunningJob] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        # One event per worker: "look again". Each worker clears only its own, so a wake-up
        # is never lost to a sibling that cleared a shared event first.
        self._wakeups: dict[asyncio.Event, str] = {}
        self._activity = asyncio.Event()
        self._stopping_tasks: set[asyncio.Task[None]] = set()

    # -- public API ----------------------------------------------------------------------------

    @property
    def running_job_ids(self) -> list[int]:
        return sorted(self._running)

    async def start(self) -> None:
        """Enqueue the startup jobs and start one worker task per slot of each lane."""
        if self._group is not None:
            return
        self._bind_loop()
        self._group = WorkerGroup()
        subscribe(self.services.db, self)
        self.services.db.bus.subscribe(VIDEO_DELETED, self._video_deleted)
        await self._recover()
        await self._enqueue_startup_jobs()
        self._spawn(self._group)
        log.info("job runner started", extra=log_fields(worker=self.name, **self.concurrency))

    def _video_deleted(self, video_ids: frozenset[str] | None) -> None:
        """notify.VIDEO_DELETED from any process: stop what we run for those videos now,
        rather than at the next lease renewal."""
        if not video_ids or self._loop is None:
            return
        running = {r.job.video_id for r in self._running.values() if r.job.video_id}
        for video_id in running & video_ids:
            self._loop.call_soon_threadsafe(self._stop_later, video_id)

    def _stop_later(self, video_id: str) -> None:
        task = asyncio.create_task(self.stop_video(video_id, []))
        self._stopping_tasks.add(task)
        task.add_done_callback(self._stopping_tasks.discard)

    def notify(self, lanes: frozenset[str]) -> None:
        """queue.Wakeup: jobs of ``lanes`` were committed. Safe from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        for lane in lanes:
            if here is loop:
                self.wake(lane)
            else:  # asyncio events belong to the runner's loop
                loop.call_soon_threadsafe(self.wake, lane)

    def wake(self, lane: str | None = None) -> None:
        """Let idle workers (of ``lane``, or all) look for a job now. Enqueueing wakes them by
        itself after the commit (``notify``); calling it early is harmless but useless."""
        if self._loop is None:
            return
        for event, worker_lane in self._wakeups.items():
            if lane is None or worker_lane == lane:
                event.set()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming, cancel running handlers and put their jobs back (the attempt does
        not count). Returns within ``grace`` + 5 seconds even if a handler will not stop; its
        job is then reclaimed when its lease runs out."""
        group, self._group = self._group, None
        if group is None:
            return
        unsubscribe(self.services.db, self)
        self.services.db.bus.unsubscribe(VIDEO_DELETED, self._video_deleted)
        group.stopping = True
        self.wake()
        for running in list(self._running.values()):
            running.stop(SHUTDOWN)
        if group.tasks:
            _, pending = await asyncio.wait(group.tasks, timeout=grace)
            if pending:
                log.error(
                    "job workers did not stop in time; their jobs will be reclaimed later",
                    extra=log_fields(workers=len(pending)),
                )
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending, timeout=STOP_EXTRA_SECONDS)
        self._lock.release()
        log.info("job runner stopped", extra=log_fields(worker=self.name))

    async def cancel_video(self, video_id: str) -> list[int]:
        """Drop the jobs of a deleted video: queued ones are removed, running handlers are
        cancelled (and waited for, briefly) and their rows removed, nothing is retried.
        Returns the ids of the jobs that were running."""
        async with self.services.db.session() as session:
            running_ids = await cancel_video_jobs(session, video_id)
        await self.stop_video(video_id, running_ids)
        return running_ids

    async def stop_video(self, video_id: str, job_ids: list[int]) -> None:
        """queue.VideoJobStopper: the jobs of a deleted video are gone from the table; stop
        their handlers here (waiting for them, briefly) and remove their work folders."""
        targets = [
            running
            for running in self._running.values()
            if running.job.video_id == video_id or running.job.id in job_ids
        ]
        for running in targets:
            running.stop(CANCELLED)
        if targets:
            await asyncio.wait([running.task for running in targets], timeout=UNWIND_SECONDS)
        # Folders of attempts that died with an earlier process hold a link to the whole
        # upload: they go with the video, not a day later.
        try:
            await sweep_work_dirs(
                self.services.db, self.services.settings.data_dir, video_id=video_id
            )
        except Exception:
            log.warning("removing a deleted video's work folders failed", exc_info=True)

    async def run_until_idle(self, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        """Burst mode, for tests and tools: run workers (every lane) until no job this runner
        can handle is runnable now and none is running, then stop them. Needs no start().
        Raises TimeoutError after ``timeout`` seconds (running handlers are then cancelled and
        their jobs put back)."""
        self._bind_loop()
        group = WorkerGroup()
        started = self._group is not None  # then start() subscribed, and stop() unsubscribes
        subscribe(self.services.db, self)
        self._spawn(group)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    self._activity.clear()
                    if not await work_pending(self.services.db, self.handlers, now=self.clock()):
                        # A job that ended while we looked may have enqueued one due after
                        # the ``now`` we asked with (seen often on PostgreSQL's slower round
                        # trips): look again.
                        if self._activity.is_set():
                            continue
                        break
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._activity.wait(), self.poll_seconds)
        finally:
            if not started:
                unsubscribe(self.services.db, self)
            group.stopping = True
            self.wake()
            for running in list(self._running.values()):
                if running.group is group:
                    running.stop(SHUTDOWN)
            await asyncio.wait(group.tasks)

    # -- workers -------------------------------------------------------------------------------

    def _bind_loop(self) -> None:
        # Events belong to one event loop; a runner may be used from several asyncio.run calls.
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._wakeups = {}
            self._activity = asyncio.Event()

    def _spawn(self, group: WorkerGroup) -> None:
        for lane, count in self.concurrency.items():
            for slot in range(count):
                worker = f"{self.name}/{lane}{slot}"
                task = asyncio.create_task(self._worker(group, lane, worker), name=worker)
                group.tasks.append(task)

    async def _recover(self) -> None:
        """Take this runner's life lock, then clear what dead runners of this data dir left:
        their jobs run again at once (see vidbox.jobs.leftovers), their folders go."""
        data_dir = self.services.settings.data_dir
        try:
            await asyncio.to_thread(self._lock.acquire)
            recovered = await recover_dead_runners(self.services.db, data_dir)
            removed = await sweep_work_dirs(self.services.db, data_dir)
        except Exception:
            log.exception("clearing what a stopped server left behind failed")
            return
        if recovered or removed:
            log.info(
                "cleared what a stopped server left behind",
                extra=log_fields(jobs=recovered, folders=removed),
            )

    async def _enqueue_startup_jobs(self) -> None:
        kinds = [kind for kind in self.startup_jobs if kind in self.handlers]
        if not kinds:
            return
        try:
            async with self.services.db.session() as session:
                for kind in kinds:
                    await enqueue(session, kind, {}, idempotency_key=kind)
        except Exception:
            log.exception("could not schedule the startup jobs", extra=log_fields(kinds=kinds))

    async def _worker(self, group: WorkerGroup, lane: str, worker: str) -> None:
        wakeup = asyncio.Event()
        self._wakeups[wakeup] = lane
        try:
            while not group.stopping:
                wakeup.clear()  # before looking: a wake-up during the claim is not lost
                job = await self._claim(lane, worker)
                if job is None:
                    if not group.stopping:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(wakeup.wait(), await self._idle_seconds(lane))
                    continue
                self.wake(lane)  # there may be more: idle siblings should look too
                try:
                    if group.stopping:
                        await requeue(self.services.db, job, worker=worker, now=self.clock())
                        break
                    await self._run(group, job, worker)
                except Exception:
                    log.exception(
                        "the job runner failed around a job; it is retried when its lease ends",
                        extra=log_fields(kind=job.kind, job_id=job.id),
                    )
                finally:
                    self._activity.set()
                    self.wake()  # the handler may have enqueued follow-up jobs
        finally:
            self._wakeups.pop(wakeup, None)

    async def _idle_seconds(self, lane: str) -> float:
        """How long an idle worker sleeps unless woken (see the module docstring)."""
        if not self.services.db.bus.listening:
            return self.poll_seconds
        longest = max(self.poll_seconds, LISTENING_POLL_SECONDS)
        try:
            now = self.clock()
            due = await next_due(self.services.db, lane=lane, kinds=self.handlers, now=now)
        except Exception:
            log.warning("could not read when the next job is due", exc_info=True)
            return self.poll_seconds
        if due is None:
            return longest
        if due.tzinfo is None:
            due = due.replace(tzinfo=UTC)
        return min(longest, max(0.05, (due - now).total_seconds() + 0.05))

    async def _claim(self, lane: str, worker: str) -> Job | None:
        try:
            return await claim_next(
                self.services.db,
                lane=lane,
                kinds=self.handlers,
                worker=worker,
                lease_seconds=self.lease_seconds,
                now=self.clock(),
            )
        except Exception:
            log.exception("claiming a job failed", extra=log_fields(lane=lane))
            return None

    async def _run(self, group: WorkerGroup, job: Job, worker: str) -> None:
        assert job.id is not None
        handler = self.handlers[job.kind]
        started = time.monotonic()
        fields = {"kind": job.kind, "job_id": job.id, "attempt": job.attempts}
        log.info("job started", extra=log_fields(**fields, lane=job.lane, video_id=job.video_id))
        try:
            payload, unreadable = job_payload(job), False
        except ValueError:
            payload, unreadable = {}, True
        limit = TimeLimit(self._timeout_for(job.kind))
        ctx = JobContext(job.id, job.kind, payload, job.attempts, self.services, limit.set)
        if job.attempts > job.max_attempts or unreadable:
            # Reclaimed after its last allowed attempt died with its process (a job that
            # crashes the box must not crash it forever), or unreadable: do not run it.
            if job.attempts > job.max_attempts:
                reason = job.last_error or LEASE_EXPIRED_MESSAGE
                message = f"Gave up after {job.max_attempts} attempts. {reason}"
                state = JobState.DEAD
            else:
                message, state = "The job's data cannot be read.", JobState.FAILED
            error: str | None
            outcome, error = await give_up(
                self.services.db, handler, ctx, job, message, state, worker=worker, now=self.clock()
            )
            log_finish(fields, started, outcome, error)
            return

        task = asyncio.create_task(handler.run(ctx), name=f"job-{job.id}-{job.kind}")
        running = RunningJob(job, task, group)
        self._running[job.id] = running
        heartbeat = asyncio.create_task(self._heartbeat(running, worker))
        try:
            if not await limit.wait(task):
                running.stop(TIMEOUT)
            if not task.done():
                await asyncio.wait({task}, timeout=UNWIND_SECONDS)
            if not task.done():
                log.error("a job handler ignored cancellation", extra=log_fields(**fields))
        except asyncio.CancelledError:
            task.cancel()  # the worker itself is being stopped hard
            raise
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            self._running.pop(job.id, None)
        outcome, error = await settle(
            self.services.db,
            running,
            handler,
            ctx,
            worker=worker,
            clock=self.clock,
            rng=self.rng,
            time_limit=limit.seconds,
        )
        log_finish(fields, started, outcome, error, running.task)
        if job.lane == MEDIA_LANE:
            # Whatever this attempt, or one that died before it, left in tmp goes now.
            try:
                await sweep_work_dirs(self.services.db, self.services.settings.data_dir)
            except Exception:
                log.warning("removing work folders of stopped attempts failed", exc_info=True)

    async def _heartbeat(self, running: RunningJob, worker: str) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                kept = await renew_lease(
                    self.services.db,
                    running.job,
                    worker=worker,
                    lease_seconds=self.lease_seconds,
                    now=self.clock(),
                )
            except Exception:
                # The lease outlives two missed renewals; the next one may well succeed.
                log.warning("renewing a job lease failed", exc_info=True)
                continue
            if not kept:
                running.stop(LOST)
                return

    def _timeout_for(self, kind: str) -> float:
        return self.timeout_seconds.get(kind, self.default_timeout_seconds)
