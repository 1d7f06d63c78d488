"""The messages vidbox sends: pure rendering from templates, and building them as MIME.

Each kind of message has a plain-text and an HTML template in ``vidbox/templates/email``.
Everything that comes from users (names, titles) is flattened to one line, so it can never
start a new header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from functools import cache
from typing import Any

import jinja2

from vidbox.timefmt import human_moment

# Long titles would make subjects that mail clients cut off anyway.
SUBJECT_TITLE_MAX = 80

# Any run of whitespace or control characters, including the Unicode line separators that some
# mail clients also break lines on.
_LINE_BREAKING = re.compile(r"[\s\x00-\x1f\x7f\x85\u2028\u2029]+")


class MailError(Exception):
    """Mail could not be sent. ``transient`` means trying again later may succeed."""

    def __init__(self, message: str, transient: bool) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient


@dataclass(frozen=True)
class OutgoingMail:
    to: str
    subject: str
    text: str
    html: str


def one_line(value: str) -> str:
    """``value`` with every line break and control character flattened to one space, so it
    can go into a header (or a sentence) without starting a new one."""
    return _LINE_BREAKING.sub(" ", value).strip()


def _shorten(value: str, limit: int = SUBJECT_TITLE_MAX) -> str:
    return value if len(value) <= limit else value[: limit - 1].rstrip() + "…"


def _check_url(url: str) -> str:
    url = url.strip()
    # A link in our own mail is always to this box; anything else (javascript:, data:) is a bug.
    if not url.startswith(("https://", "http://")) or _LINE_BREAKING.search(url):
        raise ValueError(f"not an http(s) link: {url!r}")
    return url


@cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("vidbox", "templates/email"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _render(kind: str, *, to: str, subject: str, **context: Any) -> OutgoingMail:
    env = _templates()
    values = {"subject": subject, **context}
    return OutgoingMail(
        to=to.strip(),
        subject=subject,
        text=env.get_template(f"{kind}.txt").render(values),
        html=env.get_template(f"{kind}.html").render(values),
    )


def render_share_notification(
    *,
    to: str,
    box_name: str,
    sharer_name: str,
    video_title: str,
    url: str,
    expires_at: datetime | None,
) -> OutgoingMail:
    """A registered user was given a private share link."""
    box, sharer, title = one_line(box_name), one_line(sharer_name), one_line(video_title)
    return _render(
        "share_notification",
        to=to,
        subject=f'{sharer} shared "{_shorten(title)}" with you',
        box_name=box,
        sharer_name=sharer,
        video_title=title,
        url=_check_url(url),
        expires=human_moment(expires_at) if expires_at else None,
    )


def render_access_link(
    *, to: str, box_name: str, video_title: str, url: str, minutes_valid: int
) -> OutgoingMail:
    """A one-time sign-in link that opens a private share link."""
    title = one_line(video_title)
    validity = "minute" if minutes_valid == 1 else f"{minutes_valid} minutes"
    return _render(
        "access_link",
        to=to,
        subject=f'Your link to "{_shorten(title)}"',
        box_name=one_line(box_name),
        video_title=title,
        url=_check_url(url),
        validity=validity,
    )


def render_invite(
    *, to: str, box_name: str, inviter_name: str, url: str, expires_at: datetime | None
) -> OutgoingMail:
    """An invitation to create an account."""
    box, inviter = one_line(box_name), one_line(inviter_name)
    return _render(
        "invite",
        to=to,
        subject=f"{inviter} invited you to {box}",
        box_name=box,
        inviter_name=inviter,
        url=_check_url(url),
        expires=human_moment(expires_at) if expires_at else None,
    )


def render_verify_email(*, to: str, box_name: str, url: str, hours_valid: int) -> OutgoingMail:
    """The link that proves an account's address belongs to whoever registered it."""
    box = one_line(box_name)
    return _render(
        "verify_email",
        to=to,
        subject=f"Confirm your email address on {box}",
        box_name=box,
        email=one_line(to),
        url=_check_url(url),
        validity=f"{hours_valid} hours",
    )


def render_test_mail(*, to: str, box_name: str, url: str | None = None) -> OutgoingMail:
    """The message of ``vidbox check --send-test-mail``; ``url``, the box's address as links
    in its mail will show it, so the admin sees where they lead."""
    box = one_line(box_name)
    return _render(
        "test_mail",
        to=to,
        subject=f"Test mail from {box}",
        box_name=box,
        url=_check_url(url) if url else None,
    )


def parse_address(value: str, *, role: str) -> Address:
    """``value`` as a bare address (user@domain), or a permanent MailError naming ``role``."""
    problem = f"The {role} address {one_line(value)!r} is not a valid email address"
    if _LINE_BREAKING.search(value) or not value.partition("@")[2]:
        raise MailError(problem, transient=False)
    try:
        address = Address(addr_spec=value)
    except (ValueError, IndexError):
        raise MailError(problem, transient=False) from None
    if not address.username or not address.domain:
        raise MailError(problem, transient=False)
    return address


def build_message(mail: OutgoingMail, *, from_address: str, box_name: str) -> EmailMessage:
    """The MIME message for ``mail``: multipart/alternative with a text and an HTML part."""
    sender = parse_address(from_address, role="sender")
    recipient = parse_address(mail.to, role="recipient")
    message = EmailMessage()
    message["From"] = Address(one_line(box_name), sender.username, sender.domain)
    message["To"] = recipient
    message["Subject"] = one_line(mail.subject)
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=sender.domain)
    # Tells mail servers and clients (RFC 3834) not to send vacation replies back to the box.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    return message
