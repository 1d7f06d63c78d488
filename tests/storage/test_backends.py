"""One behaviour suite run against both backends (local disk and a real S3 server), plus the
failure modes particular to each."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import threading
from collections.abc import Callable, Coroutine
from datetime import UTC
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest

from tests.support import free_port
from vidbox.config import load_settings
from vidbox.storage import CHUNK_SIZE, ObjectNotFound, Storage, StorageError, load, validate_key
from vidbox.storage.local import READ_CHUNK, TEMP_PREFIX

T = TypeVar("T")
MakeEnv = Callable[..., dict[str, str]]
MiB = 1024 * 1024
DATA = bytes(range(256)) * 4  # 1024 bytes whose every offset is recognisable


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def read_all(storage: Storage, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in storage.open_range(key, start, end)])


def test_put_bytes_then_stat_and_read(storage: Storage) -> None:
    async def scenario() -> None:
        await storage.put_bytes("videos/u1/v1/thumb.jpg", DATA, "image/jpeg")
        info = await storage.stat("videos/u1/v1/thumb.jpg")
        assert (info.key, info.size) == ("videos/u1/v1/thumb.jpg", len(DATA))
        assert info.etag and '"' not in info.etag
        assert info.modified.tzinfo is not None
        assert info.modified.utcoffset() == UTC.utcoffset(None)
        assert await read_all(storage, "videos/u1/v1/thumb.jpg") == DATA

    run(scenario())


def test_put_replaces_the_previous_object(storage: Storage) -> None:
    async def scenario() -> None:
        await storage.put_bytes("videos/u1/v1/index.m3u8", b"old playlist")
        first = await storage.stat("videos/u1/v1/index.m3u8")
        await storage.put_bytes("videos/u1/v1/index.m3u8", b"#EXTM3U new, longer playlist")
        second = await storage.stat("videos/u1/v1/index.m3u8")
        assert await read_all(storage, "videos/u1/v1/index.m3u8") == (
            b"#EXTM3U new, longer playlist"
        )
        assert second.size == 28
        assert second.etag != first.etag

    run(scenario())


def test_empty_object(storage: Storage) -> None:
    async def scenario() -> None:
        await storage.put_bytes("videos/u1/v1/empty", b"")
        assert (await storage.stat("videos/u1/v1/empty")).size == 0
        assert await read_all(storage, "videos/u1/v1/empty") == b""

    run(scenario())


def test_large_file_round_trip_streams_in_chunks(storage: Storage, tmp_path: Path) -> None:
    # Above the 5 MiB multipart threshold, so the S3 backend uploads it in parts.
    source = tmp_path / "original.mp4"
    payload = os.urandom(6 * MiB + 12345)
    source.write_bytes(payload)

    async def scenario() -> None:
        await storage.put_file("videos/u1/v1/original.mp4", source, "video/mp4")
        info = await storage.stat("videos/u1/v1/original.mp4")
        assert info.size == len(payload)
        if storage.name == "s3":
            assert info.etag.endswith("-2"), "expected a two-part multipart upload"
        digest = hashlib.sha256()
        sizes = []
        async for chunk in storage.open_range("videos/u1/v1/original.mp4"):
            sizes.append(len(chunk))
            digest.update(chunk)
        assert digest.digest() == hashlib.sha256(payload).digest()
        assert len(sizes) > 1
        assert max(sizes) <= (READ_CHUNK if storage.name == "local" else CHUNK_SIZE)

    run(scenario())
    assert source.read_bytes() == payload, "put_file must leave the source in place"


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (0, 0, DATA[:1]),
        (0, 99, DATA[:100]),
        (500, 599, DATA[500:600]),
        (1000, 1023, DATA[1000:]),
        (1000, None, DATA[1000:]),
        (0, None, DATA),
        (1000, 5000, DATA[1000:]),  # an end past the object is clamped
        (1024, None, b""),  # starting at the end reads nothing
        (4096, 5000, b""),
    ],
)
def test_ranged_reads(storage: Storage, start: int, end: int | None, expected: bytes) -> None:
    async def scenario() -> bytes:
        await storage.put_bytes("videos/u1/v1/seg.m4s", DATA)
        return await read_all(storage, "videos/u1/v1/seg.m4s", start, end)

    assert run(scenario()) == expected


def test_invalid_range_is_a_value_error(storage: Storage) -> None:
    async def scenario() -> None:
        await storage.put_bytes("videos/u1/v1/seg.m4s", DATA)
        with pytest.raises(ValueError, match="range"):
            await read_all(storage, "videos/u1/v1/seg.m4s", 10, 5)

    run(scenario())


def test_missing_objects(storage: Storage) -> None:
    async def scenario() -> None:
        with pytest.raises(ObjectNotFound, match="nothing/here"):
            await storage.stat("videos/nothing/here")
        with pytest.raises(ObjectNotFound):
            await read_all(storage, "videos/nothing/here")
        await storage.delete("videos/nothing/here")  # deleting what is not there is fine

    run(scenario())


def test_delete(storage: Storage) -> None:
    async def scenario() -> None:
        await storage.put_bytes("videos/u1/v1/a", b"a")
        await storage.put_bytes("videos/u1/v1/b", b"b")
        await storage.delete("videos/u1/v1/a")
        with pytest.raises(ObjectNotFound):
            await storage.stat("videos/u1/v1/a")
        assert await read_all(storage, "videos/u1/v1/b") == b"b"

    run(scenario())


def test_delete_prefix_removes_everything_under_it_and_nothing_else(storage: Storage) -> None:
    keep = ["videos/u1/v10/original.mp4", "videos/u1/v2/original.mp4", "videos/u1/v1.txt"]
    gone = ["videos/u1/v1/original.mp4", "videos/u1/v1/hls/720p/seg_1.m4s", "videos/u1/v1/t"]

    async def scenario() -> None:
        for key in keep + gone:
            await storage.put_bytes(key, key.encode())
        # "v1" must not catch its sibling "v10" (a plain string prefix would).
        assert await storage.delete_prefix("videos/u1/v1") == len(gone)
        remaining = [info.key for info in await storage.list_prefix("videos/")]
        assert remaining == sorted(keep)
        assert await storage.delete_prefix("videos/u1/v1/") == 0
        with pytest.raises(ValueError, match="storage key"):
            await storage.delete_prefix("")

    run(scenario())


def test_list_prefix(storage: Storage) -> None:
    objects = {
        "videos/u1/v1/original.mp4": b"x" * 300,
        "videos/u1/v1/hls/index.m3u8": b"#EXTM3U",
        "videos/u1/v1/hls/720p/seg_1.m4s": b"s" * 10,
        "videos/u2/v9/original.mp4": b"y",
    }

    async def scenario() -> None:
        for key, data in objects.items():
            await storage.put_bytes(key, data)
        listed = await storage.list_prefix("videos/u1/v1/")
        assert [(info.key, info.size) for info in listed] == sorted(
            (key, len(data)) for key, data in objects.items() if key.startswith("videos/u1/")
        )
        assert len(await storage.list_prefix("videos")) == 4
        assert await storage.list_prefix("videos/nobody/") == []

    run(scenario())


def test_open_file_gives_a_local_file_where_there_is_one(storage: Storage) -> None:
    async def scenario() -> None:
        key = "videos/u1/v1/hls/360p/seg_00001.m4s"
        await storage.put_bytes(key, DATA)
        opened = await storage.open_file(key)
        if storage.name == "s3":
            assert opened is None  # objects live on the S3 server
            return
        assert opened is not None
        file, info = opened
        with file:
            assert file.read() == DATA
        assert info == await storage.stat(key)
        with pytest.raises(ObjectNotFound):
            await storage.open_file("videos/u1/v1/hls/360p/missing.m4s")
        with pytest.raises(ObjectNotFound):
            await storage.open_file("videos/u1/v1/hls/360p")  # a folder is not an object

    run(scenario())


def test_check_passes(storage: Storage) -> None:
    run(storage.check())
    expected = {"local": "local folder ", "s3": "S3 bucket "}[storage.name]
    assert storage.describe().startswith(expected)


BAD_KEYS = ["", "/etc/passwd", "a/../b", "..", "a/./b", "a//b", "a/", "a\\b", "a\x00b", "a\nb"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_invalid_keys_are_rejected(storage: Storage, key: str) -> None:
    async def scenario() -> None:
        with pytest.raises(ValueError, match="storage key"):
            await storage.put_bytes(key, b"x")
        with pytest.raises(ValueError, match="storage key"):
            await storage.stat(key)
        with pytest.raises(ValueError, match="storage key"):
            await storage.delete(key)
        with pytest.raises(ValueError, match="storage key"):
            await read_all(storage, key)

    run(scenario())


def test_validate_key_accepts_ordinary_keys() -> None:
    key = "videos/0f3c/9ab1/hls/720p/seg_00001.m4s"
    assert validate_key(key) == key
    assert validate_key("videos/u/v/Fête à la plage.mp4")
    with pytest.raises(ValueError, match="storage key"):
        validate_key("a" * 1025)


# -- local backend -------------------------------------------------------------------------


def test_local_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    storage = load(load_settings(data_dir=tmp_path, environ={}))

    async def scenario() -> None:
        await storage.put_bytes("videos/u1/v1/a", b"1")
        await storage.put_bytes("videos/u1/v1/a", b"2")
        await storage.delete_prefix("videos/u1/")

    run(scenario())
    leftovers = [p for p in (tmp_path / "media").rglob("*") if p.name.startswith(TEMP_PREFIX)]
    assert leftovers == []
    assert list((tmp_path / "media").iterdir()) == [], "empty folders are pruned"


def test_local_check_fails_when_folder_cannot_be_made(tmp_path: Path) -> None:
    # Tests run as root, which ignores permission bits; a path below a regular file fails anyway.
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("I am a file")
    media = blocker / "media"
    storage = load(load_settings(data_dir=tmp_path, environ={"VIDBOX_STORAGE__PATH": str(media)}))
    with pytest.raises(StorageError, match="not writable") as caught:
        run(storage.check())
    assert str(media) in str(caught.value)
    with pytest.raises(StorageError, match="cannot write"):
        run(storage.put_bytes("videos/u/v/a", b"x"))


def test_local_refuses_symlink_escape(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("keep out")
    media = tmp_path / "data" / "media"
    (media / "videos").mkdir(parents=True)
    (media / "videos" / "u1").symlink_to(outside)
    storage = load(load_settings(data_dir=tmp_path / "data", environ={}))

    async def scenario() -> None:
        with pytest.raises(StorageError, match="outside") as caught:
            await storage.stat("videos/u1/secret.txt")
        assert not isinstance(caught.value, ObjectNotFound)
        with pytest.raises(StorageError, match="outside"):
            await read_all(storage, "videos/u1/secret.txt")
        with pytest.raises(StorageError, match="outside"):
            await storage.open_file("videos/u1/secret.txt")
        with pytest.raises(StorageError, match="outside"):
            await storage.put_bytes("videos/u1/secret.txt", b"overwritten")
        with pytest.raises(StorageError, match="outside"):
            await storage.delete_prefix("videos/u1/")
        assert await storage.list_prefix("videos/") == []

    run(scenario())
    assert (outside / "secret.txt").read_text() == "keep out"


def test_local_has_no_presigned_urls(local_storage: Storage) -> None:
    assert run(local_storage.presigned_get("videos/u/v/a.mp4", expires_seconds=60)) is None


# -- S3 backend ----------------------------------------------------------------------------


def test_s3_check_fails_when_server_is_unreachable(tmp_path: Path, s3_environ: MakeEnv) -> None:
    endpoint = f"127.0.0.1:{free_port()}"  # nothing listens there any more
    environ = s3_environ(endpoint)
    storage = load(load_settings(data_dir=tmp_path, environ=environ))
    with pytest.raises(StorageError) as caught:
        run(storage.check())
    message = str(caught.value)
    assert f"S3 store at {endpoint} is unreachable" in message
    assert "refused" in message
    assert environ["VIDBOX_STORAGE__SECRET_KEY"] not in message
    with pytest.raises(StorageError, match="unreachable"):
        run(storage.put_bytes("videos/u/v/a", b"x"))


def test_s3_check_fails_when_the_endpoint_is_not_s3(tmp_path: Path, s3_environ: MakeEnv) -> None:
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    web_server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=web_server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"127.0.0.1:{web_server.server_address[1]}"
        storage = load(load_settings(data_dir=tmp_path, environ=s3_environ(endpoint)))
        with pytest.raises(StorageError, match="is it an S3 server") as caught:
            run(storage.check())
        assert str(caught.value).startswith(f"S3 store at {endpoint} gave an unexpected answer")
        assert "<" not in str(caught.value), "no HTML page in the message"
    finally:
        web_server.shutdown()
        web_server.server_close()
        thread.join()


def test_s3_check_creates_the_bucket(
    tmp_path: Path, moto_endpoint: str, s3_environ: MakeEnv
) -> None:
    environ = s3_environ(moto_endpoint)
    storage = load(load_settings(data_dir=tmp_path, environ=environ))
    run(storage.check())
    run(storage.check())  # a second check on the existing bucket is fine too
    # A separate client sees the bucket the first one created.
    other = load(load_settings(data_dir=tmp_path, environ=environ))
    run(other.put_bytes("videos/u/v/a", b"hello"))
    assert run(read_all(storage, "videos/u/v/a")) == b"hello"
    assert environ["VIDBOX_STORAGE__BUCKET"] in storage.describe()
    assert environ["VIDBOX_STORAGE__SECRET_KEY"] not in storage.describe()


def test_s3_presigned_url(tmp_path: Path, moto_endpoint: str, s3_environ: MakeEnv) -> None:
    environ = s3_environ(moto_endpoint)
    s3_storage = load(load_settings(data_dir=tmp_path, environ=environ))
    key = "videos/u1/v1/original.mp4"
    run(s3_storage.put_bytes(key, DATA, "video/mp4"))
    url = run(
        s3_storage.presigned_get(
            key, expires_seconds=120, filename="Holiday 2024.mp4", content_type="video/mp4"
        )
    )
    assert url is not None
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert parts.netloc == moto_endpoint
    assert parts.path.endswith("/" + key)
    assert query["X-Amz-Expires"] == ["120"]
    assert "X-Amz-Signature" in query
    assert environ["VIDBOX_STORAGE__SECRET_KEY"] not in url
    disposition = query["response-content-disposition"][0]
    assert disposition.startswith("attachment;")
    assert "Holiday 2024.mp4" in unquote(disposition)
    assert query["response-content-type"] == ["video/mp4"]
    # The S3 server serves the URL with the overridden headers.
    answer = httpx.get(url, timeout=10)
    assert answer.status_code == 200
    assert answer.content == DATA
    assert answer.headers["content-disposition"] == disposition


def test_s3_stops_early_and_releases_the_connection(
    s3_storage: Storage, moto_endpoint: str
) -> None:
    key = "videos/u1/v1/big.mp4"
    payload = os.urandom(3 * CHUNK_SIZE)
    run(s3_storage.put_bytes(key, payload))

    async def read_one_chunk() -> bytes:
        stream = s3_storage.open_range(key)
        first = await anext(stream)
        await stream.aclose()  # type: ignore[attr-defined]
        return first

    for _ in range(3):
        assert run(read_one_chunk()) == payload[:CHUNK_SIZE]
    # Every connection the reads borrowed is back in urllib3's pool (a slot is taken from its
    # queue while a response holds the connection, and put back by release_conn).
    pool = s3_storage._http.connection_from_url(f"http://{moto_endpoint}")  # type: ignore[attr-defined]
    assert pool.pool.qsize() == pool.pool.maxsize
    assert run(read_all(s3_storage, key, 10, 19)) == payload[10:20]
