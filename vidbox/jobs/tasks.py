"""Every job kind the box runs, by name."""

from __future__ import annotations

from vidbox.jobs import Handler
from vidbox.jobs.cleanup import HANDLERS as CLEANUP
from vidbox.jobs.process_video import HANDLERS as PROCESS_VIDEO
from vidbox.jobs.send_mail import HANDLERS as SEND_MAIL


def all_handlers() -> dict[str, Handler]:
    return {**CLEANUP, **PROCESS_VIDEO, **SEND_MAIL}
