"""The outbox: mail is queued as a ``send_mail`` job and delivered by the job runner.

Two kinds of payload:

- a *message* (``{"message": kind, "to": ..., ids..., "origin": ...}``): what is needed to
  build the mail again when it is sent: ids and the trusted origin, never the link's secret.
  Share links, one-time sign-in links and verification links are rebuilt from the ids and the
  box's key at send time, so the jobs table (kept 7 days, and in every backup) holds no
  working credential. The builder for each kind is given to ``mail_handler`` (jobs.tasks);
  it may refuse to send (the link was revoked meanwhile) with a PermanentJobError.
- a *rendered* mail (``to, subject, text, html``): for messages that carry no secret.

Delivery is at least once: a crash between the SMTP server's "accepted" and the job's outcome
being recorded sends the message again on the retry, which beats losing it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlmodel.ext.asyncio.session import AsyncSession

from vidbox.jobs import Handler, JobContext, PermanentJobError
from vidbox.jobs.queue import enqueue
from vidbox.mail import MailError, OutgoingMail
from vidbox.models import Job, utcnow

if TYPE_CHECKING:
    from vidbox.services import Services

SEND_MAIL = "send_mail"
# With the queue's backoff (5 s doubling, capped at 30 minutes) 15 attempts cover an SMTP
# outage of about three hours before the job is given up as dead.
MAIL_MAX_ATTEMPTS = 15
_FIELDS = ("to", "subject", "text", "html")

# Builds the mail of a queued message from its payload, at send time.
Builder = Callable[["Services", dict[str, Any]], Awaitable[OutgoingMail]]


def _limit(payload: dict[str, Any], not_after: datetime | None) -> dict[str, Any]:
    if not_after is not None:
        payload["not_after"] = not_after.isoformat()
    return payload


async def enqueue_message(
    session: AsyncSession,
    kind: str,
    *,
    to: str,
    origin: str,
    not_after: datetime | None = None,
    **ids: str,
) -> Job:
    """Queue a message of ``kind`` to ``to``, to be built at send time from ``ids`` (never a
    token) with links on ``origin`` (a trusted origin, see vidbox.mail.origin)."""
    payload = _limit({"message": kind, "to": to, "origin": origin, **ids}, not_after)
    return await enqueue(session, SEND_MAIL, payload, max_attempts=MAIL_MAX_ATTEMPTS)


def _rendered(payload: dict[str, Any]) -> OutgoingMail:
    values = {name: payload.get(name) for name in _FIELDS}
    texts = {name: value for name, value in values.items() if isinstance(value, str) and value}
    if len(texts) != len(values):
        raise PermanentJobError("The queued mail is incomplete: it has no recipient or body.")
    return OutgoingMail(**texts)


def mail_handler(builders: Mapping[str, Builder]) -> Handler:
    """The ``send_mail`` handler, building queued messages with ``builders`` by kind."""

    async def send_mail(ctx: JobContext) -> None:
        payload = ctx.payload
        to = payload.get("to")
        not_after = payload.get("not_after")
        if isinstance(not_after, str) and datetime.fromisoformat(not_after) < utcnow():
            raise PermanentJobError(
                f"Not sent to {to}: the link in it expired before the mail could go out."
            )
        kind = payload.get("message")
        if kind is None:
            mail = _rendered(payload)
        elif kind in builders and isinstance(to, str) and to:
            mail = await builders[kind](ctx.services, payload)
        else:
            raise PermanentJobError(f"The queued mail is of an unknown kind ({kind!r}).")
        try:
            await ctx.services.mailer.send(mail)
        except MailError as exc:
            if exc.transient:
                raise  # the queue retries with backoff; the job row survives restarts
            raise PermanentJobError(exc.message) from exc

    return send_mail


# Rendered mail only; jobs.tasks registers the handler that also builds messages.
send_mail = mail_handler({})
