"""S3 / MinIO storage through the ``minio`` SDK.

The SDK is blocking, so every call runs in a worker thread; the event loop only awaits. The
bucket is created on first use (or by ``check()``). Errors become ``StorageError`` sentences
that name the endpoint and bucket and never contain the secret key.
"""

from __future__ import annotations

import asyncio
import functools
import io
import mimetypes
import threading
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError
from urllib3.util import Retry, Timeout

from vidbox.filenames import content_disposition
from vidbox.storage import (
    CHUNK_SIZE,
    ObjectInfo,
    ObjectNotFound,
    StorageError,
    check_range,
    normalise_prefix,
    validate_key,
)
from vidbox.threads import STORAGE_THREADS, private_pool

if TYPE_CHECKING:
    from vidbox.config import StorageSettings

T = TypeVar("T")
POOL_SIZE = STORAGE_THREADS  # connections to the S3 server, one per thread making SDK calls

NOT_FOUND_CODES = {"NoSuchKey", "NoSuchObject", "NotFound", "ResourceNotFound"}
CREDENTIAL_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
}


def _http_client() -> urllib3.PoolManager:
    # The SDK's default waits 5 minutes to connect and retries 5 times with back-off; a store
    # that is down should be reported in seconds, and a stalled read should not hang forever.
    return urllib3.PoolManager(
        timeout=Timeout(connect=10, read=120),
        maxsize=POOL_SIZE,
        retries=Retry(
            total=3, connect=1, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]
        ),
    )


class S3Storage:
    name = "s3"

    def __init__(
        self,
        *,
        endpoint: str,
        bucket: str,
        access_key: str,
        secret_key: str,
        region: str = "us-east-1",
        secure: bool = True,
        executor: Executor | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.bucket = bucket
        self.secure = secure
        self._secret = secret_key
        self._http = _http_client()
        try:
            # A known region spares the SDK a GetBucketLocation round trip (and keeps
            # presigning free of network calls).
            self._client = Minio(
                endpoint,
                access_key=access_key,
                secret_key=secret_key,
                secure=secure,
                region=region or "us-east-1",
                http_client=self._http,
            )
        except ValueError as exc:
            raise StorageError(
                f"S3 endpoint {endpoint!r} is not valid ({exc}); "
                "give host[:port] without http:// and set storage.secure instead"
            ) from None
        self._bucket_lock = threading.Lock()
        self._bucket_ready = False
        # The storage threads (vidbox.threads), sized like the connection pool: a slow S3
        # server then ties up these and not the loop's default executor that the rest of the
        # app shares. Given none, the backend has a pool of its own and closes it with itself.
        self._own_executor = executor is None
        self._executor = private_pool("storage") if executor is None else executor

    @classmethod
    def from_settings(
        cls, settings: StorageSettings, executor: Executor | None = None
    ) -> S3Storage:
        return cls(
            executor=executor,
            endpoint=settings.endpoint,
            bucket=settings.bucket,
            access_key=settings.access_key,
            secret_key=settings.secret_key,
            region=settings.region,
            secure=settings.secure,
        )

    def describe(self) -> str:
        scheme = "https" if self.secure else "http"
        return f"S3 bucket {self.bucket} at {scheme}://{self.endpoint}"

    # -- plumbing ----------------------------------------------------------------------------

    def _error(self, exc: BaseException, action: str, key: str | None = None) -> StorageError:
        where = f"S3 store at {self.endpoint}"
        what = f"{action} {key}" if key else action
        if isinstance(exc, S3Error):
            code = exc.code or "error"
            if code in NOT_FOUND_CODES and key:
                return ObjectNotFound(f"S3 bucket {self.bucket} at {self.endpoint} has no {key}")
            if code == "NoSuchBucket":
                message = f"{where} has no bucket {self.bucket}"
            elif code in CREDENTIAL_CODES:
                message = (
                    f"{where} refused the access key or its rights on bucket {self.bucket} ({code})"
                )
            else:
                detail = f": {exc.message}" if exc.message else ""
                message = f"{where} could not {what} in bucket {self.bucket}: {code}{detail}"
        elif isinstance(exc, InvalidResponseError | ServerError):
            # Not the exception text: it carries the whole (often HTML) response body.
            status = getattr(exc, "_code", None) or getattr(exc, "status_code", "?")
            message = (
                f"{where} gave an unexpected answer (HTTP {status}) to {what}; is it an S3 server?"
            )
        elif isinstance(exc, urllib3.exceptions.HTTPError | OSError):
            message = f"{where} is unreachable: {_network_reason(exc)}"
        elif isinstance(exc, ValueError):  # the SDK checks bucket names locally
            message = f"{where}: {exc}"
        else:
            message = f"{where} could not {what}: {exc}"
        if self._secret:
            message = message.replace(self._secret, "***")
        return StorageError(message)

    def _ensure_bucket(self, *, force: bool = False) -> None:
        if self._bucket_ready and not force:
            return
        with self._bucket_lock:
            if self._bucket_ready and not force:
                return
            if not self._client.bucket_exists(self.bucket):
                try:
                    self._client.make_bucket(self.bucket)
                except S3Error as exc:
                    # Another process (or replica) created it between our two calls.
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
            self._bucket_ready = True

    async def _in_thread(self, func: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, func)

    async def _run(
        self, action: str, key: str | None, func: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T:
        def call() -> T:
            self._ensure_bucket()
            return func(*args, **kwargs)

        try:
            return await self._in_thread(call)
        except (MinioException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            if isinstance(exc, FileNotFoundError) and action == "upload":
                raise  # the caller's source file is missing: not a storage failure
            raise self._error(exc, action, key) from None

    def _info(self, key: str, size: int | None, etag: str | None, modified: Any) -> ObjectInfo:
        if isinstance(modified, datetime):
            modified = modified.astimezone(UTC) if modified.tzinfo else modified.replace(tzinfo=UTC)
        else:
            modified = datetime.fromtimestamp(0, tz=UTC)
        return ObjectInfo(key=key, size=size or 0, etag=(etag or "").strip('"'), modified=modified)

    # -- writes ------------------------------------------------------------------------------

    async def put_file(self, key: str, path: Path, content_type: str | None = None) -> None:
        validate_key(key)
        # part_size=0 lets the SDK choose max(5 MiB, size / 10000): files above 5 MiB go up
        # as multipart, in parallel parts, without ever being held in memory whole.
        await self._run(
            "upload",
            key,
            self._client.fput_object,
            self.bucket,
            key,
            str(path),
            content_type=_content_type(key, content_type),
            part_size=0,
        )

    async def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        validate_key(key)
        await self._run(
            "store",
            key,
            self._client.put_object,
            self.bucket,
            key,
            io.BytesIO(data),
            len(data),
            content_type=_content_type(key, content_type),
        )

    # -- reads -------------------------------------------------------------------------------

    async def stat(self, key: str) -> ObjectInfo:
        validate_key(key)
        obj = await self._run("read", key, self._client.stat_object, self.bucket, key)
        return self._info(key, obj.size, obj.etag, obj.last_modified)

    async def open_range(
        self, key: str, start: int = 0, end: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        validate_key(key)
        check_range(start, end)
        length = 0 if end is None else end - start + 1  # the SDK reads 0 as "to the end"

        def fetch() -> Any:
            self._ensure_bucket()
            try:
                return self._client.get_object(self.bucket, key, offset=start, length=length)
            except S3Error as exc:
                if exc.code == "InvalidRange":
                    return None  # start is past the end: nothing to read, as with a local file
                raise

        loop = asyncio.get_running_loop()
        opening = loop.run_in_executor(self._executor, fetch)
        try:
            response = await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(_release_opened)
            raise
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._error(exc, "read", key) from None
        if response is None:
            return
        # Raw bytes: byte ranges address the stored bytes, so never let urllib3 decompress.
        read_chunk = functools.partial(response.read, CHUNK_SIZE, decode_content=False)
        pending: asyncio.Future[bytes] | None = None
        try:
            while True:
                pending = loop.run_in_executor(self._executor, read_chunk)
                try:
                    # Shielded so that a cancelled consumer leaves the read to finish in its
                    # thread; the connection is released only after that (see finally).
                    chunk = await asyncio.shield(pending)
                except (urllib3.exceptions.HTTPError, OSError) as exc:
                    raise self._error(exc, "read", key) from None
                if not chunk:
                    break
                yield chunk
        finally:
            if pending is not None and not pending.done():
                pending.add_done_callback(lambda fut: _release(response, fut))
            else:
                _release(response, pending)

    async def open_file(self, key: str) -> None:
        return None  # objects live on the S3 server; there is no local file to hand out

    async def list_prefix(self, prefix: str) -> list[ObjectInfo]:
        prefix = normalise_prefix(prefix)

        def listing() -> list[ObjectInfo]:
            objects = self._client.list_objects(self.bucket, prefix=prefix, recursive=True)
            return [
                self._info(obj.object_name or "", obj.size, obj.etag, obj.last_modified)
                for obj in objects
                if not obj.is_dir
            ]

        found = await self._run("list", prefix, listing)
        found.sort(key=lambda info: info.key)
        return found

    # -- deletes -----------------------------------------------------------------------------

    async def delete(self, key: str) -> None:
        validate_key(key)
        await self._run("delete", key, self._client.remove_object, self.bucket, key)

    async def delete_prefix(self, prefix: str) -> int:
        prefix = normalise_prefix(prefix)

        def remove_all() -> tuple[int, list[str]]:
            names = [
                obj.object_name
                for obj in self._client.list_objects(self.bucket, prefix=prefix, recursive=True)
                if obj.object_name and not obj.is_dir
            ]
            # remove_objects is lazy: nothing is deleted until its error iterator is drained.
            errors = list(
                self._client.remove_objects(self.bucket, (DeleteObject(name) for name in names))
            )
            return len(names), [f"{err.name}: {err.code}" for err in errors]

        count, failures = await self._run("delete", prefix, remove_all)
        if failures:
            shown = "; ".join(failures[:3])
            raise StorageError(
                f"S3 store at {self.endpoint} could not delete {len(failures)} of {count} "
                f"objects under {prefix} in bucket {self.bucket}: {shown}"
            )
        return count

    # -- health, URLs ------------------------------------------------------------------------

    async def check(self) -> None:
        try:
            await self._in_thread(functools.partial(self._ensure_bucket, force=True))
        except (MinioException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise self._error(exc, "open the bucket") from None

    async def presigned_get(
        self,
        key: str,
        *,
        expires_seconds: int,
        filename: str | None = None,
        content_type: str | None = None,
    ) -> str | None:
        validate_key(key)
        response_headers: dict[str, str | list[str] | tuple[str]] = {}
        if content_type:
            response_headers["response-content-type"] = content_type
        if filename:
            # One builder for the header in both proxy and redirect modes, so downloads get the
            # same sanitised name either way. Imported here: storage does not otherwise use web.

            response_headers["response-content-disposition"] = content_disposition(filename)
        # Signing is local computation (the region is known), so no thread is needed.
        return self._client.presigned_get_object(
            self.bucket,
            key,
            expires=timedelta(seconds=expires_seconds),
            response_headers=response_headers or None,
        )

    async def close(self) -> None:
        if self._own_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._http.clear()


def _content_type(key: str, given: str | None) -> str:
    return given or mimetypes.guess_type(key)[0] or "application/octet-stream"


def _release(response: Any, finished: asyncio.Future[bytes] | None) -> None:
    if finished is not None and not finished.cancelled():
        finished.exception()  # retrieve it, so asyncio does not log "never retrieved"
    response.close()
    response.release_conn()


def _release_opened(opening: asyncio.Future[Any]) -> None:
    # The consumer went away while the GET was being sent; free the connection it got.
    if opening.cancelled() or opening.exception() is not None:
        return
    response = opening.result()
    if response is not None:
        _release(response, None)


def _network_reason(exc: BaseException) -> str:
    """A short human reason ("connection refused") from urllib3's nested exceptions."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror.lower()
        reason = getattr(current, "reason", None)
        current = (
            reason
            if isinstance(reason, BaseException)
            else (current.__cause__ or current.__context__)
        )
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        return str(exc.reason)
    return str(exc)
