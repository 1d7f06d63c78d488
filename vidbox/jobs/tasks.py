"""Every job kind the box runs, by name."""

from __future__ import annotations

from vidbox.auth.verify import BUILDERS as ACCOUNT_MAIL
from vidbox.jobs import Handler
from vidbox.jobs.cleanup import HANDLERS as CLEANUP
from vidbox.jobs.process_video import HANDLERS as PROCESS_VIDEO
from vidbox.jobs.send_mail import SEND_MAIL, mail_handler
from vidbox.sharing.mail import BUILDERS as SHARE_MAIL
from vidbox.sharing.mail import HANDLERS as SHARING


def all_handlers() -> dict[str, Handler]:
    # Queued messages are built at send time from ids (vidbox.jobs.send_mail); these are the
    # builders, by message kind.
    return {
        **CLEANUP,
        **PROCESS_VIDEO,
        **SHARING,
        SEND_MAIL: mail_handler({**ACCOUNT_MAIL, **SHARE_MAIL}),
    }
