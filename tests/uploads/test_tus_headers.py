from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from vidbox.timefmt import http_date
from vidbox.uploads.tus import (
    CHECKSUM_ALGORITHMS,
    TUS_EXTENSIONS,
    TUS_VERSION,
    UnsupportedChecksumAlgorithm,
    encode_upload_metadata,
    parse_checksum,
    parse_size,
    parse_upload_metadata,
)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_constants_advertise_what_the_server_does() -> None:
    assert TUS_VERSION == "1.0.0"
    assert set(TUS_EXTENSIONS.split(",")) == {
        "creation",
        "creation-with-upload",
        "termination",
        "expiration",
        "checksum",
    }
    assert "sha1" in CHECKSUM_ALGORITHMS  # required by the tus checksum extension


def test_parse_upload_metadata_reads_pairs_and_bare_keys() -> None:
    header = f"filename {b64('été à la plage.mp4')},filetype {b64('video/mp4')},is_private"
    assert parse_upload_metadata(header) == {
        "filename": "été à la plage.mp4",
        "filetype": "video/mp4",
        "is_private": "",
    }
    assert parse_upload_metadata(f" name {b64('x')} ,  other ") == {"name": "x", "other": ""}
    assert parse_upload_metadata(None) == {}
    assert parse_upload_metadata("") == {}


def test_metadata_round_trip() -> None:
    metadata = {"filename": "clip, final (2).mov", "title": "Ünïcødé 🎬", "empty": ""}
    assert parse_upload_metadata(encode_upload_metadata(metadata)) == metadata


@pytest.mark.parametrize(
    "header",
    [
        "filename !!notbase64!!",
        f"filename {b64('a')},filename {b64('b')}",
        f"filename {b64('a')} extra",
        f"filename {b64('a')},,other",
        "filename " + base64.b64encode(b"\xff\xfe").decode(),  # not UTF-8
        "filename YQ",  # unpadded base64
    ],
)
def test_parse_upload_metadata_rejects_malformed_headers(header: str) -> None:
    with pytest.raises(ValueError, match="Upload-Metadata"):
        parse_upload_metadata(header)


def test_encode_upload_metadata_rejects_keys_that_cannot_travel() -> None:
    for key in ("", "two words", "a,b"):
        with pytest.raises(ValueError, match="key"):
            encode_upload_metadata({key: "x"})


def test_parse_checksum() -> None:
    digest = hashlib.sha1(b"hello", usedforsecurity=False).digest()
    assert parse_checksum(f"sha1 {base64.b64encode(digest).decode()}") == ("sha1", digest)
    digest256 = hashlib.sha256(b"hello").digest()
    encoded = base64.b64encode(digest256).decode()
    assert parse_checksum(f"SHA-256 {encoded}") == ("sha256", digest256)
    empty_md5 = base64.b64encode(hashlib.md5(usedforsecurity=False).digest()).decode()
    assert parse_checksum(f"md5 {empty_md5}")[0] == "md5"


def test_parse_checksum_errors_are_distinguishable() -> None:
    with pytest.raises(UnsupportedChecksumAlgorithm):
        parse_checksum("crc32 AAAAAA==")
    # Malformed values are plain ValueErrors, not the unsupported-algorithm kind.
    for header in ("sha1", "sha1 %%%", "sha1 " + base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError, match="Upload-Checksum") as caught:
            parse_checksum(header)
        assert not isinstance(caught.value, UnsupportedChecksumAlgorithm)


def test_parse_size() -> None:
    assert parse_size("0", "Upload-Offset") == 0
    assert parse_size("1048576", "Upload-Length") == 1048576
    for bad in (None, "", "-1", "+5", "1.5", "5_000", "١٢", "99999999999999999999"):
        with pytest.raises(ValueError, match="Upload-Length"):
            parse_size(bad, "Upload-Length")


def test_http_date_is_imf_fixdate_in_gmt() -> None:
    moment = datetime(1994, 11, 6, 8, 49, 37, 123456, tzinfo=UTC)
    assert http_date(moment) == "Sun, 06 Nov 1994 08:49:37 GMT"
    paris = timezone(timedelta(hours=1))
    assert http_date(datetime(1994, 11, 6, 9, 49, 37, tzinfo=paris)) == (
        "Sun, 06 Nov 1994 08:49:37 GMT"
    )
    assert http_date(datetime(2030, 1, 2, 3, 4, 5)) == "Wed, 02 Jan 2030 03:04:05 GMT"
