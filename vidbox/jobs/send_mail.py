"""The outbox: mail is rendered when it is asked for and queued as a ``send_mail`` job.

The job's payload holds the whole rendered message (to, subject, text, html), so a restart, a
retry or an SMTP outage never needs the request, the templates or the link that asked for it.
Delivery is at least once: a crash between the SMTP server's "accepted" and the job's outcome
being recorded sends the message again on the retry, which beats losing it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from vidbox.jobs import Handler, JobContext, PermanentJobError
from vidbox.jobs.queue import enqueue
from vidbox.mail import MailError, OutgoingMail
from vidbox.models import Job, utcnow

SEND_MAIL = "send_mail"
# With the queue's backoff (5 s doubling, capped at 30 minutes) 15 attempts cover an SMTP
# outage of about three hours before the job is given up as dead.
MAIL_MAX_ATTEMPTS = 15
_FIELDS = ("to", "subject", "text", "html")


async def enqueue_mail(
    session: AsyncSession, mail: OutgoingMail, *, not_after: datetime | None = None
) -> Job:
    """Queue ``mail`` inside the caller's transaction. ``not_after``: past this moment the
    message is pointless (it carries a link that has expired) and is dropped, not sent."""
    payload: dict[str, Any] = {name: getattr(mail, name) for name in _FIELDS}
    if not_after is not None:
        payload["not_after"] = not_after.isoformat()
    return await enqueue(session, SEND_MAIL, payload, max_attempts=MAIL_MAX_ATTEMPTS)


def _mail_from(payload: dict[str, Any]) -> OutgoingMail:
    values = {name: payload.get(name) for name in _FIELDS}
    if not all(isinstance(value, str) and value for value in values.values()):
        raise PermanentJobError("The queued mail is incomplete: it has no recipient or body.")
    return OutgoingMail(**values)  # type: ignore[arg-type]


async def send_mail(ctx: JobContext) -> None:
    mail = _mail_from(ctx.payload)
    not_after = ctx.payload.get("not_after")
    if isinstance(not_after, str) and datetime.fromisoformat(not_after) < utcnow():
        raise PermanentJobError(
            f"Not sent to {mail.to}: the link in it expired before the mail could go out."
        )
    try:
        await ctx.services.mailer.send(mail)
    except MailError as exc:
        if exc.transient:
            raise  # the queue retries with backoff; the job row survives restarts
        raise PermanentJobError(exc.message) from exc


HANDLERS: dict[str, Handler] = {SEND_MAIL: send_mail}
