"""How moments are written: ISO 8601 with ``Z`` in JSON, IMF-fixdate in HTTP headers, and a
sentence form for people. vidbox keeps every datetime in UTC; naive ones are UTC too."""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import overload


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


@overload
def iso_z(moment: datetime) -> str: ...
@overload
def iso_z(moment: None) -> None: ...
@overload
def iso_z(moment: datetime | None) -> str | None: ...
def iso_z(moment: datetime | None) -> str | None:
    """``2026-11-21T06:00:00.123456Z`` for JSON (None stays None): what JavaScript's Date and
    every ISO parser read, without the ``+00:00`` that some of them do not."""
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def http_date(moment: datetime) -> str:
    """RFC 9110 IMF-fixdate, e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    # format_datetime spells day and month names itself, so the locale cannot change them.
    return format_datetime(_utc(moment).replace(microsecond=0), usegmt=True)


def parse_http_date(value: str) -> datetime | None:
    """The moment an HTTP date header names (any of the three RFC 9110 forms), or None."""
    with suppress(TypeError, ValueError, IndexError):
        parsed = parsedate_to_datetime(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def human_moment(moment: datetime) -> str:
    """``21 November 2026, 06:00 UTC``: in mail and on pages, where the reader's time zone is
    unknown, so the zone is said."""
    utc = _utc(moment)
    return f"{utc.day} {utc:%B %Y, %H:%M} UTC"
