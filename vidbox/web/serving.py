"""Stored objects as HTTP responses: ranges, validators, conditional requests, downloads.

Every media route (owner pages and share links) answers through ``object_response`` or
``media_response``. Range handling follows RFC 9110 and is written here rather than taken from
Starlette's FileResponse, which answers 400 to a malformed Range that the RFC says to ignore.
A missing object raises ``ObjectNotFound``; the app's error handlers turn that into a 404.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Final, Literal

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from vidbox.filenames import content_disposition
from vidbox.http.server import ZEROCOPY_SEND
from vidbox.storage import ObjectInfo, Storage
from vidbox.timefmt import http_date, parse_http_date

if TYPE_CHECKING:
    from vidbox.config import Settings

DEFAULT_CACHE: Final = "private, max-age=0, must-revalidate"
UNSATISFIABLE: Final = "unsatisfiable"

_RANGE_SPEC = re.compile(r"([0-9]*)-([0-9]*)")


def parse_range(header: str | None, size: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """The inclusive byte range a Range header asks for, given the object size.

    None means "send the whole object": no header, a malformed one, another unit, or several
    ranges (RFC 9110 lets a server ignore Range, and multipart/byteranges is not worth it for
    video players, which ask for one range). "unsatisfiable" means answer 416.
    """
    if not header:
        return None
    unit, sep, spec_list = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    specs = [spec.strip() for spec in spec_list.split(",") if spec.strip()]
    if len(specs) != 1:
        return None
    match = _RANGE_SPEC.fullmatch(specs[0])
    if not match:
        return None
    first, last = match.group(1), match.group(2)
    if not first:
        if not last:
            return None  # "bytes=-" is malformed
        suffix = int(last)
        if suffix == 0 or size == 0:
            return UNSATISFIABLE
        return max(0, size - suffix), size - 1
    start = int(first)
    end = int(last) if last else None
    if end is not None and end < start:
        return None  # an invalid range-spec makes the whole header invalid: ignore it
    if start >= size:
        return UNSATISFIABLE
    return start, size - 1 if end is None else min(end, size - 1)


def _entity_tags(header: str) -> list[str]:
    return [tag.strip() for tag in header.split(",") if tag.strip()]


def _not_modified(request: Request, etag: str, info: ObjectInfo) -> bool:
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        # Weak comparison (RFC 9110 13.1.2): W/ prefixes are ignored.
        tags = {tag.removeprefix("W/") for tag in _entity_tags(if_none_match)}
        return "*" in tags or etag in tags
    if_modified_since = request.headers.get("if-modified-since")
    if if_modified_since:
        since = parse_http_date(if_modified_since)
        if since is not None:
            return info.modified.replace(microsecond=0) <= since
    return False


def _if_range_matches(value: str, etag: str, info: ObjectInfo) -> bool:
    value = value.strip()
    if value.startswith(('"', "W/")):
        return value == etag  # strong comparison: a weak tag never matches
    moment = parse_http_date(value)
    return moment is not None and moment == info.modified.replace(microsecond=0)


# Up to this size a response is sent without watching for the client leaving: the watcher (a
# task per response) cost more than sending a segment to a client that has gone.
SMALL_OBJECT_BYTES = 8 * 1024 * 1024


class _SmallObject(Response):
    """A short stream (an HLS segment, a thumbnail), sent chunk by chunk with no extra task."""

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        status_code: int,
        headers: dict[str, str],
        media_type: str,
    ) -> None:
        super().__init__(status_code=status_code, headers=headers, media_type=media_type)
        self.chunks = chunks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        try:
            async for chunk in self.chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            aclose = getattr(self.chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class _ZeroCopyFile(Response):
    """A byte range of an open local file, sent by the kernel (see ``vidbox.http.server``)."""

    def __init__(
        self,
        file: BinaryIO,
        offset: int,
        count: int,
        status_code: int,
        headers: dict[str, str],
        media_type: str,
    ) -> None:
        super().__init__(status_code=status_code, headers=headers, media_type=media_type)
        self.file, self.offset, self.count = file, offset, count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            await send(
                {
                    "type": ZEROCOPY_SEND,
                    "file": self.file,
                    "offset": self.offset,
                    "count": self.count,
                    "more_body": False,
                }
            )
        finally:
            self.file.close()


class _ObjectStream(StreamingResponse):
    """Closes the storage stream however the response ends (client gone, error), so a file
    handle or S3 connection is released now rather than whenever the generator is collected."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()


async def object_response(
    request: Request,
    storage: Storage,
    key: str,
    *,
    content_type: str,
    cache: str = DEFAULT_CACHE,
    download_name: str | None = None,
) -> Response:
    """The object under ``key`` as a 200, 206, 304 or 416 response, streamed from storage.

    HEAD gets the same headers as GET without a body. Raises ObjectNotFound. Where the server
    offers zero-copy sending and the object is a local file, the kernel sends the bytes.
    """
    opened = None
    if request.method == "GET" and ZEROCOPY_SEND in request.scope.get("extensions", {}):
        opened = await storage.open_file(key)
    info = opened[1] if opened is not None else await storage.stat(key)
    try:
        answer = _answer(request, info, cache, download_name)
    except BaseException:
        if opened is not None:
            opened[0].close()
        raise
    if answer.send is None:  # 304, 416, HEAD or an empty object: no bytes to send
        if opened is not None:
            opened[0].close()
        media_type = content_type if answer.status in (200, 206) else None
        return Response(status_code=answer.status, headers=answer.headers, media_type=media_type)
    start, end = answer.send
    if opened is not None:
        return _ZeroCopyFile(
            opened[0], start, end - start + 1, answer.status, answer.headers, content_type
        )
    chunks = storage.open_range(key, start, end)
    if end - start + 1 <= SMALL_OBJECT_BYTES:
        return _SmallObject(chunks, answer.status, answer.headers, content_type)
    return _ObjectStream(
        chunks, status_code=answer.status, headers=answer.headers, media_type=content_type
    )


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: dict[str, str]
    send: tuple[int, int] | None  # the inclusive byte range to send, None for no body


def _answer(request: Request, info: ObjectInfo, cache: str, download_name: str | None) -> _Answer:
    """Status, headers and byte range for a request of an object: the HTTP semantics alone."""
    etag = f'"{info.etag}"'
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Last-Modified": http_date(info.modified),
        "Cache-Control": cache,
        # Uploaded content must never be sniffed into something executable.
        "X-Content-Type-Options": "nosniff",
    }
    if download_name is not None:
        headers["Content-Disposition"] = content_disposition(download_name)

    if _not_modified(request, etag, info):
        return _Answer(304, headers, None)

    wanted = parse_range(request.headers.get("range"), info.size)
    if_range = request.headers.get("if-range")
    if wanted is not None and if_range is not None and not _if_range_matches(if_range, etag, info):
        wanted = None  # the client's copy is stale: send the whole new object
    if wanted == UNSATISFIABLE:
        headers["Content-Range"] = f"bytes */{info.size}"
        return _Answer(416, headers, None)

    if isinstance(wanted, tuple):
        start, end = wanted
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
    else:
        start, end = 0, info.size - 1
        status = 200
    headers["Content-Length"] = str(end - start + 1)
    if request.method == "HEAD" or info.size == 0:
        return _Answer(status, headers, None)
    return _Answer(status, headers, (start, end))


async def media_response(
    request: Request,
    settings: Settings,
    storage: Storage,
    key: str,
    *,
    content_type: str,
    cache: str = DEFAULT_CACHE,
    download_name: str | None = None,
) -> Response:
    """Like ``object_response``, but in ``serve = "redirect"`` mode a 302 to a short-lived
    presigned URL when the backend can make one (S3), so bytes bypass vidbox."""
    if settings.storage.serve == "redirect":
        await storage.stat(key)  # a missing object is our 404, not an S3 error page
        url = await storage.presigned_get(
            key,
            expires_seconds=settings.storage.presign_seconds,
            filename=download_name,
            content_type=content_type,
        )
        if url is not None:
            # The URL expires, so neither the redirect nor its target may be cached by us.
            return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})
    return await object_response(
        request,
        storage,
        key,
        content_type=content_type,
        cache=cache,
        download_name=download_name,
    )
