"""Helpers for the job tests: rows straight in the database, and waiting with a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import update
from sqlmodel import col, select

from vidbox.db import Database
from vidbox.models import Job, User, Video, VideoStatus, new_id, utcnow

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def eventually(
    check: Callable[[], Awaitable[object]], *, within: float = 10.0, what: str = ""
) -> None:
    """Poll the async ``check`` until it is truthy; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what or check}")
        await asyncio.sleep(0.02)


async def wait_event(event: asyncio.Event, within: float = 10.0) -> None:
    await asyncio.wait_for(event.wait(), within)


async def get_job(db: Database, job_id: int) -> Job | None:
    async with db.read() as session:
        return await session.get(Job, job_id)


async def all_jobs(db: Database) -> list[Job]:
    async with db.read() as session:
        return list((await session.exec(select(Job).order_by(col(Job.id)))).all())


async def set_job(db: Database, job_id: int, **values: Any) -> None:
    """Write a job row behind the queue's back (moving time, simulating a crash)."""
    async with db.session() as session:
        await session.exec(update(Job).where(col(Job.id) == job_id).values(**values))  # type: ignore[call-overload]


async def make_due(db: Database, job_id: int) -> None:
    await set_job(db, job_id, run_at=utcnow() - timedelta(seconds=1))


async def add_user(db: Database) -> str:
    async with db.session() as session:
        user = User(email=f"{new_id()}@example.org", password_hash="x")
        session.add(user)
    return user.id


async def add_video(db: Database, owner_id: str, status: str = VideoStatus.READY) -> str:
    async with db.session() as session:
        video = Video(owner_id=owner_id, title="A video", status=status)
        session.add(video)
    return video.id


async def video_exists(db: Database, video_id: str) -> bool:
    async with db.read() as session:
        return await session.get(Video, video_id) is not None
