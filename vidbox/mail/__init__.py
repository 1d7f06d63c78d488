"""Outgoing email: render the messages vidbox sends and deliver them over SMTP."""

from __future__ import annotations

from vidbox.mail.messages import (
    MailError,
    OutgoingMail,
    build_message,
    one_line,
    parse_address,
    render_access_link,
    render_invite,
    render_share_notification,
    render_test_mail,
    render_verify_email,
)
from vidbox.mail.smtp import EMAIL_OFF, TIMEOUT_SECONDS, Mailer

__all__ = [
    "EMAIL_OFF",
    "TIMEOUT_SECONDS",
    "MailError",
    "Mailer",
    "OutgoingMail",
    "build_message",
    "one_line",
    "parse_address",
    "render_access_link",
    "render_invite",
    "render_share_notification",
    "render_test_mail",
    "render_verify_email",
]
