"""Serving stored objects over real HTTP: a tiny app on uvicorn, requested with httpx."""

from __future__ import annotations

import asyncio
import mimetypes
import os
import uuid
from collections.abc import Iterator
from contextlib import suppress
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.postgres import settings_for
from tests.support import LiveServer, start_server, wait_until
from vidbox.config import Settings
from vidbox.filenames import content_disposition, safe_filename
from vidbox.storage import CHUNK_SIZE, ObjectNotFound, Storage, load
from vidbox.web.serving import (
    SMALL_OBJECT_BYTES,
    UNSATISFIABLE,
    media_response,
    object_response,
    parse_range,
)

CLIP_KEY = "videos/u1/v1/original.mp4"
CLIP = os.urandom(CHUNK_SIZE + 40_000)  # spans two storage chunks
PLAYLIST_KEY = "videos/u1/v1/hls/index.m3u8"
PLAYLIST = b"#EXTM3U\n#EXT-X-VERSION:7\n"
EMPTY_KEY = "videos/u1/v1/empty.bin"
# Past SMALL_OBJECT_BYTES: sent by the streaming response that watches for the client leaving.
BIG_KEY = "videos/u1/v1/big.bin"
BIG = os.urandom(SMALL_OBJECT_BYTES + 123_456)

# What the tests' own routes answer for each key (the app's routes know their objects' types).
CONTENT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".m4s": "video/mp4",
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".avi": "video/x-msvideo",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".vtt": "text/vtt",
    ".json": "application/json",
}


def content_type_for(key: str) -> str:
    ext = os.path.splitext(key)[1].lower()
    return CONTENT_TYPES.get(ext) or mimetypes.guess_type(key)[0] or "application/octet-stream"


def _app(local: Storage, local_settings: Settings, s3: Storage, s3_settings: Settings) -> Starlette:
    async def media(request: Request) -> Response:
        key = request.path_params["key"]
        response = await object_response(
            request,
            local,
            key,
            content_type=content_type_for(key),
            download_name=request.query_params.get("name"),
        )
        # Tells the tests which way the bytes went: sent by the kernel, or streamed.
        response.headers["x-test-response"] = type(response).__name__
        return response

    async def redirect_s3(request: Request) -> Response:
        key = request.path_params["key"]
        return await media_response(
            request, s3_settings, s3, key, content_type=content_type_for(key), download_name="a.mp4"
        )

    async def redirect_local(request: Request) -> Response:
        key = request.path_params["key"]
        return await media_response(
            request, local_settings, local, key, content_type=content_type_for(key)
        )

    async def not_found(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ObjectNotFound)
        return JSONResponse({"detail": "not found"}, status_code=404)

    return Starlette(
        routes=[
            Route("/media/{key:path}", media),
            Route("/s3/{key:path}", redirect_s3),
            Route("/local/{key:path}", redirect_local),
        ],
        exception_handlers={ObjectNotFound: not_found},
    )


# Every test runs against the server as `vidbox serve` runs it (local files sent with
# sendfile) and against plain uvicorn on uvloop, which offers no zero-copy send, so objects
# are streamed through Python as they are from S3.
SERVERS = {"zero-copy": {}, "streamed": {"http": "httptools", "loop": "uvloop"}}


@pytest.fixture(scope="module", params=list(SERVERS))
def live(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    moto_endpoint: str,
) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("serving")
    # "redirect" asks for presigned URLs; local storage cannot make them and must stream.
    local_settings = settings_for(data_dir=data_dir, environ={"VIDBOX_STORAGE__SERVE": "redirect"})
    s3_settings = settings_for(
        data_dir=data_dir,
        environ={
            "VIDBOX_STORAGE__BACKEND": "s3",
            "VIDBOX_STORAGE__ENDPOINT": moto_endpoint,
            "VIDBOX_STORAGE__BUCKET": f"serving-{uuid.uuid4().hex[:12]}",
            "VIDBOX_STORAGE__ACCESS_KEY": "access",
            "VIDBOX_STORAGE__SECRET_KEY": "secret-for-tests",
            "VIDBOX_STORAGE__SECURE": "false",
            "VIDBOX_STORAGE__SERVE": "redirect",
            "VIDBOX_STORAGE__PRESIGN_SECONDS": "90",
        },
    )
    local, s3 = load(local_settings), load(s3_settings)

    async def fill() -> None:
        for storage in (local, s3):
            await storage.put_bytes(CLIP_KEY, CLIP)
        await local.put_bytes(PLAYLIST_KEY, PLAYLIST)
        await local.put_bytes(EMPTY_KEY, b"")
        await local.put_bytes(BIG_KEY, BIG)

    asyncio.run(fill())
    server = start_server(
        local_settings, app=_app(local, local_settings, s3, s3_settings), **SERVERS[request.param]
    )
    yield server
    server.stop()
    asyncio.run(s3.close())


@pytest.fixture
def mode(request: pytest.FixtureRequest, live: LiveServer) -> str:
    return str(request.node.callspec.params["live"])


@pytest.fixture
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with live.client(follow_redirects=False) as client:
        yield client


def _full(client: httpx.Client, **headers: str) -> httpx.Response:
    return client.get(f"/media/{CLIP_KEY}", headers=headers)


# -- full responses and validators ----------------------------------------------------------


def test_full_get(client: httpx.Client) -> None:
    answer = _full(client)
    assert answer.status_code == 200
    assert answer.content == CLIP
    assert answer.headers["content-length"] == str(len(CLIP))
    assert answer.headers["content-type"] == "video/mp4"
    assert answer.headers["accept-ranges"] == "bytes"
    assert answer.headers["etag"].startswith('"')
    assert answer.headers["last-modified"].endswith(" GMT")
    assert answer.headers["cache-control"] == "private, max-age=0, must-revalidate"
    assert "content-disposition" not in answer.headers


def test_head_sends_headers_only(client: httpx.Client) -> None:
    answer = client.head(f"/media/{CLIP_KEY}")
    assert answer.status_code == 200
    assert answer.content == b""
    assert answer.headers["content-length"] == str(len(CLIP))
    assert answer.headers["etag"] == _full(client).headers["etag"]

    ranged = client.head(f"/media/{CLIP_KEY}", headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206
    assert ranged.headers["content-length"] == "10"
    assert ranged.content == b""


def test_playlist_content_type(client: httpx.Client) -> None:
    answer = client.get(f"/media/{PLAYLIST_KEY}")
    assert answer.content == PLAYLIST
    assert answer.headers["content-type"] == "application/vnd.apple.mpegurl"


def test_missing_object_raises_not_found(client: httpx.Client) -> None:
    answer = client.get("/media/videos/u1/v1/nothing.mp4")
    assert answer.status_code == 404
    assert answer.json() == {"detail": "not found"}


def test_empty_object(client: httpx.Client) -> None:
    answer = client.get(f"/media/{EMPTY_KEY}")
    assert (answer.status_code, answer.content) == (200, b"")
    assert answer.headers["content-length"] == "0"
    ranged = client.get(f"/media/{EMPTY_KEY}", headers={"Range": "bytes=0-"})
    assert ranged.status_code == 416
    assert ranged.headers["content-range"] == "bytes */0"


def test_if_none_match_gives_304(client: httpx.Client) -> None:
    etag = _full(client).headers["etag"]
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        answer = _full(client, **{"If-None-Match": header})
        assert answer.status_code == 304, header
        assert answer.content == b""
        assert answer.headers["etag"] == etag
    assert _full(client, **{"If-None-Match": '"stale"'}).status_code == 200


def test_if_modified_since(client: httpx.Client) -> None:
    last_modified = _full(client).headers["last-modified"]
    assert _full(client, **{"If-Modified-Since": last_modified}).status_code == 304
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert _full(client, **{"If-Modified-Since": old}).status_code == 200


# -- ranges ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=100-", 100, len(CLIP) - 1),
        ("bytes=-50", len(CLIP) - 50, len(CLIP) - 1),
        ("bytes=1000-999999999", 1000, len(CLIP) - 1),
        (f"bytes={CHUNK_SIZE - 5}-{CHUNK_SIZE + 5}", CHUNK_SIZE - 5, CHUNK_SIZE + 5),
    ],
)
def test_single_range(client: httpx.Client, header: str, start: int, end: int) -> None:
    answer = _full(client, Range=header)
    assert answer.status_code == 206
    assert answer.headers["content-range"] == f"bytes {start}-{end}/{len(CLIP)}"
    assert answer.headers["content-length"] == str(end - start + 1)
    assert answer.content == CLIP[start : end + 1]


@pytest.mark.parametrize("header", ["bytes=999999999-", f"bytes={len(CLIP)}-", "bytes=-0"])
def test_unsatisfiable_range(client: httpx.Client, header: str) -> None:
    answer = _full(client, Range=header)
    assert answer.status_code == 416
    assert answer.headers["content-range"] == f"bytes */{len(CLIP)}"
    assert answer.content == b""


@pytest.mark.parametrize(
    "header", ["bytes=abc", "bytes=5-1", "items=0-1", "bytes=0-1,5-9", "bytes=-", "bytes 0-1"]
)
def test_malformed_or_multiple_ranges_are_ignored(client: httpx.Client, header: str) -> None:
    answer = _full(client, Range=header)
    assert answer.status_code == 200
    assert answer.content == CLIP


def test_if_range(client: httpx.Client) -> None:
    full = _full(client)
    etag, last_modified = full.headers["etag"], full.headers["last-modified"]

    matching = _full(client, Range="bytes=0-99", **{"If-Range": etag})
    assert (matching.status_code, matching.content) == (206, CLIP[:100])
    by_date = _full(client, Range="bytes=0-99", **{"If-Range": last_modified})
    assert (by_date.status_code, by_date.content) == (206, CLIP[:100])

    for stale in ('"an-old-version"', f"W/{etag}", "Mon, 01 Jan 2001 00:00:00 GMT", "junk"):
        answer = _full(client, Range="bytes=0-99", **{"If-Range": stale})
        assert answer.status_code == 200, stale
        assert answer.content == CLIP


# -- downloads ------------------------------------------------------------------------------


def test_download_name_over_http(client: httpx.Client) -> None:
    answer = client.get(f"/media/{CLIP_KEY}", params={"name": "../../etc/Fête d'été.mp4"})
    assert answer.status_code == 200
    disposition = answer.headers["content-disposition"]
    assert disposition == (
        'attachment; filename="Fete d\'ete.mp4"; '
        "filename*=UTF-8''F%C3%AAte%20d%27%C3%A9t%C3%A9.mp4"
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd.mp4", "passwd.mp4"),
        ("..\\..\\windows\\boot.ini.mp4", "boot.ini.mp4"),
        ("clip\x00.mp4", "clip.mp4"),
        ("evil\u202egpj.mp4", "evilgpj.mp4"),
        ('say "cheese"\r\nSet-Cookie: x=1.mp4', "say cheese Set-Cookie: x=1.mp4"),
        ("..", "download"),
        ("", "download"),
        (".hidden.mp4", "hidden.mp4"),
        ("trailing dots... ", "trailing dots"),
    ],
)
def test_safe_filename(name: str, expected: str) -> None:
    assert safe_filename(name) == expected


def test_long_names_are_truncated_keeping_the_extension() -> None:
    name = safe_filename("x" * 300 + ".mp4")
    assert len(name) == 150
    assert name.endswith("xxx.mp4")


@pytest.mark.parametrize(
    "name", ["../../etc/passwd.mp4", "a\x00b.mp4", "y" * 300 + ".mp4", "abc\u202e4pm.exe"]
)
def test_content_disposition_is_safe_for_hostile_names(name: str) -> None:
    header = content_disposition(name)
    assert header.isascii()
    assert header.startswith('attachment; filename="')
    fallback = header.split('filename="', 1)[1].split('"', 1)[0]
    encoded = header.split("filename*=UTF-8''", 1)[1]
    decoded = unquote(encoded)
    for value in (fallback, decoded):
        assert "/" not in value and "\\" not in value
        assert "\x00" not in value and "\u202e" not in value
        assert 0 < len(value) <= 150
    assert ";" not in encoded and " " not in encoded


def test_non_ascii_names_get_an_ascii_fallback() -> None:
    header = content_disposition("日本の夏.mp4")
    assert 'filename="download.mp4"' in header
    assert unquote(header.split("UTF-8''", 1)[1]) == "日本の夏.mp4"


# -- redirect mode -------------------------------------------------------------------------


def test_redirect_mode_sends_a_presigned_url(client: httpx.Client, moto_endpoint: str) -> None:
    answer = client.get(f"/s3/{CLIP_KEY}")
    assert answer.status_code == 302
    assert answer.headers["cache-control"] == "no-store"
    location = answer.headers["location"]
    parts = urlsplit(location)
    query = parse_qs(parts.query)
    assert parts.netloc == moto_endpoint
    assert parts.path.endswith(CLIP_KEY)
    assert query["X-Amz-Expires"] == ["90"]
    assert query["response-content-disposition"] == [content_disposition("a.mp4")]
    # The browser's next hop: the S3 server itself serves the bytes.
    fetched = httpx.get(location, timeout=10)
    assert fetched.content == CLIP
    assert fetched.headers["content-type"] == "video/mp4"


def test_redirect_mode_checks_the_object_exists(client: httpx.Client) -> None:
    assert client.get("/s3/videos/u1/v1/gone.mp4").status_code == 404


def test_redirect_mode_streams_when_the_backend_cannot_presign(client: httpx.Client) -> None:
    answer = client.get(f"/local/{CLIP_KEY}", headers={"Range": "bytes=-10"})
    assert answer.status_code == 206
    assert answer.content == CLIP[-10:]


# -- pure helpers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 100, None),
        ("", 100, None),
        ("bytes=0-0", 100, (0, 0)),
        ("bytes=0-99", 100, (0, 99)),
        ("bytes=0-500", 100, (0, 99)),
        ("bytes=10-", 100, (10, 99)),
        ("bytes=-1", 100, (99, 99)),
        ("bytes=-500", 100, (0, 99)),
        ("Bytes = 5-9", 100, (5, 9)),
        ("bytes=5-9,", 100, (5, 9)),
        ("bytes=100-", 100, UNSATISFIABLE),
        ("bytes=100-200", 100, UNSATISFIABLE),
        ("bytes=-0", 100, UNSATISFIABLE),
        ("bytes=-5", 0, UNSATISFIABLE),
        ("bytes=0-", 0, UNSATISFIABLE),
        ("bytes=9-5", 100, None),
        ("bytes=0-1,3-4", 100, None),
        ("bytes=a-b", 100, None),
        ("bytes=-", 100, None),
        ("bytes=1-2-3", 100, None),
        ("bytes=\u0661-\u0662", 100, None),  # Arabic-Indic digits are not HTTP digits
        ("items=0-1", 100, None),
        ("bytes", 100, None),
    ],
)
def test_parse_range(header: str | None, size: int, expected: object) -> None:
    assert parse_range(header, size) == expected


def test_local_objects_live_in_the_media_dir(live: LiveServer) -> None:
    # The local backend really wrote under the data dir's media folder, not somewhere shared.
    assert (live.settings.media_dir / CLIP_KEY).read_bytes() == CLIP


def test_large_objects_stream_whole_and_in_ranges(client: httpx.Client) -> None:
    whole = client.get(f"/media/{BIG_KEY}")
    assert whole.status_code == 200
    assert whole.content == BIG
    start = SMALL_OBJECT_BYTES - 10
    tail = client.get(f"/media/{BIG_KEY}", headers={"Range": f"bytes={start}-"})
    assert tail.status_code == 206
    assert tail.content == BIG[start:]


def test_local_objects_are_sent_by_the_kernel_when_the_server_can(
    client: httpx.Client, mode: str
) -> None:
    small = _full(client)
    big_range = client.get(f"/media/{BIG_KEY}", headers={"Range": "bytes=100-"})
    assert (small.content, big_range.content) == (CLIP, BIG[100:])
    kinds = (small.headers["x-test-response"], big_range.headers["x-test-response"])
    if mode == "zero-copy":
        assert kinds == ("_ZeroCopyFile", "_ZeroCopyFile")
    else:
        assert kinds == ("_SmallObject", "_ObjectStream")


def _open_media_files(live: LiveServer) -> list[str]:
    """Files under the media folder this process (which runs the server) holds open."""
    media = str(live.settings.media_dir.resolve())
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(media):
                found.append(target)
    return found


def test_no_answer_leaves_a_file_open(live: LiveServer, client: httpx.Client) -> None:
    with (live.settings.media_dir / CLIP_KEY).open("rb"):
        assert _open_media_files(live)  # the check below can see an open file
    etag = _full(client).headers["etag"]
    for _ in range(10):
        assert _full(client, **{"If-None-Match": etag}).status_code == 304
        assert _full(client, Range="bytes=999999999-").status_code == 416
        assert client.head(f"/media/{CLIP_KEY}").status_code == 200
        assert _full(client, Range="bytes=5-9").content == CLIP[5:10]
        assert client.get(f"/media/{EMPTY_KEY}").content == b""
    # A client that leaves in the middle of a large object.
    for _ in range(3):
        with live.client() as leaving, leaving.stream("GET", f"/media/{BIG_KEY}") as answer:
            assert answer.status_code == 200
            next(answer.iter_raw())
    wait_until(lambda: not _open_media_files(live), timeout=10, what="media files closed")
    # And the server goes on answering.
    assert client.get(f"/media/{BIG_KEY}").content == BIG
