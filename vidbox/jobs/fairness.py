"""Fair queueing on the media lane: which user's video is processed next."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import case, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from vidbox.jobs import MEDIA_LANE
from vidbox.models import Job, JobState, Video

_NEVER = datetime.min.replace(tzinfo=UTC)


async def fair_pick(session: AsyncSession, runnable: Any) -> Job | None:
    """The oldest runnable job of the user with the fewest media jobs running, then of the one
    served longest ago: one user's hundred uploads do not hold back another user's one.

    Jobs are tied to users through their video (jobs without one form a group of their own).
    Plain GROUP BY and joins, so the queries read the same on PostgreSQL."""
    owner = col(Video.owner_id)
    waiting: dict[str | None, datetime | None] = dict(
        (
            await session.exec(
                select(owner, func.min(col(Job.run_at)))
                .select_from(Job)
                .outerjoin(Video, col(Video.id) == col(Job.video_id))
                .where(runnable)
                .group_by(owner)
            )
        ).all()
    )
    if not waiting:
        return None
    known = [o for o in waiting if o is not None]
    load: dict[str | None, tuple[int, datetime | None]] = {}
    if len(waiting) > 1 and known:
        running = func.sum(case((col(Job.state) == JobState.RUNNING, 1), else_=0))
        stats = await session.exec(
            select(owner, running, func.max(col(Job.claimed_at)))
            .select_from(Job)
            .join(Video, col(Video.id) == col(Job.video_id))
            .where(col(Job.lane) == MEDIA_LANE, owner.in_(known))
            .group_by(owner)
        )
        load = {o: (int(n or 0), last) for o, n, last in stats.all()}

    def rank(o: str | None) -> tuple[int, datetime, datetime]:
        n, last = load.get(o, (0, None))
        return n, last or _NEVER, waiting[o] or _NEVER

    chosen = min(waiting, key=rank)
    belongs = owner.is_(None) if chosen is None else owner == chosen
    return (
        await session.exec(
            select(Job)
            .outerjoin(Video, col(Video.id) == col(Job.video_id))
            .where(runnable, belongs)
            .order_by(col(Job.run_at), col(Job.id))
            .limit(1)
            # A job another worker is claiming this instant is skipped, not waited for (on
            # PostgreSQL; SQLite has one writer at a time anyway). Only the job row: the
            # video side of the outer join may be missing.
            .with_for_update(skip_locked=True, of=Job)
        )
    ).first()
