"""The upload spool: where bytes of unfinished uploads live until the video is ingested.

Layout of ``root`` for an upload id (32 lowercase hex characters):

- ``<id>.part``   the bytes received so far; its size is the upload offset. Nothing else
                  records the offset, so a restart or ``kill -9`` cannot make them disagree.
- ``<id>.json``   what the caller passed as ``info`` plus ``length``; replaced atomically.
- ``<id>.verify`` exists only while a checksummed append runs: the offset to roll back to if
                  the process dies before the checksum is verified, so unverified bytes are
                  never taken for received ones.
- ``<id>.<process>.receiving`` a one-shot (multipart) body while it arrives, locked
                  (``flock``) by the process receiving it, whose token (``liveness``) is in
                  the name; renamed to ``<id>.part`` once whole. One whose process is dead was
                  left by a killed process: ``remove_abandoned`` deletes it (at start), where
                  waiting for the hourly sweep kept hundreds of MB for an hour. In a spool
                  shared between hosts only this host's dead processes are known as such;
                  another host's file goes once it has not changed for an hour.
- ``.live/<process>.lock`` held by each process using the spool while it lives (``liveness``).
- ``.locks/<id>``   locked by the request writing the upload, on a box whose processes all run
                  on one host (``vidbox.upload_lease``); removed with the upload.

Appends are not fsynced. A killed process loses nothing (written bytes are in the page
cache), and after a power cut the journaling file systems vidbox runs on (ext4's default
data=ordered, XFS, btrfs) never give a file a size that covers bytes that did not reach the
disk: the offset HEAD reports is then what survived, and tus clients ask HEAD before resuming.
A sync per PATCH made uploads wait for the disk a second time for no byte saved. The one
place durability matters, the finished upload becoming the video's original, is handled by
processing, which checks the size and stores the original durably.

An append holds a per-upload ``asyncio.Lock`` (cheap, this process) and an exclusive
``fcntl.flock`` on the data file (other processes on this host sharing the spool). Neither
waits: a second writer gets UploadLocked at once. Across hosts (NFS), where a file lock is not
dependable, callers hold the upload's lease in the database as well (``vidbox.upload_lease``).

The synchronous methods (create, info, touch, delete, ...) do small blocking file operations,
some with fsync; call them through ``asyncio.to_thread`` from a busy event loop if needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Executor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vidbox.diskspace import DiskFull
from vidbox.logs import log_fields
from vidbox.threads import private_pool
from vidbox.uploads.abandoned import remove_abandoned
from vidbox.uploads.errors import (
    ChecksumMismatch,
    EmptyUpload,
    OffsetMismatch,
    TooLarge,
    UploadLocked,
    UploadNotFound,
)
from vidbox.uploads.files import (
    Chunk,
    DirectBody,
    OverlappedWriter,
    on_disk_thread,
    pwritev_all,
    truncate_synced,
    write_atomic,
)
from vidbox.uploads.liveness import ProcessMark
from vidbox.uploads.tus import checksum_algorithm

# Received chunks are gathered up to this size before one write, which keeps memory flat and
# the number of thread hand-offs low. They are kept as they arrived and written with pwritev:
# joining them into one buffer first cost a copy of every byte.
WRITE_BUFFER_BYTES = 1024 * 1024
log = logging.getLogger(__name__)
_DISK_FULL_RESUME = (
    "The server's disk is full. What arrived so far is kept: resume the upload once "
    "space has been freed."
)
_DISK_FULL_ONE_SHOT = "The server's disk is full; send the video again once space has been freed."
_DISK_FULL_CREATE = "The server's disk is full; no upload can start until space has been freed."

_ID = re.compile(r"[0-9a-f]{32}")
LOCKS_DIR = ".locks"
_DATETIME_KEYS = ("created_at", "expires_at")


@contextlib.contextmanager
def _disk_full_refused(root: Path, detail: str = _DISK_FULL_RESUME) -> Iterator[None]:
    """A full disk (or quota) becomes DiskFull, a 507 with a sentence, not a server error,
    and a warning for whoever runs the box."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            log.warning("upload refused: the disk is full", extra=log_fields(folder=str(root)))
            raise DiskFull(detail) from exc
        raise


def check_upload_id(upload_id: str) -> str:
    """``upload_id`` if it is 32 lowercase hex characters (uuid4().hex), else ValueError."""
    if not isinstance(upload_id, str) or not _ID.fullmatch(upload_id):
        raise ValueError(f"upload id must be 32 lowercase hex characters, not {upload_id!r}")
    return upload_id


def _known_id(upload_id: str) -> str:
    # Ids arrive in URLs: a malformed one simply names no upload.
    try:
        return check_upload_id(upload_id)
    except ValueError:
        raise UploadNotFound() from None


def _encode_info(info: dict[str, Any]) -> bytes:
    def default(value: Any) -> str:
        if isinstance(value, datetime):
            return value.isoformat()
        raise TypeError(f"upload info value {value!r} cannot be stored as JSON")

    return json.dumps(info, default=default, sort_keys=True).encode("utf-8")


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class UploadSpool:
    """Unfinished uploads as files under ``root`` (see the module docstring)."""

    def __init__(
        self, root: Path, disk: Executor | None = None, *, owner: ProcessMark | None = None
    ) -> None:
        self.root = Path(root)
        # This process, named in the files it receives, so other processes can tell whether
        # their receiver still lives; a spool made by a tool or a test has its own.
        self.owner = owner if owner is not None else ProcessMark(self.root)
        # The disk threads (``vidbox.threads``); a spool made by a tool or a test has its own.
        self.disk = disk if disk is not None else private_pool("disk")
        self.root.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, asyncio.Lock] = {}

    def data_path(self, upload_id: str) -> Path:
        return self.root / f"{check_upload_id(upload_id)}.part"

    def _receiving_path(self, upload_id: str) -> Path:
        return self.root / f"{check_upload_id(upload_id)}.{self.owner.token}.receiving"

    def remove_abandoned(self) -> tuple[int, int]:
        """Delete the one-shot bodies no process is receiving any more (their process was
        killed mid-request); returns how many files and bytes (``vidbox.uploads.abandoned``)."""
        return remove_abandoned(self.root, self.owner)

    def writer_lock_path(self, upload_id: str) -> Path:
        return self.root / LOCKS_DIR / check_upload_id(upload_id)

    def _info_path(self, upload_id: str) -> Path:
        return self.root / f"{check_upload_id(upload_id)}.json"

    def _verify_path(self, upload_id: str) -> Path:
        return self.root / f"{check_upload_id(upload_id)}.verify"

    def create(self, upload_id: str, *, length: int, info: dict[str, Any]) -> None:
        """Start an upload of ``length`` bytes. ``info`` is kept as JSON (datetimes become ISO
        8601 strings); ``created_at`` defaults to now. Raises FileExistsError for a used id."""
        if length < 0:
            raise ValueError("upload length cannot be negative")
        record = {"created_at": datetime.now(UTC), **info, "length": length}
        with _disk_full_refused(self.root, _DISK_FULL_CREATE):
            self._create(upload_id, _encode_info(record))

    def _create(self, upload_id: str, encoded: bytes) -> None:
        data_path = self.data_path(upload_id)
        # The data file comes first: a crash between the two leaves an orphan part file that
        # orphans() reports, never an info file that points at nothing.
        fd = os.open(data_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            write_atomic(self._info_path(upload_id), encoded)
        except BaseException:
            data_path.unlink(missing_ok=True)
            raise

    def info(self, upload_id: str) -> dict[str, Any]:
        """The stored info; ``created_at`` and ``expires_at`` come back as aware datetimes."""
        try:
            raw = self._info_path(_known_id(upload_id)).read_bytes()
        except FileNotFoundError:
            raise UploadNotFound() from None
        record: dict[str, Any] = json.loads(raw)
        for key in _DATETIME_KEYS:
            if isinstance(record.get(key), str):
                record[key] = _aware(datetime.fromisoformat(record[key]))
        return record

    def touch(self, upload_id: str, expires_at: datetime) -> None:
        """Move the expiry of an upload, e.g. after each received part."""
        record = self.info(upload_id)
        record["expires_at"] = _aware(expires_at)
        write_atomic(self._info_path(upload_id), _encode_info(record))

    def offset(self, upload_id: str) -> int:
        """Bytes received and kept so far. While a checksummed append is in flight, or after a
        crash during one, the unverified bytes are not counted."""
        try:
            # Opened, not just stat'ed: over NFS an open revalidates the file's attributes
            # (close-to-open), where a stat may answer from a cache seconds old, and the part
            # another host just wrote would look missing.
            fd = os.open(self.data_path(_known_id(upload_id)), os.O_RDONLY)
        except FileNotFoundError:
            raise UploadNotFound() from None
        try:
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        rollback = self._read_rollback(upload_id)
        return size if rollback is None else min(size, rollback)

    def _read_rollback(self, upload_id: str) -> int | None:
        try:
            return int(self._verify_path(upload_id).read_text())
        except FileNotFoundError:
            return None

    def ids(self) -> list[str]:
        """Ids of the uploads that have an info file."""
        return sorted(path.stem for path in self.root.glob("*.json") if _ID.fullmatch(path.stem))

    def expired(self, now: datetime) -> list[str]:
        """Ids whose ``expires_at`` is before ``now``. Uploads without one never expire."""
        now = _aware(now)
        found = []
        for upload_id in self.ids():
            try:
                expires_at = self.info(upload_id).get("expires_at")
            except (UploadNotFound, ValueError):
                continue
            if isinstance(expires_at, datetime) and expires_at < now:
                found.append(upload_id)
        return found

    def orphans(self, *, older_than: datetime | None = None) -> list[Path]:
        """Files no upload owns: part or verify files without an info file, and temp files a
        crash left behind. A one-shot (stream_to_spool) file is a part file without info too,
        so a cleaner should pass ``older_than`` to spare the ones still being ingested."""
        known = set(self.ids())
        found = []
        for path in self.root.iterdir():
            name = path.name
            is_temp = name.startswith(".") and name.endswith(".tmp")
            stray = path.suffix in {".part", ".verify"} and path.stem not in known
            if not (is_temp or stray):
                continue
            if older_than is not None:
                try:
                    modified = datetime.fromtimestamp(path.stat().st_mtime, UTC)
                except FileNotFoundError:
                    continue
                if modified >= _aware(older_than):
                    continue
            found.append(path)
        return sorted(found)

    def delete(self, upload_id: str) -> bool:
        """Remove an upload's files. Returns False when there was nothing to remove; raises
        UploadLocked while an append is running on it."""
        if not _ID.fullmatch(upload_id):
            return False
        lock = self._locks.get(upload_id)
        if lock is not None and lock.locked():
            raise UploadLocked()
        data_path = self.data_path(upload_id)
        try:
            fd = os.open(data_path, os.O_RDONLY)
        except FileNotFoundError:
            fd = None
        try:
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise UploadLocked() from None
            removed = False
            # Info first: if we die halfway, what is left is an orphan, not a broken upload.
            for path in (self._info_path(upload_id), self._verify_path(upload_id), data_path):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed = True
            with contextlib.suppress(FileNotFoundError):
                self.writer_lock_path(upload_id).unlink()
        finally:
            if fd is not None:
                os.close(fd)
        return removed

    @contextlib.asynccontextmanager
    async def _exclusive(self, upload_id: str) -> AsyncIterator[int]:
        """The data file, opened for writing and owned by this task alone."""
        data_path = self.data_path(_known_id(upload_id))
        lock = self._locks.setdefault(upload_id, asyncio.Lock())
        if lock.locked():
            raise UploadLocked()
        # Never waits: the lock is free, so acquire() returns without yielding to the loop.
        await lock.acquire()
        try:
            if not self._info_path(upload_id).exists():
                raise UploadNotFound()
            try:
                fd = os.open(data_path, os.O_RDWR)
            except FileNotFoundError:
                raise UploadNotFound() from None
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise UploadLocked() from None
                yield fd
            finally:
                os.close(fd)  # also releases the flock
        finally:
            lock.release()
            if not lock.locked():
                self._locks.pop(upload_id, None)

    def _roll_back_unverified(self, upload_id: str, fd: int) -> int:
        """Drop bytes a crashed checksummed append left behind; returns the offset."""
        rollback = self._read_rollback(upload_id)
        if rollback is not None:
            if os.fstat(fd).st_size > rollback:
                truncate_synced(fd, rollback)
            self._verify_path(upload_id).unlink()
        return os.fstat(fd).st_size

    async def append(
        self,
        upload_id: str,
        expected_offset: int,
        chunks: AsyncIterator[Chunk],
        *,
        length: int,
        checksum: tuple[str, bytes] | None = None,
        direct: DirectBody | None = None,
    ) -> int:
        """Write a request body at ``expected_offset``; returns the new offset.

        Raises OffsetMismatch (nothing written) when the offset is not the current one,
        TooLarge after keeping the bytes up to ``length`` when the body goes past it,
        ChecksumMismatch when ``checksum`` (algorithm, digest of this body) does not match.
        If ``chunks`` raises (client gone), the bytes received so far are kept, then the error
        is re-raised. With a checksum nothing unverified is kept: a failed, cut or
        oversized body leaves the upload at ``expected_offset``.

        ``direct`` is the same body, for the server to move into the file itself; it is used
        when no checksum needs the bytes and the body fits in the upload.
        """
        with _disk_full_refused(self.root):
            return await self._append(upload_id, expected_offset, chunks, length, checksum, direct)

    async def _append(
        self,
        upload_id: str,
        expected_offset: int,
        chunks: AsyncIterator[Chunk],
        length: int,
        checksum: tuple[str, bytes] | None,
        direct: DirectBody | None,
    ) -> int:
        hasher = None
        if checksum:  # guards against corruption in transit, not against an attacker
            hasher = hashlib.new(checksum_algorithm(checksum[0]), usedforsecurity=False)
        async with self._exclusive(upload_id) as fd:
            current = await on_disk_thread(self.disk, self._roll_back_unverified, upload_id, fd)
            if expected_offset != current:
                raise OffsetMismatch(current)
            if direct is not None and not checksum and direct.remaining() <= length - current:
                # Every byte that arrives is in the file at once: a cut-off body keeps them.
                while got := await direct.to_file(fd, current, length - current):
                    current += got
                return current
            if checksum:
                await on_disk_thread(
                    self.disk,
                    write_atomic,
                    self._verify_path(upload_id),
                    str(expected_offset).encode(),
                )
            writer = OverlappedWriter(
                fd, expected_offset, batch_bytes=WRITE_BUFFER_BYTES, hasher=hasher, pool=self.disk
            )
            too_large = False
            try:
                async for chunk in chunks:
                    room = length - writer.received
                    if len(chunk) > room:
                        chunk, too_large = chunk[:room], True
                    await writer.add(chunk)
                    if too_large:
                        break
                written = await writer.flush()
            except Exception:
                unwritten = await writer.finish()
                await on_disk_thread(
                    self.disk,
                    self._settle_broken_body,
                    upload_id,
                    fd,
                    unwritten,
                    writer.written,
                    expected_offset,
                    checksum,
                )
                raise
            except BaseException:
                # Cancelled: awaiting again is not dependable here, so settle inline.
                self._settle_broken_body(
                    upload_id, fd, writer.settle(), writer.written, expected_offset, checksum
                )
                raise
            if checksum and hasher is not None:
                verified = not too_large and hmac.compare_digest(hasher.digest(), checksum[1])
                if verified:
                    await on_disk_thread(self.disk, self._verify_path(upload_id).unlink)
                else:
                    await on_disk_thread(
                        self.disk, self._discard_unverified, upload_id, fd, expected_offset
                    )
                    if not too_large:
                        raise ChecksumMismatch()
            if too_large:
                raise TooLarge(f"The upload is {length} bytes; this part goes past the end.")
            return written

    def _discard_unverified(self, upload_id: str, fd: int, expected_offset: int) -> None:
        truncate_synced(fd, expected_offset)
        self._verify_path(upload_id).unlink(missing_ok=True)

    def _settle_broken_body(
        self,
        upload_id: str,
        fd: int,
        unwritten: list[Chunk],
        written: int,
        expected_offset: int,
        checksum: tuple[str, bytes] | None,
    ) -> None:
        if checksum:
            self._discard_unverified(upload_id, fd, expected_offset)
            return
        # These may include bytes whose write failed halfway; pwrite makes rewriting them safe.
        # If the disk itself is failing this raises too; the original error still propagates.
        with contextlib.suppress(OSError):
            pwritev_all(fd, unwritten, written)

    async def stream_to_spool(
        self,
        upload_id: str,
        chunks: AsyncIterator[Chunk],
        *,
        max_bytes: int,
        direct: DirectBody | None = None,
    ) -> int:
        """Write a whole one-shot upload (multipart) to ``data_path(upload_id)``; returns its
        size. On TooLarge (as soon as ``max_bytes`` is passed), EmptyUpload or any error from
        ``chunks``, the partial file is removed: a one-shot upload cannot be resumed.
        ``direct``, when given, is the same file for the server to move in itself."""
        with _disk_full_refused(self.root, _DISK_FULL_ONE_SHOT):
            return await self._stream_to_spool(upload_id, chunks, max_bytes, direct)

    async def _stream_to_spool(
        self,
        upload_id: str,
        chunks: AsyncIterator[Chunk],
        max_bytes: int,
        direct: DirectBody | None,
    ) -> int:
        data_path, receiving = self.data_path(upload_id), self._receiving_path(upload_id)
        # Read and write: a direct body may read back what follows the file to parse it.
        fd = os.open(receiving, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # new and ours: never waits
        writer = OverlappedWriter(fd, 0, batch_bytes=WRITE_BUFFER_BYTES, pool=self.disk)
        too_large = TooLarge(f"The file is larger than the {max_bytes}-byte limit.")
        try:
            if direct is not None:
                written = 0
                while got := await direct.to_file(fd, written, max_bytes + 1 - written):
                    written += got
                    if written > max_bytes:
                        raise too_large
            else:
                async for chunk in chunks:
                    if writer.received + len(chunk) > max_bytes:
                        raise too_large
                    await writer.add(chunk)
                written = await writer.flush()
            if written == 0:
                raise EmptyUpload()
            os.rename(receiving, data_path)
        except BaseException:
            writer.settle()  # no write may still be running when the file goes (on the loop)
            os.close(fd)
            receiving.unlink(missing_ok=True)
            raise
        os.close(fd)
        return written
