"""Fixed-window rate limits stored in the database (shared by every vidbox process)."""

from __future__ import annotations

from datetime import timedelta

from vidbox.db import Database
from vidbox.errors import TooManyRequests
from vidbox.models import RateLimit, utcnow


class RateLimiter:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def check(self, key: str, *, limit: int, window: timedelta) -> None:
        """Raise TooManyRequests (with Retry-After) when ``key`` has used up its window."""
        async with self.db.read() as session:
            row = await session.get(RateLimit, key)
        now = utcnow()
        if row and row.window_start + window > now and row.count >= limit:
            retry = int((row.window_start + window - now).total_seconds()) + 1
            raise TooManyRequests(retry_after=retry)

    async def record(self, key: str, *, window: timedelta) -> int:
        """Count one event for ``key``; returns the count in the current window."""
        now = utcnow()
        async with self.db.session() as session:
            row = await session.get(RateLimit, key)
            if row is None:
                row = RateLimit(key=key, window_start=now, count=0)
                session.add(row)
            elif row.window_start + window <= now:
                row.window_start, row.count = now, 0
            row.count += 1
            return row.count

    async def hit(self, key: str, *, limit: int, window: timedelta) -> None:
        """Count an attempt, refusing it once the window is used up."""
        await self.check(key, limit=limit, window=window)
        await self.record(key, window=window)

    async def reset(self, key: str) -> None:
        async with self.db.session() as session:
            row = await session.get(RateLimit, key)
            if row is not None:
                await session.delete(row)
