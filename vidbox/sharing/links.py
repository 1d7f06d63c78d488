"""Share links for the owner: creating, listing and revoking them, and their JSON shape.

A link's URL token is never stored. It is derived from the link id and the box's secret key
(``link_token``), so the owner can copy the URL again at any time, while the database holds only
its SHA-256 (``token_hash``), which is useless to whoever reads a backup.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from vidbox.auth.users import email_problem, normalise_email
from vidbox.errors import NotFound, ValidationFailed
from vidbox.fields import flag_value
from vidbox.jobs.send_mail import enqueue_message
from vidbox.models import Notification, ShareLink, User, Video, new_id, utcnow
from vidbox.services import Services
from vidbox.timefmt import iso_z
from vidbox.videos import get_owned

PUBLIC, PRIVATE = "public", "private"
VISIBILITIES = (PUBLIC, PRIVATE)
ACTIVE, EXPIRED, REVOKED = "active", "expired", "revoked"
STATUSES = (ACTIVE, EXPIRED, REVOKED)
EXPIRY_PRESETS: dict[str, timedelta | None] = {
    "1h": timedelta(hours=1),
    "12h": timedelta(hours=12),
    "1d": timedelta(days=1),
    "30d": timedelta(days=30),
    "forever": None,
}
SHARE_NOTIFICATION = "share_notification"  # the queued message telling a listed account
MAX_EMAILS = 50
NOTIFICATION_TITLE_MAX = 200
# base64url of 32 bytes, without padding.
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")
_EMAIL_SEPARATORS = re.compile(r"[\s,;]+")


def link_token(secret_key: bytes, link_id: str) -> str:
    """The 256-bit URL token of a link: HMAC-SHA256 of its id under the box's key."""
    digest = hmac.new(secret_key, b"share-link:" + link_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def looks_like_token(token: str) -> bool:
    return bool(_TOKEN.fullmatch(token))


def share_path(token: str) -> str:
    return f"/s/{token}"


def link_status(link: ShareLink, now: datetime | None = None) -> str:
    if link.revoked_at is not None:
        return REVOKED
    if link.expires_at is not None and link.expires_at <= (now or utcnow()):
        return EXPIRED
    return ACTIVE


def link_emails(link: ShareLink) -> list[str]:
    emails = json.loads(link.emails or "[]")
    return [str(e) for e in emails] if isinstance(emails, list) else []


def link_json(
    link: ShareLink,
    *,
    secret_key: bytes,
    base_url: str,
    video_title: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": link.id,
        "video_id": link.video_id,
        "url": base_url.rstrip("/") + share_path(link_token(secret_key, link.id)),
        "visibility": link.visibility,
        "emails": link_emails(link),
        "expires_in": link.expires_in,
        "expires_at": iso_z(link.expires_at),
        "status": link_status(link, now),
        "created_at": iso_z(link.created_at),
        "last_viewed_at": iso_z(link.last_viewed_at),
        "view_count": link.view_count,
        "allow_download": link.allow_download,
    }
    if video_title is not None:
        data["video_title"] = video_title
    return data


# -- the request to create a link ------------------------------------------------------------


@dataclass(frozen=True)
class LinkRequest:
    visibility: str
    emails: list[str]
    expires_in: str
    allow_download: bool


def _parse_emails(raw: object, problems: list[str]) -> list[str]:
    if raw is None or raw == "":
        return []
    if isinstance(raw, str):
        # Forms send one text field; addresses may be split by commas, spaces or new lines.
        items: list[object] = [part for part in _EMAIL_SEPARATORS.split(raw) if part]
    elif isinstance(raw, list):
        items = list(raw)
    else:
        problems.append("emails must be a list of email addresses.")
        return []
    emails: list[str] = []
    for item in items:
        if not isinstance(item, str):
            problems.append("emails must be a list of email addresses.")
            continue
        email = normalise_email(item)
        if email_problem(email):
            problems.append(f"{item.strip()[:100]!r} is not an email address.")
        elif email in emails:
            problems.append(f"{email} is listed twice.")
        else:
            emails.append(email)
    return emails


def parse_link_request(body: dict[str, Any]) -> LinkRequest:
    """The link asked for, or a ValidationFailed naming every field that is wrong."""
    errors: dict[str, list[str]] = {}

    raw_visibility = body.get("visibility")
    visibility = raw_visibility.strip().lower() if isinstance(raw_visibility, str) else ""
    if visibility not in VISIBILITIES:
        errors["visibility"] = ["visibility must be public or private."]

    raw_expiry = body.get("expires_in")
    expires_in = raw_expiry.strip().lower() if isinstance(raw_expiry, str) else ""
    if expires_in not in EXPIRY_PRESETS:
        errors["expires_in"] = ["expires_in must be one of 1h, 12h, 1d, 30d or forever."]

    email_problems: list[str] = []
    emails = _parse_emails(body.get("emails"), email_problems)
    if visibility == PUBLIC and (emails or email_problems):
        email_problems = ["A public link works for anyone: leave emails out or make it private."]
    elif visibility == PRIVATE and not emails and not email_problems:
        email_problems = ["A private link needs at least one email address."]
    elif len(emails) > MAX_EMAILS:
        email_problems.append(f"A link can list at most {MAX_EMAILS} addresses.")
    if email_problems:
        errors["emails"] = email_problems

    allow_download = flag_value(body.get("allow_download", False))
    if allow_download is None:
        errors["allow_download"] = ["allow_download must be true or false."]

    if errors:
        detail = " ".join(message for messages in errors.values() for message in messages)
        raise ValidationFailed(detail, errors=errors)
    return LinkRequest(visibility, emails, expires_in, bool(allow_download))


# -- the owner's operations ------------------------------------------------------------------


async def _notify_recipients(
    session: AsyncSession,
    services: Services,
    owner: User,
    video: Video,
    link: ShareLink,
    origin: str,
) -> int:
    """Mail and notify every listed address that belongs to an account (not the owner's) and
    is proven to be that account's. Unregistered and unproven addresses hear nothing until
    they ask for access on the share page, which mails the address itself."""
    emails = link_emails(link)
    recipients = (await session.exec(select(User).where(col(User.email).in_(emails)))).all()
    sharer = owner.name or owner.email
    title = video.title[:NOTIFICATION_TITLE_MAX]
    queued = 0
    for user in recipients:
        if user.id == owner.id or user.disabled or not user.email_verified:
            continue
        # The URL in a notification leads through /shared/{id}: the database never holds a
        # share token, and that route lets only listed, signed-in users through.
        session.add(
            Notification(
                user_id=user.id,
                text=f'{sharer[:200]} shared "{title}" with you',
                url=f"/shared/{link.id}",
            )
        )
        if services.mailer.enabled:
            # Built when sent, from the link's id (sharing.mail): no token in the jobs table.
            await enqueue_message(
                session,
                SHARE_NOTIFICATION,
                to=user.email,
                origin=origin,
                not_after=link.expires_at,
                link_id=link.id,
            )
            queued += 1
    return queued


async def create_link(
    services: Services,
    user: User,
    video_id: str,
    body: dict[str, Any],
    *,
    base_url: str,
    mail_origin: str,
) -> dict[str, Any]:
    """A new link on the user's video (404 for anyone else's). Mail to listed accounts is
    queued in the same transaction as the link, so it exists exactly when the link does.
    ``base_url`` makes the URL in the answer (for this client); ``mail_origin`` the one in
    mail, which must not come from the request (vidbox.mail.origin)."""
    wanted = parse_link_request(body)
    now = utcnow()
    delta = EXPIRY_PRESETS[wanted.expires_in]
    link_id = new_id()
    token = link_token(services.secret_key, link_id)
    async with services.db.session() as session:
        video = await get_owned(session, user, video_id)
        link = ShareLink(
            id=link_id,
            video_id=video.id,
            owner_id=user.id,
            token_hash=token_hash(token),
            visibility=wanted.visibility,
            emails=json.dumps(wanted.emails),
            expires_in=wanted.expires_in,
            expires_at=now + delta if delta is not None else None,
            allow_download=wanted.allow_download,
            created_at=now,
        )
        session.add(link)
        await session.flush()
        if wanted.visibility == PRIVATE:
            await _notify_recipients(session, services, user, video, link, mail_origin)
    return link_json(
        link, secret_key=services.secret_key, base_url=base_url, video_title=video.title, now=now
    )


def _status_filter(status: str, now: datetime) -> Any:
    not_revoked = col(ShareLink.revoked_at).is_(None)
    if status == REVOKED:
        return col(ShareLink.revoked_at).is_not(None)
    if status == EXPIRED:
        return and_(not_revoked, col(ShareLink.expires_at) <= now)
    return and_(
        not_revoked, or_(col(ShareLink.expires_at).is_(None), col(ShareLink.expires_at) > now)
    )


async def list_links(
    services: Services,
    user: User,
    *,
    base_url: str,
    video_id: str | None = None,
    status: str | None = None,
) -> list[dict[str, Any]]:
    """The user's links, newest first: all of them, or one video's (404 if not theirs),
    optionally only those in ``status``."""
    if status is not None and status not in STATUSES:
        raise ValidationFailed.field("status", "status must be active, expired or revoked.")
    now = utcnow()
    async with services.db.read() as session:
        query = (
            select(ShareLink, Video.title)
            .join(Video, col(Video.id) == col(ShareLink.video_id))
            .where(ShareLink.owner_id == user.id)
        )
        if video_id is not None:
            video = await get_owned(session, user, video_id)
            query = query.where(ShareLink.video_id == video.id)
        if status is not None:
            query = query.where(_status_filter(status, now))
        rows = (
            await session.exec(
                query.order_by(col(ShareLink.created_at).desc(), col(ShareLink.id).desc())
            )
        ).all()
    return [
        link_json(
            link, secret_key=services.secret_key, base_url=base_url, video_title=title, now=now
        )
        for link, title in rows
    ]


async def links_for_video(
    services: Services, user: User, video_id: str, base_url: str
) -> list[dict[str, Any]]:
    """For the player page's "Share links" card."""
    return await list_links(services, user, base_url=base_url, video_id=video_id)


async def revoke_link(services: Services, user: User, link_id: str) -> None:
    """Revoke the user's link (404 for anyone else's); revoking twice changes nothing."""
    async with services.db.session() as session:
        link = await session.get(ShareLink, link_id) if len(link_id) <= 32 else None
        if link is None or link.owner_id != user.id:
            raise NotFound("No such link.")
        if link.revoked_at is None:
            link.revoked_at = utcnow()
            session.add(link)
