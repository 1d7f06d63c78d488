"""Where media files live: one small async protocol, two backends (local disk and S3/MinIO).

Every object is addressed by a *key*, a relative ``/``-separated path such as
``videos/{user_id}/{video_id}/hls/720p/seg_00001.m4s``. Keys are checked by ``validate_key``
and nowhere else. A *prefix* is a key naming a folder (``videos/u1/v1/``; the trailing slash is
optional) and always means "every object below that folder", on both backends alike.

The ``Storage`` protocol:

- ``put_file(key, path, content_type=None)`` / ``put_bytes(key, data, content_type=None)``
  store an object, replacing any previous one atomically (readers see the old or the new
  object, never half of one).
- ``stat(key) -> ObjectInfo``; raises ``ObjectNotFound``.
- ``open_range(key, start=0, end=None)`` is an async iterator of byte chunks (at most a few
  ``CHUNK_SIZE`` each) covering ``start..end`` inclusive; ``end=None`` reads to the end, and a
  range past the end yields only what exists. The object is never loaded whole. Close it
  (``contextlib.aclosing``) when stopping early so the backend releases its file or connection.
  Raises ``ObjectNotFound`` on the first iteration when the object does not exist.
- ``open_file(key) -> (file, ObjectInfo) | None``: the object as an open local file (binary,
  positioned at 0) with its info read from that same file, so a server can hand it to
  ``sendfile``; the caller closes it. None when objects do not live on this machine (S3).
  Raises ``ObjectNotFound``.
- ``delete(key)`` (a missing object is fine); ``delete_prefix(prefix) -> int`` (objects removed).
- ``list_prefix(prefix) -> list[ObjectInfo]``, sorted by key. A list rather than an iterator:
  callers want counts and sizes up front, and a whole library is metadata of modest size.
- ``check()`` raises ``StorageError`` when the store is unusable (folder not writable, S3 server
  unreachable, credentials refused, bucket cannot be created).
- ``presigned_get(key, *, expires_seconds, filename=None, content_type=None) -> str | None``: a
  short-lived URL browsers can fetch directly, or None when the backend cannot make one.
- ``close()``; attribute ``name`` ("local" or "s3"); ``describe()``, a human location that
  never contains secrets.

Errors are ``StorageError`` (one human sentence naming the store) or its subclass
``ObjectNotFound``; an invalid key is a ``ValueError`` because it is a programming error.
This package knows nothing of HTTP requests and responses; ``vidbox.web.serving`` does that.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

if TYPE_CHECKING:
    from vidbox.config import Settings
    from vidbox.threads import ThreadPools

CHUNK_SIZE = 256 * 1024

# S3 caps keys at 1024 bytes of UTF-8; holding local keys to the same rule keeps migration
# between backends always possible.
MAX_KEY_BYTES = 1024


class StorageError(Exception):
    """The store failed. The message is one human sentence naming the store, without secrets."""


class ObjectNotFound(StorageError):
    """No object has this key."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    # Opaque validator, unquoted; changes whenever the content may have changed.
    etag: str
    modified: datetime  # timezone-aware, UTC


class Storage(Protocol):
    name: str

    def describe(self) -> str: ...

    async def put_file(self, key: str, path: Path, content_type: str | None = None) -> None: ...

    async def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None: ...

    async def stat(self, key: str) -> ObjectInfo: ...

    def open_range(
        self, key: str, start: int = 0, end: int | None = None
    ) -> AsyncGenerator[bytes, None]: ...

    async def open_file(self, key: str) -> tuple[BinaryIO, ObjectInfo] | None: ...

    async def delete(self, key: str) -> None: ...

    async def delete_prefix(self, prefix: str) -> int: ...

    async def list_prefix(self, prefix: str) -> list[ObjectInfo]: ...

    async def check(self) -> None: ...

    async def presigned_get(
        self,
        key: str,
        *,
        expires_seconds: int,
        filename: str | None = None,
        content_type: str | None = None,
    ) -> str | None: ...

    async def close(self) -> None: ...


def validate_key(key: str) -> str:
    """Return ``key`` unchanged if it is a valid storage key, else raise ValueError.

    Valid: relative, ``/``-separated, no empty, ``.`` or ``..`` parts, no backslash, NUL or
    other control character, at most 1024 bytes of UTF-8.
    """
    if not isinstance(key, str) or not key:
        raise ValueError("a storage key must be a non-empty string")
    if key.startswith("/"):
        raise ValueError(f"storage key {key!r} must be relative (no leading /)")
    if "\\" in key:
        raise ValueError(f"storage key {key!r} must use / as separator, not backslash")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
        raise ValueError(f"storage key {key!r} contains a control character")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise ValueError(f"storage key is longer than {MAX_KEY_BYTES} bytes")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise ValueError(f"storage key {key!r} has an empty, '.' or '..' part")
    return key


def normalise_prefix(prefix: str) -> str:
    """``videos/u1`` or ``videos/u1/`` -> ``videos/u1/``; invalid -> ValueError."""
    return validate_key(prefix.removesuffix("/")) + "/"


def check_range(start: int, end: int | None) -> None:
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"invalid byte range {start}-{end}")


def load(settings: Settings, threads: ThreadPools | None = None) -> Storage:
    """The backend chosen by ``settings.storage.backend``. Does no I/O; call ``check()``.
    An S3 backend makes its blocking calls on ``threads.storage`` (its own pool if None)."""
    backend = settings.storage.backend
    if backend == "local":
        from vidbox.storage.local import LocalStorage

        return LocalStorage(settings.media_dir)
    if backend == "s3":
        from vidbox.storage.s3 import S3Storage

        executor = threads.storage if threads is not None else None
        return S3Storage.from_settings(settings.storage, executor=executor)
    raise ValueError(f"unknown storage backend {backend!r}")


__all__ = [
    "CHUNK_SIZE",
    "ObjectInfo",
    "ObjectNotFound",
    "Storage",
    "StorageError",
    "load",
    "normalise_prefix",
    "validate_key",
]
