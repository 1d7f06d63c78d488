"""Opening a share link: who may watch through it, views, and the private-link sign-in.

A public link lets anyone with the URL watch. A private link lets in its owner and signed-in
accounts whose address is listed and proven (``User.email_verified``); anyone else proves an
address by email: ``request_access`` queues a job that, for a listed address, mails a one-time
sign-in link (a signed ShareGrant id, valid 15 minutes from the request), and using it sets a
cookie scoped to that one link's path that carries the link id and the proven address.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import update
from sqlmodel import col, select

from vidbox.auth.ratelimit import RateLimiter
from vidbox.auth.users import email_problem, normalise_email
from vidbox.errors import Gone, NotFound, ServiceUnavailable, ValidationFailed
from vidbox.jobs import JobContext
from vidbox.jobs.queue import enqueue
from vidbox.jobs.send_mail import enqueue_message
from vidbox.models import ShareGrant, ShareLink, User, Video, utcnow
from vidbox.services import Services
from vidbox.sharing.links import (
    ACTIVE,
    EXPIRED,
    PUBLIC,
    REVOKED,
    link_emails,
    link_status,
    link_token,
    looks_like_token,
    share_path,
    token_hash,
)
from vidbox.timefmt import human_moment

GRANT_MINUTES = 15
ACCESS_LINK = "access_link"  # the queued message that carries a grant's sign-in link
SHARE_ACCESS = "share_access"  # the job that answers an access request off the request path
ACCESS_JOB_ATTEMPTS = 5
ACCESS_COOKIE = "vidbox_share"
ACCESS_COOKIE_MAX = timedelta(days=30)
ACCESS_WINDOW = timedelta(minutes=15)
# Per client address: enough for a person who mistypes a few times. Per link: enough for
# everyone on a long list, too few to use one link to mail-bomb its recipients.
ACCESS_PER_IP = 10
ACCESS_PER_LINK = 30

UNKNOWN_LINK = "There is no share link at this address. Check that it was copied whole."
REVOKED_LINK = "The person who shared this video has revoked the link."
GRANT_INVALID = "This sign-in link is not valid. Ask for a new one on the video's page."
GRANT_EXPIRED = (
    f"This sign-in link has expired: they work for {GRANT_MINUTES} minutes. "
    "Ask for a new one on the video's page."
)
GRANT_USED = (
    "This sign-in link was already used: each one works once. If that was not you in this "
    "browser, ask for a new one on the video's page."
)
EMAIL_OFF = (
    "Email is off on this box, so sign-in links cannot be sent. Sign in with a vidbox "
    "account whose address is on the list instead."
)
ACCESS_REQUESTED = (
    f"If this address may watch the video, a sign-in link is on its way to it. The link works "
    f"once, for {GRANT_MINUTES} minutes."
)


@dataclass(frozen=True)
class SharedVideo:
    """A link that is active, with its video."""

    link: ShareLink
    video: Video
    token: str

    @property
    def path(self) -> str:
        return share_path(self.token)

    @property
    def emails(self) -> list[str]:
        return link_emails(self.link)

    @property
    def is_public(self) -> bool:
        return self.link.visibility == PUBLIC


async def open_link(services: Services, token: str, *, now: datetime | None = None) -> SharedVideo:
    """The link of ``token`` and its video: NotFound when there is none, Gone when it expired
    or was revoked. Callers still decide whether the request may watch (``may_watch``)."""
    if not looks_like_token(token):
        raise NotFound(UNKNOWN_LINK)
    async with services.db.read() as session:
        link = (
            await session.exec(select(ShareLink).where(ShareLink.token_hash == token_hash(token)))
        ).first()
        # The hash found the row; comparing the token we would issue for it also refuses
        # every old link if the box's secret key was replaced.
        if link is None or not hmac.compare_digest(token, link_token(services.secret_key, link.id)):
            raise NotFound(UNKNOWN_LINK)
        state = link_status(link, now)
        if state == REVOKED:
            raise Gone(REVOKED_LINK)
        if state == EXPIRED and link.expires_at is not None:
            raise Gone(
                f"This link expired on {human_moment(link.expires_at)}. "
                "Ask the person who shared it for a new one."
            )
        video = await session.get(Video, link.video_id)
    if video is None:  # deleted between the two reads; the cascade takes the link too
        raise NotFound(UNKNOWN_LINK)
    return SharedVideo(link, video, token)


async def record_view(services: Services, link_id: str, *, page_view: bool) -> None:
    """Note that the link was used: ``last_viewed_at`` moves on the share page and on its
    master playlist, ``view_count`` only on the page. The player fetches the playlist again on
    every quality switch and reload, so counting it would count the same person many times;
    moving the time with it still shows the owner that someone is watching right now.
    One UPDATE, no read: views never wait on a read-modify-write."""
    values: dict[str, object] = {"last_viewed_at": utcnow()}
    if page_view:
        values["view_count"] = col(ShareLink.view_count) + 1
    async with services.db.session() as session:
        await session.exec(update(ShareLink).where(col(ShareLink.id) == link_id).values(**values))


# -- who may watch ---------------------------------------------------------------------------


def _cookie_serializer(secret_key: bytes) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt="share-access")


def access_cookie(services: Services, shared: SharedVideo, email: str) -> tuple[str, int]:
    """The signed cookie value for ``email`` on this link, and its max-age in seconds: until
    the link expires, and never more than 30 days."""
    value = _cookie_serializer(services.secret_key).dumps({"link": shared.link.id, "email": email})
    lifetime = ACCESS_COOKIE_MAX
    if shared.link.expires_at is not None:
        lifetime = min(lifetime, shared.link.expires_at - utcnow())
    return value, max(1, int(lifetime.total_seconds()))


def cookie_email(services: Services, shared: SharedVideo, raw: str | None) -> str | None:
    """The address a valid access cookie proves for this link (and only this link)."""
    if not raw:
        return None
    try:
        data = _cookie_serializer(services.secret_key).loads(
            raw, max_age=int(ACCESS_COOKIE_MAX.total_seconds())
        )
    except BadSignature:
        return None
    if not isinstance(data, dict) or data.get("link") != shared.link.id:
        return None
    email = data.get("email")
    return email if isinstance(email, str) and email in shared.emails else None


def is_listed(user: User, emails: list[str]) -> bool:
    """The account's address is on a private link's list, and proven to be the account's:
    anyone may register someone else's address (vidbox.auth.verify)."""
    return user.email_verified and user.email in emails


def may_watch(
    services: Services, shared: SharedVideo, user: User | None, cookie: str | None
) -> bool:
    if shared.is_public:
        return True
    if user is not None and (user.id == shared.link.owner_id or is_listed(user, shared.emails)):
        return True
    return cookie_email(services, shared, cookie) is not None


# -- the one-time sign-in for private links ----------------------------------------------------


def grant_deadline(grant: ShareGrant) -> datetime:
    return grant.created_at + timedelta(minutes=GRANT_MINUTES)


def _grant_serializer(secret_key: bytes) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt="share-grant")


def grant_path(secret_key: bytes, link_id: str, grant_id: str) -> str:
    """The path of a grant's one-time sign-in link, signed now (by the mail job as it sends:
    the database never holds it). Its life is counted from the grant's creation anyway."""
    signed = _grant_serializer(secret_key).dumps(grant_id)
    return f"{share_path(link_token(secret_key, link_id))}/enter/{signed}"


async def request_access(
    services: Services, shared: SharedVideo, email: str, *, ip: str, origin: str
) -> None:
    """Mail a one-time sign-in link if ``email`` is on the link's list. Everything a caller
    can observe (the outcome, the errors, the rate limits, and the time the answer takes) is
    the same whether it is or not: the request only queues a ``share_access`` job, listed or
    not, and the job (``grant_access``) looks at the list. Creating the grant and queueing
    its mail on the request path made listed addresses measurably slower to answer
    (bench/access_timing.py: 1.24x)."""
    if not services.mailer.enabled:
        raise ServiceUnavailable(EMAIL_OFF)
    email = normalise_email(email)
    problem = email_problem(email)
    if problem:
        raise ValidationFailed.field("email", problem)
    limiter = RateLimiter(services.db)
    limits = (
        (f"share-access-ip:{ip[:100]}", ACCESS_PER_IP),
        (f"share-access-link:{shared.link.id}", ACCESS_PER_LINK),
    )
    await limiter.take_all(limits, window=ACCESS_WINDOW)
    if shared.is_public:  # nothing to sign in to, and no list to learn about
        return
    payload = {"link_id": shared.link.id, "email": email, "origin": origin}
    async with services.db.session() as session:
        await enqueue(session, SHARE_ACCESS, payload, max_attempts=ACCESS_JOB_ATTEMPTS)


async def grant_access(ctx: JobContext) -> None:
    """The ``share_access`` job: if the address is on the (still active) link's list, a grant
    and its mail; else nothing, quietly."""
    services, payload = ctx.services, ctx.payload
    email, origin = str(payload.get("email", "")), str(payload.get("origin", ""))
    async with services.db.session() as session:
        link = await session.get(ShareLink, str(payload.get("link_id", ""))[:32])
        if (
            link is None
            or link.visibility == PUBLIC
            or link_status(link) != ACTIVE
            or email not in link_emails(link)
        ):
            return
        grant = ShareGrant(link_id=link.id, email=email, created_at=utcnow())
        session.add(grant)
        await session.flush()
        await enqueue_message(
            session,
            ACCESS_LINK,
            to=email,
            origin=origin,
            not_after=grant_deadline(grant),
            grant_id=grant.id,
        )


async def check_grant(
    services: Services, shared: SharedVideo, signed: str, *, use: bool = False
) -> ShareGrant:
    """The grant behind a sign-in link, if it may still be used: NotFound when forged or for
    another link, Gone when expired or used. With ``use``, it is marked used in the same
    statement that checks it, so two clicks racing each other cannot both get in."""
    try:
        grant_id = _grant_serializer(services.secret_key).loads(signed, max_age=GRANT_MINUTES * 60)
    except SignatureExpired:
        raise Gone(GRANT_EXPIRED) from None
    except BadSignature:
        raise NotFound(GRANT_INVALID) from None
    if not isinstance(grant_id, str) or len(grant_id) > 32:
        raise NotFound(GRANT_INVALID)
    session_factory = services.db.session if use else services.db.read
    async with session_factory() as session:
        grant = await session.get(ShareGrant, grant_id)
        if grant is None or grant.link_id != shared.link.id or grant.email not in shared.emails:
            raise NotFound(GRANT_INVALID)
        if grant.used_at is not None:
            raise Gone(GRANT_USED)
        # The signature's age counts from when the mail was sent; this from when it was asked.
        if grant_deadline(grant) <= utcnow():
            raise Gone(GRANT_EXPIRED)
        if use:
            result = await session.exec(
                update(ShareGrant)
                .where(col(ShareGrant.id) == grant.id, col(ShareGrant.used_at).is_(None))
                .values(used_at=utcnow())
            )
            if result.rowcount != 1:
                raise Gone(GRANT_USED)
    return grant


async def shared_path_for(services: Services, user: User, link_id: str) -> str:
    """Where a notification about link ``link_id`` leads: its share page, for the owner and
    the accounts it lists; 404 for anyone else."""
    async with services.db.read() as session:
        link = await session.get(ShareLink, link_id) if len(link_id) <= 32 else None
    if link is None or (user.id != link.owner_id and not is_listed(user, link_emails(link))):
        raise NotFound("No such link.")
    return share_path(link_token(services.secret_key, link.id))
