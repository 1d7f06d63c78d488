"""The one way each kind of moment is written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from vidbox.timefmt import http_date, human_moment, iso_z, parse_http_date

PARIS = timezone(timedelta(hours=1))


def test_iso_z_ends_in_z_and_keeps_none() -> None:
    assert iso_z(datetime(2026, 11, 21, 6, 0, tzinfo=UTC)) == "2026-11-21T06:00:00Z"
    assert iso_z(datetime(2026, 11, 21, 6, 0, 0, 123456, tzinfo=UTC)) == (
        "2026-11-21T06:00:00.123456Z"
    )
    assert iso_z(None) is None


def test_http_date_is_imf_fixdate_in_gmt_whatever_the_zone() -> None:
    assert http_date(datetime(1994, 11, 6, 8, 49, 37, 999, tzinfo=UTC)) == (
        "Sun, 06 Nov 1994 08:49:37 GMT"
    )
    assert http_date(datetime(1994, 11, 6, 9, 49, 37, tzinfo=PARIS)) == (
        "Sun, 06 Nov 1994 08:49:37 GMT"
    )
    assert http_date(datetime(2030, 1, 2, 3, 4, 5)) == "Wed, 02 Jan 2030 03:04:05 GMT"  # naive: UTC


@pytest.mark.parametrize(
    "header",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # obsolete RFC 850
        "Sun Nov  6 08:49:37 1994",  # obsolete asctime, no zone: UTC
    ],
)
def test_parse_http_date_reads_the_three_forms(header: str) -> None:
    assert parse_http_date(header) == datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC)


def test_parse_http_date_round_trips_and_refuses_garbage() -> None:
    moment = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert parse_http_date(http_date(moment)) == moment
    assert parse_http_date("yesterday") is None
    assert parse_http_date("") is None


def test_human_moment_says_the_zone() -> None:
    assert human_moment(datetime(2026, 11, 1, 6, 5, tzinfo=UTC)) == "1 November 2026, 06:05 UTC"
    assert human_moment(datetime(2026, 11, 1, 7, 5, tzinfo=PARIS)) == "1 November 2026, 06:05 UTC"
    assert human_moment(datetime(2026, 11, 1, 6, 5)) == "1 November 2026, 06:05 UTC"
