"""copy_all between real backends: local disk to a real S3 server and back."""

from __future__ import annotations

import asyncio
import os

from vidbox.storage import CHUNK_SIZE, Storage
from vidbox.storage.migrate import copy_all

OBJECTS = {
    "videos/u1/v1/original.mp4": os.urandom(2 * CHUNK_SIZE + 17),  # several chunks
    "videos/u1/v1/thumb.jpg": b"\xff\xd8jpeg",
    "videos/u1/v1/hls/index.m3u8": b"#EXTM3U\n",
    "videos/u1/v1/hls/720p/seg_00001.m4s": b"segment one",
    "videos/u2/v7/original.mp4": b"another video",
}


async def _contents(storage: Storage, prefix: str = "videos/") -> dict[str, bytes]:
    found = {}
    for info in await storage.list_prefix(prefix):
        found[info.key] = b"".join([chunk async for chunk in storage.open_range(info.key)])
    return found


def test_copy_local_to_s3_copies_everything_once(
    local_storage: Storage, s3_storage: Storage
) -> None:
    progress: list[tuple[int, int, str]] = []

    async def scenario() -> None:
        for key, data in OBJECTS.items():
            await local_storage.put_bytes(key, data)
        await local_storage.put_bytes("spool/not-media", b"outside the prefix")

        first = await copy_all(
            local_storage, s3_storage, on_progress=lambda *args: progress.append(args)
        )
        assert (first.total, first.copied, first.skipped) == (5, 5, 0)
        assert first.bytes_copied == sum(len(data) for data in OBJECTS.values())
        assert await _contents(s3_storage) == OBJECTS
        assert await s3_storage.list_prefix("spool/") == []

        second = await copy_all(local_storage, s3_storage)
        assert (second.copied, second.skipped, second.bytes_copied) == (0, 5, 0)

        # A changed object (different size) is copied again, and only that one.
        await local_storage.put_bytes("videos/u1/v1/thumb.jpg", b"a new, larger thumbnail")
        third = await copy_all(local_storage, s3_storage)
        assert (third.copied, third.skipped) == (1, 4)
        assert (await _contents(s3_storage, "videos/u1/v1/"))["videos/u1/v1/thumb.jpg"] == (
            b"a new, larger thumbnail"
        )

    asyncio.run(scenario())
    assert [done for done, _total, _key in progress] == [1, 2, 3, 4, 5]
    assert {total for _done, total, _key in progress} == {5}
    assert sorted(key for _done, _total, key in progress) == sorted(OBJECTS)


def test_interrupted_copy_resumes_where_it_stopped(
    local_storage: Storage, s3_storage: Storage
) -> None:
    async def scenario() -> None:
        for key, data in OBJECTS.items():
            await s3_storage.put_bytes(key, data)
        # As if a previous run had copied two objects before being stopped.
        for key in ["videos/u1/v1/original.mp4", "videos/u2/v7/original.mp4"]:
            await local_storage.put_bytes(key, OBJECTS[key])

        report = await copy_all(s3_storage, local_storage, prefix="videos/")
        assert (report.copied, report.skipped) == (3, 2)
        assert await _contents(local_storage) == OBJECTS

    asyncio.run(scenario())


def test_copy_with_a_narrower_prefix(local_storage: Storage, s3_storage: Storage) -> None:
    async def scenario() -> None:
        for key, data in OBJECTS.items():
            await local_storage.put_bytes(key, data)
        report = await copy_all(local_storage, s3_storage, prefix="videos/u2/")
        assert report.copied == 1
        assert list(await _contents(s3_storage)) == ["videos/u2/v7/original.mp4"]

    asyncio.run(scenario())
