"""Fixed-window rate limits stored in the database (shared by every vidbox process).

An attempt is counted before the work it limits (a password check, a mail) and refused when
the count passes the limit. Counting and checking are one statement, an upsert that returns
the new count, so requests arriving together cannot all read "under the limit" before any of
them is counted: with a limit of 8, 200 parallel guesses give 8 password checks and 192 429s.
The statement is ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``, which SQLite and
PostgreSQL both run atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col

from vidbox.db import Database
from vidbox.errors import TooManyRequests
from vidbox.models import RateLimit, utcnow

_TABLE = RateLimit.metadata.tables[RateLimit.__tablename__]


@dataclass(frozen=True)
class Counted:
    """One counted attempt: the key's count including it, and the window it fell in."""

    key: str
    count: int
    window_start: datetime
    window: timedelta

    def retry_after(self) -> int:
        """Seconds until the window ends (at least 1)."""
        left = self.window_start + self.window - utcnow()
        return max(1, int(left.total_seconds()) + 1)

    def refuse(self) -> TooManyRequests:
        return TooManyRequests(retry_after=self.retry_after())


class RateLimiter:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def count(self, key: str, *, window: timedelta) -> Counted:
        """Count one attempt for ``key`` and return the count in the current window; a window
        that has ended starts again at this attempt."""
        now = utcnow()
        expired = _TABLE.c.window_start <= now - window
        async with self.db.session() as session:
            bind = session.get_bind()
            dialect = postgresql if bind.dialect.name == "postgresql" else sqlite
            insert = dialect.insert(_TABLE).values(key=key, window_start=now, count=1)
            statement = insert.on_conflict_do_update(
                index_elements=[_TABLE.c.key],
                set_={
                    "window_start": sa.case(
                        (expired, insert.excluded.window_start), else_=_TABLE.c.window_start
                    ),
                    "count": sa.case((expired, 1), else_=_TABLE.c.count + 1),
                },
            ).returning(_TABLE.c.count, _TABLE.c.window_start)
            result = await session.exec(statement)
            count, window_start = result.one()
        return Counted(key, int(count), window_start, window)

    async def take(self, key: str, *, limit: int, window: timedelta) -> Counted:
        """Count an attempt, raising TooManyRequests (with Retry-After) once it is past
        ``limit`` in the window."""
        counted = await self.count(key, window=window)
        if counted.count > limit:
            raise counted.refuse()
        return counted

    async def take_all(
        self, limits: Sequence[tuple[str, int]], *, window: timedelta
    ) -> list[Counted]:
        """``take`` for several (key, limit) pairs in order. When one refuses, the ones before
        it give their count back: they count attempts that went ahead, not ones refused."""
        taken: list[Counted] = []
        for key, limit in limits:
            counted = await self.count(key, window=window)
            if counted.count > limit:
                for earlier in taken:
                    await self.give_back(earlier)
                raise counted.refuse()
            taken.append(counted)
        return taken

    async def hit(self, key: str, *, limit: int, window: timedelta) -> None:
        """``take`` for callers that need nothing back."""
        await self.take(key, limit=limit, window=window)

    async def give_back(self, counted: Counted) -> None:
        """Uncount an attempt that turned out not to be one the limit is about (a correct
        password, or one refused by another limit); a no-op once its window has ended."""
        async with self.db.session() as session:
            await session.exec(
                sa.update(_TABLE)
                .where(
                    _TABLE.c.key == counted.key,
                    _TABLE.c.window_start == counted.window_start,
                    _TABLE.c.count > 0,
                )
                .values(count=_TABLE.c.count - 1)
            )

    async def reset(self, key: str) -> None:
        async with self.db.session() as session:
            await session.exec(sa.delete(_TABLE).where(col(RateLimit.key) == key))

    async def forget_before(self, moment: datetime) -> int:
        """Drop counters whose window began before ``moment`` (pass one older than the
        longest window): every client and account tried leaves a row otherwise."""
        async with self.db.session() as session:
            result = await session.exec(sa.delete(_TABLE).where(_TABLE.c.window_start < moment))
        return int(result.rowcount)
