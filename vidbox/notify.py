"""Telling everyone who shares the database that something changed, when the change commits.

Code that changes something other parts keep in memory (a job is runnable, a sign-in was
revoked, a video was deleted) calls ``announce(session, topic, detail)`` inside its write
transaction. When that transaction commits, every subscriber of the topic hears of it: in
this process at once (SQLAlchemy's after_commit), and on PostgreSQL in every other vidbox
process too, because the announcement also goes out as ``pg_notify`` in the transaction,
which the server delivers to every listening connection at commit and drops on rollback. So
a worker on another host claims a new job within a round trip instead of at its next poll,
and a token revoked on one web process is refused by the others at once rather than when
their two-second caches expire (the caches stay as a backstop).

Each process LISTENs on one connection of its own (``Bus.start``). While that connection is
down nothing is heard from other processes, so on every (re)connect subscribers get a
*resync* (details ``None``: anything may have changed) and the job runner falls back to
polling every second. SQLite has no such channel: there a Bus is in-process only, and other
processes sharing the file poll as before.

Subscribers are called synchronously in the committing task (or the listener's): they must
not do I/O, only clear caches, set events or schedule work.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session
from sqlmodel.ext.asyncio.session import AsyncSession

CHANNEL = "vidbox"
# Topics and what their details are.
JOBS = "jobs"  # lanes that have runnable jobs
AUTH = "auth"  # nothing: signed-in principals may have changed (revoked, disabled, renamed)
VIDEOS = "videos"  # ids of videos whose row changed in a way media checks care about
VIDEO_DELETED = "video-deleted"  # ids of deleted videos: stop their running jobs

# Details of one topic: the set announced in one transaction, or None for "anything".
Callback = Callable[[frozenset[str] | None], None]

PING_SECONDS = 15.0  # a connection that died without a FIN is noticed this soon
RECONNECT_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)

_PENDING = "vidbox.notify.pending"  # session.info: {topic: {details}} for the next commit
_HOOKED = "vidbox.notify.hooked"
BUS_KEY = "vidbox.notify.bus"  # session.info: the Bus of the session's Database

log = logging.getLogger("vidbox.notify")


class Bus:
    """Subscribers of one Database, and (on PostgreSQL) the connection that hears the others.

    ``dsn``: asyncpg's connection string, or "" for in-process only (SQLite)."""

    def __init__(self, dsn: str = "") -> None:
        self.dsn = dsn
        self.shared = bool(dsn)
        # Our own notifications come back from the server too; they were delivered here at
        # commit already.
        self.origin = uuid.uuid4().hex
        self._subscribers: dict[str, list[Callback]] = {}
        self._task: asyncio.Task[None] | None = None
        self._listening = False
        self.connected = asyncio.Event()  # for tests and readiness: LISTEN is in place

    @property
    def listening(self) -> bool:
        """True while other processes' announcements reach this one."""
        return self._listening

    def subscribe(self, topic: str, callback: Callback) -> None:
        callbacks = self._subscribers.setdefault(topic, [])
        if callback not in callbacks:
            callbacks.append(callback)

    def unsubscribe(self, topic: str, callback: Callback) -> None:
        callbacks = self._subscribers.get(topic, [])
        if callback in callbacks:
            callbacks.remove(callback)

    def subscribers(self, topic: str) -> list[Callback]:
        return list(self._subscribers.get(topic, ()))

    def deliver(self, topic: str, details: frozenset[str] | None) -> None:
        for callback in self.subscribers(topic):
            # The change is committed: a failing subscriber must not turn it into an error.
            try:
                callback(details)
            except Exception:
                log.exception("a subscriber failed", extra={"topic": topic})

    def resync(self) -> None:
        for topic in list(self._subscribers):
            self.deliver(topic, None)

    # -- across processes (PostgreSQL) -----------------------------------------------------

    async def start(self) -> None:
        """Listen for other processes' announcements until ``close``; returns at once."""
        if self.shared and self._task is None:
            self._task = asyncio.create_task(self._listen_forever(), name="vidbox-listen")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _listen_forever(self) -> None:
        import asyncpg  # type: ignore[import-untyped]  # only PostgreSQL boxes have it installed and need it

        failures = 0
        while True:
            conn: Any = None
            try:
                conn = await asyncpg.connect(self.dsn, timeout=10)
                lost = asyncio.Event()
                conn.add_termination_listener(_setter(lost))
                await conn.add_listener(CHANNEL, self._heard)
                if failures:
                    log.info("hearing other vidbox processes again")
                failures = 0
                self._listening = True
                self.connected.set()
                # Whatever was announced while we were not listening is lost: look again.
                self.resync()
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), PING_SECONDS)
                    if not lost.is_set():
                        await conn.execute("SELECT 1", timeout=PING_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if failures == 0:
                    log.warning(
                        "not hearing other vidbox processes (they are polled until this "
                        "reconnects): %s",
                        exc,
                    )
            finally:
                self._listening = False
                self.connected.clear()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close(timeout=2))
            await asyncio.sleep(RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)])
            failures += 1

    def _heard(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            message = json.loads(payload)
            if message.get("o") == self.origin:
                return
            for topic, details in message["t"].items():
                self.deliver(topic, frozenset(str(d) for d in details) or None)
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("ignored a malformed notification", extra={"payload": payload[:200]})


def _setter(flag: asyncio.Event) -> Callable[[object], None]:
    return lambda _conn: flag.set()


def encode(origin: str, pending: dict[str, set[str]]) -> str:
    """One notification for a transaction's announcements (PostgreSQL takes up to 8000
    bytes; a transaction that would exceed it announces its topics without details, which
    every subscriber takes as "anything may have changed")."""
    payload = json.dumps(
        {"o": origin, "t": {t: sorted(d) for t, d in pending.items()}}, separators=(",", ":")
    )
    if len(payload.encode()) <= 7900:
        return payload
    return json.dumps({"o": origin, "t": {t: [] for t in pending}}, separators=(",", ":"))


# -- announcing -------------------------------------------------------------------------------


def announce(session: AsyncSession, topic: str, *details: str) -> None:
    """Tell ``topic``'s subscribers everywhere about ``details`` once this transaction commits
    (nobody, if it rolls back). Only in write sessions (``Database.session()``)."""
    info = session.info
    pending: dict[str, set[str]] = info.setdefault(_PENDING, {})
    pending.setdefault(topic, set()).update(details)
    if not info.get(_HOOKED):
        info[_HOOKED] = True
        sync = session.sync_session
        event.listen(sync, "before_commit", _before_commit)
        event.listen(sync, "after_commit", _after_commit)
        event.listen(sync, "after_rollback", _after_rollback)


def _before_commit(session: Session) -> None:
    bus: Bus | None = session.info.get(BUS_KEY)
    pending = session.info.get(_PENDING)
    if bus is None or not bus.shared or not pending:
        return
    # Inside the transaction: the server sends it when (and only if) the commit succeeds.
    session.execute(
        sa.text("SELECT pg_notify(:channel, :payload)"),
        {"channel": CHANNEL, "payload": encode(bus.origin, pending)},
    )


def _after_commit(session: Session) -> None:
    pending: dict[str, set[str]] | None = session.info.pop(_PENDING, None)
    bus: Bus | None = session.info.get(BUS_KEY)
    if not pending or bus is None:
        return
    for topic, details in pending.items():
        bus.deliver(topic, frozenset(details) if details else None)


def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)
