"""What a finished, failed or stopped job leaves behind: the row's new state, the on_gave_up
hook, the log line. Used by JobRunner (vidbox.jobs.runner), which decides when jobs run."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from vidbox.db import cancel_outside_sessions
from vidbox.jobs import JobContext, JobHandler, PermanentJobError, WaitingForDisk
from vidbox.jobs.queue import (
    DISK_WAIT_SECONDS,
    mark_failed,
    mark_retry,
    mark_succeeded,
    mark_waiting,
    requeue,
)
from vidbox.logs import log_fields
from vidbox.models import Job, JobState

if TYPE_CHECKING:
    from vidbox.db import Database

log = logging.getLogger("vidbox.jobs")

GAVE_UP_HOOK_SECONDS = 60.0

# Why the runner cancelled a handler; decides what is recorded.
SHUTDOWN = "requeued"  # put back without counting the attempt
CANCELLED = "cancelled"  # its video was deleted: the row is gone
LOST = "lost"  # the claim was lost (row deleted or reclaimed elsewhere): not ours to record
TIMEOUT = "timeout"  # a transient failure
WAITING = "waiting"  # for disk space; the attempt is not counted


@dataclass(eq=False)
class WorkerGroup:
    """The workers of start() or of one run_until_idle() call."""

    stopping: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


@dataclass(eq=False)
class RunningJob:
    job: Job
    task: asyncio.Task[None]
    group: WorkerGroup
    reason: str | None = None

    def stop(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        cancel_outside_sessions(self.task)


def describe_error(exc: BaseException) -> str:
    """``last_error`` text: the message of our own errors (sentences), the type too for
    built-in ones, whose bare message (``'key'``) says little."""
    if isinstance(exc, OSError) and exc.strerror:
        # Not str(exc): it names the file, and server paths are not for the job's owner.
        return f"{type(exc).__name__}: {exc.strerror}"
    text = str(exc).strip()
    if isinstance(exc, PermanentJobError) or (text and type(exc).__module__ != "builtins"):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def settle(
    db: Database,
    running: RunningJob,
    handler: JobHandler,
    ctx: JobContext,
    *,
    worker: str,
    clock: Callable[[], datetime],
    rng: random.Random,
    time_limit: float,
) -> tuple[str, str | None]:
    """Record what happened to a job that ran; returns (outcome, error message)."""
    job, task = running.job, running.task
    finished = task.done() and not task.cancelled()
    exc = task.exception() if finished else None
    if running.reason in (CANCELLED, LOST):
        return running.reason, None  # the row is gone or belongs to another worker now
    if finished and exc is None:
        kept = await mark_succeeded(db, job, worker=worker, now=clock())
        return (JobState.SUCCEEDED if kept else LOST), None
    if running.reason == SHUTDOWN:
        kept = await requeue(db, job, worker=worker, now=clock())
        return (SHUTDOWN if kept else LOST), None
    if running.reason == TIMEOUT:
        message = f"The job ran longer than its {time_limit:g}-second limit and was stopped."
    elif exc is None:
        message = "The job was cancelled before it finished."
    elif isinstance(exc, PermanentJobError):
        message = describe_error(exc)
        return await give_up(
            db, handler, ctx, job, message, JobState.FAILED, worker=worker, now=clock()
        )
    elif isinstance(exc, WaitingForDisk):
        message, now = describe_error(exc), clock()
        if job.waiting_since and (now - job.waiting_since).total_seconds() >= DISK_WAIT_SECONDS:
            final = f"Gave up after {DISK_WAIT_SECONDS / 3600:g} hours of waiting. {message}"
            return await give_up(
                db, handler, ctx, job, final, JobState.DEAD, worker=worker, now=now
            )
        kept = await mark_waiting(db, job, message, worker=worker, now=now, rng=rng)
        return (WAITING if kept else LOST), message
    else:
        message = describe_error(exc)
    if job.attempts >= job.max_attempts:
        final = f"Gave up after {job.attempts} attempts. {message}"
        return await give_up(
            db, handler, ctx, job, final, JobState.DEAD, worker=worker, now=clock()
        )
    state = await mark_retry(db, job, message, worker=worker, now=clock(), rng=rng)
    return ("retry" if state else LOST), message


async def give_up(
    db: Database,
    handler: JobHandler,
    ctx: JobContext,
    job: Job,
    message: str,
    state: str,
    *,
    worker: str,
    now: datetime,
) -> tuple[str, str]:
    """Mark a job FAILED or DEAD after running its handler's on_gave_up hook."""
    # The hook runs before the row is marked: if the process dies in between, the job is
    # reclaimed and given up on again, so a video is never left "processing" forever.
    if handler.on_gave_up is not None:
        try:
            async with asyncio.timeout(GAVE_UP_HOOK_SECONDS):
                await handler.on_gave_up(ctx, message)
        except Exception:
            log.exception(
                "the job's on_gave_up hook failed",
                extra=log_fields(kind=job.kind, job_id=job.id),
            )
    kept = await mark_failed(db, job, message, worker=worker, state=state, now=now)
    return (state if kept else LOST), message


def log_finish(
    fields: dict[str, object],
    started: float,
    outcome: str,
    error: str | None,
    task: asyncio.Task[None] | None = None,
) -> None:
    ms = round((time.monotonic() - started) * 1000)
    if error is None:
        log.info("job finished", extra=log_fields(**fields, ms=ms, outcome=outcome))
        return
    exc = task.exception() if task and task.done() and not task.cancelled() else None
    log.warning(
        "job finished",
        extra=log_fields(**fields, ms=ms, outcome=outcome, error=error),
        exc_info=exc if exc and not isinstance(exc, PermanentJobError) else None,
    )


class TimeLimit:
    """An attempt's time limit, which its handler may set anew (``JobContext.set_time_limit``)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._started = time.monotonic()
        self._deadline = self._started + seconds
        self._changed = asyncio.Event()

    def set(self, seconds: float) -> None:
        """Stop the attempt ``seconds`` from now."""
        now = time.monotonic()
        self._deadline = now + seconds
        self.seconds = round(now - self._started + seconds)
        self._changed.set()

    async def wait(self, task: asyncio.Task[None]) -> bool:
        """Wait for ``task`` until the deadline; False when the deadline came first."""
        while not task.done():
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.clear()
            changed = asyncio.ensure_future(self._changed.wait())
            try:
                await asyncio.wait(
                    {task, changed}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                changed.cancel()
        return True
