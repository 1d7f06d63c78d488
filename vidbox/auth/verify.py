"""Proving an account's email address by a mailed link.

With open registration (or an invite that fixes no address) anyone can sign up with someone
else's address. An address therefore counts for private share links and their notifications
only once it is proven (``User.email_verified``): set by an admin or the CLI, fixed by an
invite, or confirmed here by opening a link mailed to it.

The link carries ``{"user": id, "email": address}`` signed with the box's key (valid
``VERIFY_HOURS``); the database never holds it: the queued mail names the user and the link is
signed when the mail is sent. Opening it shows a Confirm button, and only the POST confirms:
a mail scanner that fetches every link in the victim's inbox must not confirm an address for
whoever registered it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import update
from sqlmodel import col

from vidbox.auth.ratelimit import RateLimiter
from vidbox.errors import Conflict, Gone, NotFound, ServiceUnavailable
from vidbox.jobs import PermanentJobError
from vidbox.jobs.send_mail import Builder, enqueue_message
from vidbox.mail import OutgoingMail, render_verify_email
from vidbox.models import User
from vidbox.notify import AUTH, announce
from vidbox.services import Services

VERIFY_EMAIL = "verify_email"
VERIFY_HOURS = 48
# Asking again: enough for a mail that went to spam, too few to mail-bomb the address.
RESEND_PER_USER = 5
RESEND_WINDOW = timedelta(hours=1)

LINK_INVALID = "This confirmation link is not valid. Ask for a new one from your account."
LINK_EXPIRED = (
    f"This confirmation link has expired: they work for {VERIFY_HOURS} hours. "
    "Ask for a new one from your account."
)
EMAIL_OFF = (
    "Email is off on this box, so no confirmation link can be sent. Ask an admin to confirm "
    "your address."
)


def _serializer(secret_key: bytes) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt="email-verify")


def verify_path(secret_key: bytes, user: User) -> str:
    signed = _serializer(secret_key).dumps({"user": user.id, "email": user.email})
    return f"/verify-email/{signed}"


async def queue_verification(services: Services, user: User, *, origin: str) -> bool:
    """Mail ``user`` a confirmation link, unless the address is proven or mail is off.
    Returns whether a mail was queued."""
    if user.email_verified or not services.mailer.enabled:
        return False
    async with services.db.session() as session:
        await enqueue_message(session, VERIFY_EMAIL, to=user.email, origin=origin, user_id=user.id)
    return True


async def resend_verification(services: Services, user: User, *, origin: str) -> None:
    if user.email_verified:
        raise Conflict("Your email address is already confirmed.")
    if not services.mailer.enabled:
        raise ServiceUnavailable(EMAIL_OFF)
    await RateLimiter(services.db).hit(
        f"verify-email:{user.id}", limit=RESEND_PER_USER, window=RESEND_WINDOW
    )
    await queue_verification(services, user, origin=origin)


async def _build_mail(services: Services, payload: dict[str, Any]) -> OutgoingMail:
    async with services.db.read() as session:
        user = await session.get(User, str(payload.get("user_id", "")))
    if user is None or user.email != payload["to"]:
        raise PermanentJobError("Not sent: the account is gone or has another address now.")
    if user.email_verified:
        raise PermanentJobError(f"Not sent: {user.email} was confirmed meanwhile.")
    return render_verify_email(
        to=user.email,
        box_name=services.settings.server.name,
        url=str(payload["origin"]).rstrip("/") + verify_path(services.secret_key, user),
        hours_valid=VERIFY_HOURS,
    )


async def check_link(services: Services, signed: str) -> User:
    """The account a confirmation link is for: NotFound when forged or for an address the
    account no longer has, Gone when expired."""
    try:
        data = _serializer(services.secret_key).loads(signed, max_age=VERIFY_HOURS * 3600)
    except SignatureExpired:
        raise Gone(LINK_EXPIRED) from None
    except BadSignature:
        raise NotFound(LINK_INVALID) from None
    if not isinstance(data, dict) or not isinstance(data.get("user"), str):
        raise NotFound(LINK_INVALID)
    async with services.db.read() as session:
        user = await session.get(User, data["user"][:32])
    if user is None or user.email != data.get("email"):
        raise NotFound(LINK_INVALID)
    return user


async def confirm(services: Services, signed: str) -> User:
    """Mark the address of a valid confirmation link proven (confirming twice is fine)."""
    user = await check_link(services, signed)
    async with services.db.session() as session:
        await session.exec(
            update(User)
            .where(col(User.id) == user.id, col(User.email) == user.email)
            .values(email_verified=True)
        )
        announce(session, AUTH)  # signed-in principals carry the old flag
    user.email_verified = True
    return user


BUILDERS: dict[str, Builder] = {VERIFY_EMAIL: _build_mail}
