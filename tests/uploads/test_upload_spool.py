from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from vidbox.config import Settings
from vidbox.diskspace import DiskFull
from vidbox.uploads import (
    ChecksumMismatch,
    EmptyUpload,
    OffsetMismatch,
    TooLarge,
    UploadLocked,
    UploadNotFound,
    UploadSpool,
)
from vidbox.uploads.spool import WRITE_BUFFER_BYTES

T = TypeVar("T")

# A few write buffers' worth, with an odd tail, so appends cross buffer boundaries.
SOURCE = random.Random(7).randbytes(4 * WRITE_BUFFER_BYTES + 12345)
KiB = 1024


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def chunks_of(data: bytes, size: int = 64 * KiB) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def cut_off(data: bytes, size: int = 64 * KiB) -> AsyncIterator[bytes]:
    """A body whose client disconnects after sending ``data``."""
    async for chunk in chunks_of(data, size):
        yield chunk
    raise ConnectionResetError("client went away")


def new_id() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def spool(settings: Settings) -> UploadSpool:
    return UploadSpool(settings.spool_dir)


def started(spool: UploadSpool, length: int = len(SOURCE), **info: Any) -> str:
    upload_id = new_id()
    spool.create(upload_id, length=length, info={"owner_id": 1, **info})
    return upload_id


def test_create_stores_info_and_an_empty_data_file(spool: UploadSpool) -> None:
    expires = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    upload_id = new_id()
    spool.create(
        upload_id,
        length=1234,
        info={"owner_id": 42, "metadata": {"filename": "a.mp4"}, "expires_at": expires},
    )
    info = spool.info(upload_id)
    assert info["length"] == 1234
    assert info["owner_id"] == 42
    assert info["metadata"] == {"filename": "a.mp4"}
    assert info["expires_at"] == expires
    assert isinstance(info["created_at"], datetime)
    assert spool.offset(upload_id) == 0
    assert spool.data_path(upload_id).read_bytes() == b""
    assert spool.ids() == [upload_id]
    with pytest.raises(FileExistsError):
        spool.create(upload_id, length=1, info={})


def test_ids_are_checked(spool: UploadSpool) -> None:
    with pytest.raises(ValueError, match="32 lowercase hex"):
        spool.create("../../etc/passwd", length=1, info={})
    with pytest.raises(ValueError, match="32 lowercase hex"):
        spool.create(uuid.uuid4().hex.upper(), length=1, info={})
    # Ids from URLs that name nothing are simply not found.
    for bad in ("../../etc/passwd", "x" * 32, new_id()):
        with pytest.raises(UploadNotFound) as caught:
            spool.offset(bad)
        assert caught.value.status == 404
        with pytest.raises(UploadNotFound):
            spool.info(bad)
        with pytest.raises(UploadNotFound):
            run(spool.append(bad, 0, chunks_of(b"abc"), length=3))
    assert list(spool.root.iterdir()) == []


def test_append_in_several_requests_reaches_the_full_file(spool: UploadSpool) -> None:
    upload_id = started(spool)
    first = 1_500_000
    assert run(spool.append(upload_id, 0, chunks_of(SOURCE[:first]), length=len(SOURCE))) == first
    assert spool.offset(upload_id) == first
    # Odd chunk sizes, one of them larger than the write buffer.
    rest = SOURCE[first:]
    assert run(
        spool.append(upload_id, first, chunks_of(rest, 1_100_003), length=len(SOURCE))
    ) == len(SOURCE)
    assert spool.offset(upload_id) == len(SOURCE)
    assert spool.data_path(upload_id).read_bytes() == SOURCE


def test_offset_mismatch_writes_nothing(spool: UploadSpool) -> None:
    upload_id = started(spool)
    run(spool.append(upload_id, 0, chunks_of(SOURCE[:1000]), length=len(SOURCE)))
    for wrong in (0, 999, 5000):
        with pytest.raises(OffsetMismatch) as caught:
            run(spool.append(upload_id, wrong, chunks_of(b"x" * 10), length=len(SOURCE)))
        assert caught.value.current == 1000
        assert caught.value.status == 409
    assert spool.data_path(upload_id).read_bytes() == SOURCE[:1000]


def test_too_large_writes_nothing_past_the_length(spool: UploadSpool) -> None:
    upload_id = started(spool, length=100)
    run(spool.append(upload_id, 0, chunks_of(SOURCE[:40]), length=100))
    with pytest.raises(TooLarge) as caught:
        run(spool.append(upload_id, 40, chunks_of(SOURCE[40:250], 30), length=100))
    assert caught.value.status == 413
    assert spool.offset(upload_id) == 100
    assert spool.data_path(upload_id).read_bytes() == SOURCE[:100]


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "md5"])
def test_checksum_mismatch_truncates_back_and_a_good_one_is_kept(
    spool: UploadSpool, algorithm: str
) -> None:
    upload_id = started(spool)
    run(spool.append(upload_id, 0, chunks_of(SOURCE[:5000]), length=len(SOURCE)))
    part = SOURCE[5000 : 5000 + 2 * WRITE_BUFFER_BYTES]
    wrong = hashlib.new(algorithm, b"something else").digest()
    with pytest.raises(ChecksumMismatch) as caught:
        run(
            spool.append(
                upload_id, 5000, chunks_of(part), length=len(SOURCE), checksum=(algorithm, wrong)
            )
        )
    assert caught.value.status == 460
    assert spool.offset(upload_id) == 5000
    assert spool.data_path(upload_id).stat().st_size == 5000
    right = hashlib.new(algorithm, part).digest()
    new_offset = run(
        spool.append(
            upload_id, 5000, chunks_of(part), length=len(SOURCE), checksum=(algorithm, right)
        )
    )
    assert new_offset == 5000 + len(part)
    assert spool.data_path(upload_id).read_bytes() == SOURCE[: 5000 + len(part)]
    assert sorted(p.name for p in spool.root.iterdir()) == [
        f"{upload_id}.json",
        f"{upload_id}.part",
    ]


def test_unsupported_checksum_algorithm_is_a_value_error(spool: UploadSpool) -> None:
    upload_id = started(spool)
    with pytest.raises(ValueError, match="not supported"):
        run(spool.append(upload_id, 0, chunks_of(b"abc"), length=3, checksum=("crc32", b"1234")))
    assert spool.offset(upload_id) == 0


def test_client_disconnect_keeps_every_byte_received(spool: UploadSpool) -> None:
    upload_id = started(spool)
    # More than one write buffer: part of it was written already, the rest sat in the buffer.
    sent = SOURCE[: WRITE_BUFFER_BYTES + 300 * KiB]
    with pytest.raises(ConnectionResetError):
        run(spool.append(upload_id, 0, cut_off(sent), length=len(SOURCE)))
    assert spool.offset(upload_id) == len(sent)
    assert spool.data_path(upload_id).read_bytes() == sent
    # The client resumes from there.
    run(spool.append(upload_id, len(sent), chunks_of(SOURCE[len(sent) :]), length=len(SOURCE)))
    assert spool.data_path(upload_id).read_bytes() == SOURCE


def test_client_disconnect_with_a_checksum_keeps_nothing_unverified(spool: UploadSpool) -> None:
    upload_id = started(spool)
    run(spool.append(upload_id, 0, chunks_of(SOURCE[:700]), length=len(SOURCE)))
    part = SOURCE[700 : 700 + WRITE_BUFFER_BYTES + 5]
    checksum = ("sha1", hashlib.sha1(SOURCE[700:9999], usedforsecurity=False).digest())
    with pytest.raises(ConnectionResetError):
        run(spool.append(upload_id, 700, cut_off(part), length=len(SOURCE), checksum=checksum))
    assert spool.offset(upload_id) == 700
    assert spool.data_path(upload_id).read_bytes() == SOURCE[:700]


def test_cancelled_append_keeps_the_bytes_received(spool: UploadSpool) -> None:
    upload_id = started(spool)

    async def scenario() -> None:
        waiting = asyncio.Event()

        async def stalled_body() -> AsyncIterator[bytes]:
            yield SOURCE[:5000]
            waiting.set()
            await asyncio.Event().wait()  # the client stops sending
            yield b"never"

        task = asyncio.create_task(spool.append(upload_id, 0, stalled_body(), length=len(SOURCE)))
        await waiting.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(scenario())
    assert spool.data_path(upload_id).read_bytes() == SOURCE[:5000]


def test_a_restarted_spool_resumes_where_the_old_one_stopped(spool: UploadSpool) -> None:
    upload_id = started(spool, metadata={"filename": "clip.mp4"})
    half = len(SOURCE) // 2
    with pytest.raises(ConnectionResetError):
        run(spool.append(upload_id, 0, cut_off(SOURCE[:half]), length=len(SOURCE)))

    restarted = UploadSpool(spool.root)
    assert restarted.ids() == [upload_id]
    assert restarted.info(upload_id)["metadata"] == {"filename": "clip.mp4"}
    offset = restarted.offset(upload_id)
    assert offset == half
    final = run(restarted.append(upload_id, offset, chunks_of(SOURCE[offset:]), length=len(SOURCE)))
    assert final == len(SOURCE)
    assert restarted.data_path(upload_id).read_bytes() == SOURCE


def test_a_second_writer_on_the_same_upload_is_refused_at_once(spool: UploadSpool) -> None:
    upload_id = started(spool)
    other_process_spool = UploadSpool(spool.root)  # a separate open file: only flock stops it

    async def scenario() -> int:
        first_chunk_in = asyncio.Event()
        go_on = asyncio.Event()

        async def slow_body() -> AsyncIterator[bytes]:
            yield SOURCE[:10]
            first_chunk_in.set()
            await go_on.wait()
            yield SOURCE[10:20]

        first = asyncio.create_task(spool.append(upload_id, 0, slow_body(), length=len(SOURCE)))
        await first_chunk_in.wait()
        with pytest.raises(UploadLocked) as caught:
            await spool.append(upload_id, 0, chunks_of(SOURCE[:10]), length=len(SOURCE))
        assert caught.value.status == 423
        with pytest.raises(UploadLocked):
            await other_process_spool.append(
                upload_id, 0, chunks_of(SOURCE[:10]), length=len(SOURCE)
            )
        with pytest.raises(UploadLocked):
            spool.delete(upload_id)
        with pytest.raises(UploadLocked):
            other_process_spool.delete(upload_id)
        go_on.set()
        done = await first
        # Once the first request is over, the next one goes through.
        return await spool.append(upload_id, done, chunks_of(SOURCE[20:30]), length=len(SOURCE))

    assert run(scenario()) == 30
    assert spool.data_path(upload_id).read_bytes() == SOURCE[:30]


CHILD = """
import asyncio, os, signal, sys
from pathlib import Path
from vidbox.uploads import UploadSpool

root, upload_id, source, start, kill_at, algorithm = sys.argv[1:]
data = Path(source).read_bytes()
start, kill_at = int(start), int(kill_at)

async def body():
    for pos in range(start, kill_at, 65536):
        yield data[pos : min(pos + 65536, kill_at)]
    os.kill(os.getpid(), signal.SIGKILL)
    yield b""

checksum = (algorithm, bytes(20)) if algorithm != "none" else None
asyncio.run(UploadSpool(Path(root)).append(
    upload_id, start, body(), length=len(data), checksum=checksum))
"""


def kill_mid_append(
    spool: UploadSpool, upload_id: str, start: int, kill_at: int, algorithm: str
) -> None:
    source = spool.root.parent / "source.bin"
    source.write_bytes(SOURCE)
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(spool.root), upload_id, str(source), str(start),
         str(kill_at), algorithm],
        timeout=60,
        capture_output=True,
    )  # fmt: skip
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()


def test_kill_9_mid_append_keeps_what_reached_the_disk(spool: UploadSpool) -> None:
    upload_id = started(spool)
    kill_at = 3 * WRITE_BUFFER_BYTES + 500 * KiB
    kill_mid_append(spool, upload_id, 0, kill_at, "none")
    offset = UploadSpool(spool.root).offset(upload_id)
    # At most the two buffers still in memory (one being written, one filling) are lost; the
    # client resends them.
    assert kill_at - 2 * WRITE_BUFFER_BYTES <= offset <= kill_at
    assert spool.data_path(upload_id).read_bytes() == SOURCE[:offset]
    run(spool.append(upload_id, offset, chunks_of(SOURCE[offset:]), length=len(SOURCE)))
    assert spool.data_path(upload_id).read_bytes() == SOURCE


def test_kill_9_mid_checksummed_append_drops_the_unverified_bytes(spool: UploadSpool) -> None:
    upload_id = started(spool)
    run(spool.append(upload_id, 0, chunks_of(SOURCE[:1000]), length=len(SOURCE)))
    kill_mid_append(spool, upload_id, 1000, 1000 + 2 * WRITE_BUFFER_BYTES + 7, "sha1")
    # Unverified bytes did reach the file, but they do not count as received.
    assert spool.data_path(upload_id).stat().st_size > 1000
    restarted = UploadSpool(spool.root)
    assert restarted.offset(upload_id) == 1000
    part = SOURCE[1000:]
    checksum = ("sha1", hashlib.sha1(part, usedforsecurity=False).digest())
    final = run(
        restarted.append(upload_id, 1000, chunks_of(part), length=len(SOURCE), checksum=checksum)
    )
    assert final == len(SOURCE)
    assert restarted.data_path(upload_id).read_bytes() == SOURCE
    assert restarted.orphans() == []


def test_expired_and_touch(spool: UploadSpool) -> None:
    now = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    old = started(spool, expires_at=now - timedelta(minutes=1))
    fresh = started(spool, expires_at=now + timedelta(hours=3))
    started(spool)  # no expiry: never listed
    assert spool.expired(now) == [old]
    assert set(spool.expired(now + timedelta(hours=4))) == {old, fresh}
    spool.touch(old, now + timedelta(hours=24))
    assert spool.expired(now) == []
    assert spool.info(old)["expires_at"] == now + timedelta(hours=24)
    assert spool.info(old)["owner_id"] == 1


def test_orphans_are_leftovers_without_an_upload(spool: UploadSpool) -> None:
    kept = started(spool)
    run(spool.append(kept, 0, chunks_of(SOURCE[:10]), length=len(SOURCE)))
    stray_part = spool.root / f"{new_id()}.part"  # crash between data and info file
    stray_part.write_bytes(b"abc")
    stray_verify = spool.root / f"{new_id()}.verify"
    stray_verify.write_text("0")
    temp = spool.root / f".{new_id()}.json.k2j3h4.tmp"  # crash during an atomic write
    temp.write_text("{")
    assert spool.orphans() == sorted([stray_part, stray_verify, temp])
    assert spool.ids() == [kept]

    # Leftovers younger than the cut-off may still be in use (a one-shot upload being ingested).
    cutoff = datetime.now(UTC) - timedelta(hours=1)
    assert spool.orphans(older_than=cutoff) == []
    two_hours_ago = (datetime.now(UTC) - timedelta(hours=2)).timestamp()
    os.utime(stray_part, (two_hours_ago, two_hours_ago))
    assert spool.orphans(older_than=cutoff) == [stray_part]


def test_delete_removes_every_file(spool: UploadSpool) -> None:
    upload_id = started(spool)
    run(spool.append(upload_id, 0, chunks_of(SOURCE[:10]), length=len(SOURCE)))
    assert spool.delete(upload_id) is True
    assert list(spool.root.iterdir()) == []
    with pytest.raises(UploadNotFound):
        spool.info(upload_id)
    assert spool.delete(upload_id) is False
    assert spool.delete("not-an-id") is False


def test_stream_to_spool_writes_the_whole_file(spool: UploadSpool) -> None:
    upload_id = new_id()
    size = run(spool.stream_to_spool(upload_id, chunks_of(SOURCE), max_bytes=len(SOURCE)))
    assert size == len(SOURCE)
    assert spool.data_path(upload_id).read_bytes() == SOURCE


def test_stream_to_spool_too_large_removes_the_partial_file(spool: UploadSpool) -> None:
    upload_id = new_id()
    consumed = 0

    async def counted() -> AsyncIterator[bytes]:
        nonlocal consumed
        async for chunk in chunks_of(SOURCE):
            consumed += len(chunk)
            yield chunk

    limit = 2 * WRITE_BUFFER_BYTES + 1
    with pytest.raises(TooLarge) as caught:
        run(spool.stream_to_spool(upload_id, counted(), max_bytes=limit))
    assert caught.value.status == 413
    # Stopped at the first chunk past the limit, not at the end of the body.
    assert limit < consumed <= limit + 64 * KiB
    assert not spool.data_path(upload_id).exists()
    assert list(spool.root.iterdir()) == []


def test_stream_to_spool_refuses_empty_and_cleans_up_after_a_disconnect(
    spool: UploadSpool,
) -> None:
    with pytest.raises(EmptyUpload) as caught:
        run(spool.stream_to_spool(new_id(), chunks_of(b""), max_bytes=100))
    assert caught.value.status == 400
    with pytest.raises(ConnectionResetError):
        run(spool.stream_to_spool(new_id(), cut_off(SOURCE[:2_000_000]), max_bytes=len(SOURCE)))
    assert list(spool.root.iterdir()) == []


def test_a_full_disk_is_a_507_that_keeps_the_upload(
    spool: UploadSpool, caplog: pytest.LogCaptureFixture
) -> None:
    upload_id = started(spool)
    # Writes to /dev/full fail as on a full disk (ENOSPC), through the buffered-write path.
    spool.data_path(upload_id).unlink()
    spool.data_path(upload_id).symlink_to("/dev/full")
    with pytest.raises(DiskFull, match="disk is full") as refused:
        run(spool.append(upload_id, 0, chunks_of(SOURCE[:5000]), length=len(SOURCE)))
    assert refused.value.status == 507
    assert spool.info(upload_id)["length"] == len(SOURCE)  # the upload itself is kept
    assert "the disk is full" in caplog.text  # and whoever runs the box is told
