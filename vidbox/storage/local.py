"""Local-disk storage: each key is a file below one root folder.

Writes land in a temporary file in the destination folder, are fsync'd and then renamed over
the target, so a crash or a concurrent reader never sees half an object. All file-system calls
run in worker threads so a slow disk never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import stat as stat_mod
import tempfile
from collections.abc import AsyncGenerator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from vidbox.cache import TTLCache
from vidbox.storage import (
    CHUNK_SIZE,
    ObjectInfo,
    ObjectNotFound,
    StorageError,
    check_range,
    normalise_prefix,
    validate_key,
)

# Temporary files share folders with real objects; listings skip this prefix.
TEMP_PREFIX = ".vidbox-tmp-"
COPY_BUFFER = 1024 * 1024


# Reading a local file costs one thread hand-off per chunk; larger chunks than the protocol's
# usual size keep that overhead small for the segments players fetch all the time.
READ_CHUNK = 4 * CHUNK_SIZE


class LocalStorage:
    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._real_root = os.path.realpath(self.root)
        # Resolved folders: realpath checks every component with a system call, and a player
        # asks for a file of the same folder every few seconds.
        self._folders: TTLCache[str] = TTLCache(ttl=2.0)

    def describe(self) -> str:
        return f"local folder {self.root}"

    # -- paths -------------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        """The real path for ``key``; refuses keys that resolve outside the root, e.g. through
        a symlink planted inside the media folder."""
        validate_key(key)
        root = self._real_root
        folder, _, name = key.rpartition("/")
        real_folder = self._folders.get(folder)
        if real_folder is None:
            real_folder = os.path.realpath(os.path.join(root, folder)) if folder else root
            self._folders.put(folder, real_folder)
        resolved = os.path.join(real_folder, name)
        if os.path.islink(resolved):
            resolved = os.path.realpath(resolved)
        if os.path.commonpath([root, resolved]) != root or resolved == root:
            raise StorageError(f"{self.describe()}: key {key} resolves outside the folder")
        return Path(resolved)

    def _info(self, key: str, st: os.stat_result) -> ObjectInfo:
        return ObjectInfo(
            key=key,
            size=st.st_size,
            etag=f"{st.st_size:x}-{st.st_mtime_ns:x}",
            modified=datetime.fromtimestamp(st.st_mtime, tz=UTC),
        )

    def _fail(self, action: str, key: str, exc: OSError) -> StorageError:
        reason = (exc.strerror or str(exc)).lower()
        return StorageError(f"{self.describe()}: cannot {action} {key}: {reason}")

    # -- writes ------------------------------------------------------------------------------

    def _write_atomic(self, key: str, fill: Callable[[BinaryIO], object]) -> None:
        target = self._path(key)
        for attempt in range(3):
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=target.parent)
                break
            except FileNotFoundError as exc:
                # A concurrent delete pruned the freshly made (still empty) folder: make it again.
                if attempt == 2:
                    raise self._fail("write", key, exc) from None
            except OSError as exc:
                raise self._fail("write", key, exc) from None
        try:
            with os.fdopen(fd, "wb") as fh:
                fill(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp_name, 0o644)  # mkstemp makes 0600; other tools may need to read it
            os.replace(tmp_name, target)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            if isinstance(exc, OSError):
                raise self._fail("write", key, exc) from None
            raise
        _fsync_dir(target.parent)

    async def put_file(self, key: str, path: Path, content_type: str | None = None) -> None:
        def copy() -> None:
            with open(path, "rb") as src:
                self._write_atomic(key, lambda dst: shutil.copyfileobj(src, dst, COPY_BUFFER))

        await asyncio.to_thread(copy)

    async def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        await asyncio.to_thread(self._write_atomic, key, lambda dst: dst.write(data))

    # -- reads -------------------------------------------------------------------------------

    def _stat_sync(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(f"{self.describe()} has no object {key}") from None
        except OSError as exc:
            raise self._fail("read", key, exc) from None
        if not stat_mod.S_ISREG(st.st_mode):
            raise ObjectNotFound(f"{self.describe()} has no object {key}")
        return self._info(key, st)

    async def stat(self, key: str) -> ObjectInfo:
        return await asyncio.to_thread(self._stat_sync, key)

    def _open_sync(self, key: str, start: int) -> BinaryIO:
        path = self._path(key)
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed by open_range
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(f"{self.describe()} has no object {key}") from None
        except OSError as exc:
            raise self._fail("read", key, exc) from None
        fh.seek(start)
        return fh

    async def open_range(
        self, key: str, start: int = 0, end: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        check_range(start, end)
        fh = await asyncio.to_thread(self._open_sync, key, start)
        try:
            remaining = None if end is None else end - start + 1
            while remaining is None or remaining > 0:
                want = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
                chunk = await asyncio.to_thread(fh.read, want)
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            fh.close()

    def _open_file_sync(self, key: str) -> tuple[BinaryIO, ObjectInfo]:
        fh = self._open_sync(key, 0)
        try:
            # fstat of the opened file: the info describes exactly the bytes that will be sent,
            # even if the object is replaced in between.
            st = os.fstat(fh.fileno())
            if not stat_mod.S_ISREG(st.st_mode):
                raise ObjectNotFound(f"{self.describe()} has no object {key}")
        except BaseException:
            fh.close()
            raise
        return fh, self._info(key, st)

    async def open_file(self, key: str) -> tuple[BinaryIO, ObjectInfo]:
        # On the event loop, unlike every other file operation here: this is the per-segment
        # path, open and fstat of a hot file take microseconds, the sendfile that follows reads
        # the data on the loop anyway (as nginx does), and the hop to a worker thread and back
        # cost more than everything else in the request (bench/serving.py: 1,100 -> 1,550 req/s).
        return self._open_file_sync(key)

    def _list_sync(self, prefix: str) -> list[ObjectInfo]:
        folder = self._path(prefix.removesuffix("/"))
        found: list[ObjectInfo] = []
        root = os.path.realpath(self.root)
        # os.walk does not descend into symlinked folders; symlinked files are skipped below.
        for dirpath, _dirnames, filenames in os.walk(folder, followlinks=False):
            for filename in filenames:
                if filename.startswith(TEMP_PREFIX):
                    continue
                full = os.path.join(dirpath, filename)
                try:
                    st = os.lstat(full)
                except OSError:
                    continue  # deleted while we walked
                if not stat_mod.S_ISREG(st.st_mode):
                    continue
                key = os.path.relpath(full, root).replace(os.sep, "/")
                found.append(self._info(key, st))
        found.sort(key=lambda info: info.key)
        return found

    async def list_prefix(self, prefix: str) -> list[ObjectInfo]:
        return await asyncio.to_thread(self._list_sync, normalise_prefix(prefix))

    # -- deletes -----------------------------------------------------------------------------

    def _prune_empty_parents(self, folder: Path) -> None:
        root = Path(os.path.realpath(self.root))
        while folder != root and root in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return  # not empty (or gone): stop climbing
            folder = folder.parent

    def _delete_sync(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return
        except IsADirectoryError:
            return  # a folder is not an object; delete_prefix removes folders
        except OSError as exc:
            raise self._fail("delete", key, exc) from None
        self._prune_empty_parents(path.parent)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._delete_sync, key)

    def _delete_prefix_sync(self, prefix: str) -> int:
        folder = self._path(prefix.removesuffix("/"))
        if not folder.is_dir():
            return 0
        count = len(self._list_sync(prefix))
        try:
            shutil.rmtree(folder)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise self._fail("delete", prefix, exc) from None
        self._prune_empty_parents(folder.parent)
        return count

    async def delete_prefix(self, prefix: str) -> int:
        return await asyncio.to_thread(self._delete_prefix_sync, normalise_prefix(prefix))

    # -- health ------------------------------------------------------------------------------

    def _check_sync(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=TEMP_PREFIX + "check-", dir=self.root)
            try:
                os.write(fd, b"ok")
                os.fsync(fd)
            finally:
                os.close(fd)
                os.unlink(probe)
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise StorageError(f"{self.describe()} is not writable: {reason}") from None

    async def check(self) -> None:
        await asyncio.to_thread(self._check_sync)

    async def presigned_get(
        self,
        key: str,
        *,
        expires_seconds: int,
        filename: str | None = None,
        content_type: str | None = None,
    ) -> str | None:
        validate_key(key)
        return None

    async def close(self) -> None:
        return None


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; some file systems refuse to open folders, which is fine.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
