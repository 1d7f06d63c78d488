"""In-app notifications ("Ann shared "Holiday 2026" with you"): listing, unread count, read."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, update
from sqlmodel import col, select

from vidbox.db import Database
from vidbox.models import Notification, User, utcnow
from vidbox.services import Services
from vidbox.timefmt import iso_z

LIST_LIMIT = 50


def notification_json(notification: Notification) -> dict[str, Any]:
    return {
        "id": notification.id,
        "text": notification.text,
        "url": notification.url,
        "created_at": iso_z(notification.created_at),
        "read_at": iso_z(notification.read_at),
        "read": notification.read_at is not None,
    }


async def unread_count(db: Database, user_id: str) -> int:
    """For the header's bell (and the user's live event stream)."""
    async with db.read() as session:
        count = await session.exec(
            select(func.count())
            .select_from(Notification)
            .where(Notification.user_id == user_id, col(Notification.read_at).is_(None))
        )
        return int(count.one())


async def list_notifications(
    services: Services, user: User, *, limit: int = LIST_LIMIT
) -> dict[str, Any]:
    """The newest notifications and how many are unread: ``{"items": [...], "unread": n}``."""
    async with services.db.read() as session:
        rows = (
            await session.exec(
                select(Notification)
                .where(Notification.user_id == user.id)
                .order_by(col(Notification.created_at).desc(), col(Notification.id).desc())
                .limit(limit)
            )
        ).all()
    return {
        "items": [notification_json(n) for n in rows],
        "unread": await unread_count(services.db, user.id),
    }


async def mark_all_read(services: Services, user: User) -> int:
    """Mark every unread notification of the user read; returns how many were."""
    async with services.db.session() as session:
        result = await session.exec(
            update(Notification)
            .where(col(Notification.user_id) == user.id, col(Notification.read_at).is_(None))
            .values(read_at=utcnow())
        )
        return int(result.rowcount)
