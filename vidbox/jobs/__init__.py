"""The durable job queue and the tasks it runs.

A job is a row in the ``jobs`` table (see vidbox.models.Job). Code that wants work done calls
``vidbox.jobs.queue.enqueue(session, kind, payload, ...)`` inside its own transaction, so the job
exists exactly when the change that asked for it is committed, and the commit wakes the idle
workers of its lane by itself (queue.wake_after_commit). ``JobRunner`` (runner.py) claims
runnable jobs atomically, runs the handler registered for their kind (a ``JobHandler``, or a
bare function for a kind with no gave-up hook) with a ``JobContext``, and records the outcome:

- the handler returns: the job succeeded;
- it raises ``PermanentJobError``: the job failed for good (e.g. unreadable media), no retry;
- it raises ``WaitingForDisk``: the disk is full; the job is retried with growing pauses
  without counting attempts, for up to a day, then it is ``dead``;
- it raises anything else: a transient failure, retried with exponential backoff and jitter
  until ``max_attempts``, then the job is ``dead`` (visible to admins, who can retry it);
- it is cancelled (shutdown, or the video was deleted): the job is requeued (shutdown) or
  dropped (deletion) without counting an attempt.

Handlers must be idempotent: a job may run again after a crash (the next start of the data
dir puts it back; another process reclaims it when its lease expires) or a retry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vidbox.services import Services


class PermanentJobError(Exception):
    """Retrying cannot help. ``str(exc)`` is a sentence a person understands."""


class WaitingForDisk(Exception):
    """Out of disk space: retrying helps once space is freed. ``str(exc)`` is a sentence."""


def _no_limit(seconds: float) -> None:
    return None


@dataclass
class JobContext:
    job_id: int
    kind: str
    payload: dict[str, Any]
    attempt: int  # 1 for the first run
    services: Services
    # Let the handler set its own time limit once it knows its work (a video's duration):
    # the attempt is stopped ``seconds`` from the call. Until then the kind's limit applies.
    set_time_limit: Callable[[float], None] = field(default=_no_limit)


JobFunction = Callable[[JobContext], Coroutine[Any, Any, None]]
GaveUpHook = Callable[[JobContext, str], Awaitable[None]]


@dataclass(frozen=True)
class JobHandler:
    """A kind's code: ``run`` does one attempt; ``on_gave_up``, when set, is awaited with the
    final sentence once the runner stops retrying (the job is FAILED or DEAD), before the row
    is marked, so it can say why on whatever the job was for."""

    run: JobFunction
    on_gave_up: GaveUpHook | None = None


# A kind without a gave-up hook may be registered as its bare function.
Handler = JobFunction | JobHandler


def job_handler(handler: Handler) -> JobHandler:
    return handler if isinstance(handler, JobHandler) else JobHandler(handler)


# Lanes have separate concurrency limits so mail never waits behind a transcode.
MEDIA_LANE = "media"
SMALL_LANE = "small"
