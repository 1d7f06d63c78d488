from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

from vidbox.uploads.files import OverlappedWriter, PendingChunks, pwritev_all


def test_pwritev_all_writes_many_chunks_in_order_and_hashes_them(tmp_path: Path) -> None:
    # More chunks than one pwritev call accepts, of uneven sizes, some empty.
    chunks = [bytes([i % 251]) * (i % 7) for i in range(3000)]
    pending = PendingChunks()
    for chunk in chunks:
        pending.add(chunk)
    path = tmp_path / "data"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, b"HEAD", 0)
        hasher = hashlib.sha256()
        pwritev_all(fd, pending.chunks, 4, hasher)
    finally:
        os.close(fd)
    body = b"".join(chunks)
    assert pending.size == len(body)
    assert path.read_bytes() == b"HEAD" + body
    assert hasher.digest() == hashlib.sha256(body).digest()
    pending.clear()
    assert (pending.chunks, pending.size) == ([], 0)


def _writer_file(tmp_path: Path) -> int:
    return os.open(tmp_path / "part", os.O_RDWR | os.O_CREAT, 0o600)


def test_overlapped_writer_writes_batches_in_order(tmp_path: Path) -> None:
    pieces = [os.urandom(n) for n in (100, 70_000, 5, 300_000, 1, 123_456)]
    fd = _writer_file(tmp_path)
    os.pwrite(fd, b"head", 0)
    hasher = hashlib.sha256()

    async def scenario() -> int:
        writer = OverlappedWriter(fd, 4, batch_bytes=64 * 1024, hasher=hasher)
        for piece in pieces:
            await writer.add(memoryview(piece))  # views are written as they are
            assert writer.received - 4 <= sum(map(len, pieces))
        return await writer.flush()

    try:
        end = asyncio.run(scenario())
    finally:
        os.close(fd)
    body = b"".join(pieces)
    assert end == 4 + len(body)
    assert (tmp_path / "part").read_bytes() == b"head" + body
    assert hasher.hexdigest() == hashlib.sha256(body).hexdigest()


def test_overlapped_writer_gives_back_what_a_failed_write_did_not_write(tmp_path: Path) -> None:
    fd = _writer_file(tmp_path)
    os.close(fd)  # every write now fails (EBADF), like a disk gone bad

    async def scenario() -> tuple[list[bytes], int]:
        writer = OverlappedWriter(fd, 0, batch_bytes=10)
        await writer.add(b"0123456789")  # starts a write, which fails
        await writer.add(b"abc")  # stays pending
        unwritten = await writer.finish()
        return [bytes(chunk) for chunk in unwritten], writer.written

    assert asyncio.run(scenario()) == ([b"0123456789", b"abc"], 0)


def test_settle_waits_for_the_write_in_flight(tmp_path: Path) -> None:
    fd = _writer_file(tmp_path)

    async def scenario() -> tuple[list[bytes], int]:
        writer = OverlappedWriter(fd, 0, batch_bytes=4)
        await writer.add(b"abcd")  # a write in flight
        await writer.add(b"ef")
        unwritten = writer.settle()  # as a cancelled upload does, without awaiting
        return [bytes(chunk) for chunk in unwritten], writer.written

    try:
        assert asyncio.run(scenario()) == ([b"ef"], 4)
    finally:
        os.close(fd)
    assert (tmp_path / "part").read_bytes() == b"abcd"
