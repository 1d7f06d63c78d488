"""The sharing messages, built when the mail job sends them (vidbox.jobs.send_mail).

The queued job holds the recipient, the link or grant id and the trusted origin. The share
token and the signed sign-in link are derived here from those ids and the box's key, so
neither ever sits in the jobs table. Building also checks that the message still makes sense:
a link revoked or expired while its mail waited out an SMTP outage is not mailed.
"""

from __future__ import annotations

from typing import Any

from vidbox.jobs import Handler, PermanentJobError
from vidbox.jobs.send_mail import Builder
from vidbox.mail import OutgoingMail, render_access_link, render_share_notification
from vidbox.models import ShareGrant, ShareLink, User, Video
from vidbox.services import Services
from vidbox.sharing.access import (
    ACCESS_LINK,
    GRANT_MINUTES,
    SHARE_ACCESS,
    grant_access,
    grant_path,
)
from vidbox.sharing.links import (
    ACTIVE,
    SHARE_NOTIFICATION,
    link_emails,
    link_status,
    link_token,
    share_path,
)


async def _active_link(services: Services, link_id: object) -> tuple[ShareLink, Video]:
    async with services.db.read() as session:
        link = await session.get(ShareLink, str(link_id)[:32])
        video = await session.get(Video, link.video_id) if link is not None else None
    if link is None or video is None:
        raise PermanentJobError("Not sent: the share link or its video was deleted.")
    state = link_status(link)
    if state != ACTIVE:
        raise PermanentJobError(f"Not sent: the share link is {state}.")
    return link, video


async def build_share_notification(services: Services, payload: dict[str, Any]) -> OutgoingMail:
    to = str(payload["to"])
    link, video = await _active_link(services, payload.get("link_id"))
    if to not in link_emails(link):
        raise PermanentJobError(f"Not sent: {to} is no longer on the link's list.")
    async with services.db.read() as session:
        owner = await session.get(User, link.owner_id)
    sharer = (owner.name or owner.email) if owner is not None else "Someone"
    token = link_token(services.secret_key, link.id)
    return render_share_notification(
        to=to,
        box_name=services.settings.server.name,
        sharer_name=sharer,
        video_title=video.title,
        url=str(payload["origin"]).rstrip("/") + share_path(token),
        expires_at=link.expires_at,
    )


async def build_access_link(services: Services, payload: dict[str, Any]) -> OutgoingMail:
    async with services.db.read() as session:
        grant = await session.get(ShareGrant, str(payload.get("grant_id", ""))[:32])
    if grant is None or grant.email != payload["to"]:
        raise PermanentJobError("Not sent: the sign-in request is gone.")
    if grant.used_at is not None:
        raise PermanentJobError("Not sent: the sign-in link was already used.")
    link, video = await _active_link(services, grant.link_id)
    return render_access_link(
        to=grant.email,
        box_name=services.settings.server.name,
        video_title=video.title,
        url=str(payload["origin"]).rstrip("/") + grant_path(services.secret_key, link.id, grant.id),
        minutes_valid=GRANT_MINUTES,
    )


BUILDERS: dict[str, Builder] = {
    SHARE_NOTIFICATION: build_share_notification,
    ACCESS_LINK: build_access_link,
}

HANDLERS: dict[str, Handler] = {SHARE_ACCESS: grant_access}
